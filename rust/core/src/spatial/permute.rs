//! Label permutations drawn exactly as R draws them, evaluated in parallel.
//!
//! R shuffles labels within groups (`group_by(CellType)` + `sample(label)`): for each group in
//! order, `sample.int(n_g)` permutes the group's labels (cells of a group in data order). The
//! draws come from one Mersenne-Twister stream, so they are made sequentially; evaluating a
//! permutation is independent of the others, so batches are evaluated in parallel while the
//! next batch is drawn, and the results are folded into the running statistics in
//! permutation order. The outcome is identical for any number of threads.

use rayon::prelude::*;

use crate::error::{CoreError, Result};
use crate::rng::RRandom;

/// A label code, stored in the narrowest unsigned type that holds every label of a test (a
/// permutation's labels are read at random by the statistics, so fewer bytes mean fewer cache
/// misses). The values, and so the results, do not depend on the type.
pub trait Label: Copy + Default + Send + Sync + 'static {
    /// The largest code the type holds.
    const MAX: u32;
    /// `v` as this type (`v <= Self::MAX`).
    fn from_u32(v: u32) -> Self;
    /// The code as an index.
    fn index(self) -> usize;
}

macro_rules! impl_label {
    ($($t:ty),*) => {$(
        impl Label for $t {
            const MAX: u32 = <$t>::MAX as u32;
            #[inline(always)]
            fn from_u32(v: u32) -> Self {
                debug_assert!(v <= <Self as Label>::MAX);
                v as $t
            }
            #[inline(always)]
            fn index(self) -> usize {
                self as usize
            }
        }
    )*};
}
impl_label!(u8, u16, u32);

/// Labels to shuffle within groups.
#[derive(Clone, Debug)]
pub struct GroupPermuter {
    labels: Vec<u32>,
    /// The cells of every group, group after group (groups in the order R processes them,
    /// cells of a group in data order).
    cells: Vec<u32>,
    /// Group `g` is `cells[bounds[g]..bounds[g + 1]]`.
    bounds: Vec<usize>,
    /// `labels[cells[t]]`: each group's labels side by side, so a draw touches only its group's
    /// block (cache-resident) instead of the whole label vector.
    grouped: Vec<u32>,
    /// The largest label.
    max_label: u32,
    /// Fisher-Yates buffer, reused across draws.
    work: Vec<u32>,
}

impl GroupPermuter {
    /// `group[i]` is the group code of cell `i`; groups are processed in increasing code order.
    pub fn new(labels: Vec<u32>, group: &[u32]) -> Result<Self> {
        if labels.len() != group.len() {
            return Err(CoreError::Shape(format!("{} labels but {} group codes", labels.len(), group.len())));
        }
        if labels.len() >= u32::MAX as usize {
            return Err(CoreError::InvalidArgument(format!("too many cells ({}) for 32-bit indices", labels.len())));
        }
        let n_groups = group.iter().map(|&g| g as usize + 1).max().unwrap_or(0);
        let mut size = vec![0usize; n_groups];
        for &g in group {
            size[g as usize] += 1;
        }
        let mut bounds = vec![0usize];
        for &s in size.iter().filter(|&&s| s > 0) {
            bounds.push(bounds[bounds.len() - 1] + s);
        }
        // Start of each group code's block (empty groups take no block).
        let mut next = vec![0usize; n_groups];
        let mut at = 0;
        for (g, &s) in size.iter().enumerate() {
            next[g] = at;
            at += s;
        }
        let mut cells = vec![0u32; labels.len()];
        for (i, &g) in group.iter().enumerate() {
            cells[next[g as usize]] = i as u32;
            next[g as usize] += 1;
        }
        let grouped = cells.iter().map(|&c| labels[c as usize]).collect();
        let max = size.iter().copied().max().unwrap_or(0);
        let max_label = labels.iter().copied().max().unwrap_or(0);
        Ok(GroupPermuter { labels, cells, bounds, grouped, max_label, work: vec![0; max] })
    }

    /// The unpermuted labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The largest label code (0 without cells).
    pub fn max_label(&self) -> u32 {
        self.max_label
    }

    /// One permutation: for each group in order, `x[sample.int(n_g)]`, written into `out`.
    ///
    /// R's `sample.int(n, n)` is a partial Fisher-Yates shuffle of the indices `0..n` (never
    /// the hash path for `k = n`); shuffling the group's labels in place of their indices,
    /// with the same swaps, yields the same labels in the same places. Indices come from
    /// [`RRandom::unif_index_u32`], R's `R_unif_index` on integers.
    ///
    /// # Panics
    /// If a label does not fit `L` (see [`Self::max_label`]).
    pub fn draw<L: Label>(&mut self, rng: &mut RRandom, out: &mut Vec<L>) {
        assert!(self.max_label <= L::MAX, "label {} does not fit the label type", self.max_label);
        // Every cell is in exactly one group, so every entry is overwritten below.
        out.resize(self.labels.len(), L::default());
        for w in self.bounds.windows(2) {
            let (cells, grouped) = (&self.cells[w[0]..w[1]], &self.grouped[w[0]..w[1]]);
            let work = &mut self.work[..cells.len()];
            work.copy_from_slice(grouped);
            let mut left = cells.len();
            for &cell in cells {
                let j = rng.unif_index_u32(left as u32) as usize;
                out[cell as usize] = L::from_u32(work[j]);
                left -= 1;
                work[j] = work[left];
            }
        }
    }
}

/// Something computed from one labelling: a vector of `len()` statistics.
pub trait Statistic: Sync {
    /// Number of values per labelling.
    fn len(&self) -> usize;
    /// Whether there are no values.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The statistics of `labels`, written into `out` (length `len()`).
    fn eval<L: Label>(&self, labels: &[L], out: &mut [f64]);
}

/// Running mean and sum of squared deviations (Welford), folded in a fixed order. NaN
/// propagates, as R's `mean`/`sd` without `na.rm`.
#[derive(Clone, Debug)]
pub struct Moments {
    pub count: usize,
    pub mean: Vec<f64>,
    pub m2: Vec<f64>,
}

impl Moments {
    pub fn new(len: usize) -> Self {
        Moments { count: 0, mean: vec![0.0; len], m2: vec![0.0; len] }
    }

    pub fn push(&mut self, v: &[f64]) {
        self.count += 1;
        let n = self.count as f64;
        for ((m, s), &x) in self.mean.iter_mut().zip(self.m2.iter_mut()).zip(v) {
            let d = x - *m;
            *m += d / n;
            *s += d * (x - *m);
        }
    }

    /// Sample standard deviation (n - 1 denominator); NaN with fewer than two values.
    pub fn sd(&self) -> Vec<f64> {
        let denom = self.count as f64 - 1.0;
        self.m2.iter().map(|&s| if self.count < 2 { f64::NAN } else { (s.max(0.0) / denom).sqrt() }).collect()
    }
}

/// A permutation test in progress: the generator, the permuter and the running moments.
#[derive(Clone, Debug)]
pub struct PermutationTest<S: Statistic> {
    pub stat: S,
    pub permuter: GroupPermuter,
    pub rng: RRandom,
    pub moments: Moments,
}

impl<S: Statistic> PermutationTest<S> {
    pub fn new(stat: S, permuter: GroupPermuter, rng: RRandom) -> Self {
        let len = stat.len();
        PermutationTest { stat, permuter, rng, moments: Moments::new(len) }
    }

    /// The statistics of the unpermuted labels.
    pub fn observed(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.stat.len()];
        self.stat.eval(self.permuter.labels(), &mut out);
        out
    }

    /// Draw and evaluate `n` more permutations (in the current rayon pool).
    ///
    /// Batches of permutations are drawn on one thread while the previous batch is evaluated
    /// on the others (`rayon::join`; a thread that finishes its side helps with the other);
    /// the label buffers of two batches are reused throughout.
    pub fn run(&mut self, n: usize) {
        match self.permuter.max_label() {
            m if m <= u8::MAX.into() => self.run_as::<u8>(n),
            m if m <= u16::MAX.into() => self.run_as::<u16>(n),
            _ => self.run_as::<u32>(n),
        }
    }

    /// [`Self::run`] with labels stored as `L`.
    fn run_as<L: Label>(&mut self, n: usize) {
        let n_cells = self.permuter.labels().len().max(1);
        // Batches of a few permutations per thread, at most ~64M labels in flight.
        let batch = (2 * rayon::current_num_threads()).clamp(1, (64 << 20) / n_cells).max(1);
        let len = self.stat.len();
        let draw = |p: &mut GroupPermuter, rng: &mut RRandom, bufs: &mut Vec<Vec<L>>, k: usize| {
            bufs.resize_with(bufs.len().max(k), Vec::new);
            for b in &mut bufs[..k] {
                p.draw(rng, b);
            }
        };
        let (mut current, mut next): (Vec<Vec<L>>, Vec<Vec<L>>) = (Vec::new(), Vec::new());
        let mut remaining = n;
        let mut k_cur = batch.min(remaining);
        draw(&mut self.permuter, &mut self.rng, &mut current, k_cur);
        remaining -= k_cur;
        while k_cur > 0 {
            let k_next = batch.min(remaining);
            remaining -= k_next;
            let (permuter, rng, stat) = (&mut self.permuter, &mut self.rng, &self.stat);
            let ((), results) = rayon::join(
                || draw(permuter, rng, &mut next, k_next),
                || {
                    current[..k_cur]
                        .par_iter()
                        .map(|labels| {
                            let mut out = vec![0.0; len];
                            stat.eval(labels, &mut out);
                            out
                        })
                        .collect::<Vec<_>>()
                },
            );
            for r in &results {
                self.moments.push(r);
            }
            std::mem::swap(&mut current, &mut next);
            k_cur = k_next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::spatial::{knn_graph, Colocalization, Moran};

    /// The plain path, as R runs it: per group in code order, `sample.int(n_g)` (R's Fisher-Yates
    /// on indices, with `R_unif_index` on doubles), then `labels[cells[s]]`.
    fn r_sample_per_group(labels: &[u32], group: &[u32], rng: &mut RRandom) -> Vec<u32> {
        let mut out = labels.to_vec();
        let n_groups = group.iter().max().map_or(0, |&g| g + 1);
        for g in 0..n_groups {
            let cells: Vec<usize> = (0..group.len()).filter(|&i| group[i] == g).collect();
            if cells.is_empty() {
                continue;
            }
            let s = rng.sample_int(cells.len() as f64, cells.len()).unwrap();
            for (t, &c) in cells.iter().enumerate() {
                out[c] = labels[cells[s[t] as usize - 1]];
            }
        }
        out
    }

    fn check_draws<L: Label + Into<u32>>(labels: &[u32], group: &[u32], seed: i32, n_draws: usize) {
        let mut p = GroupPermuter::new(labels.to_vec(), group).unwrap();
        let mut a = RRandom::new(seed);
        let mut b = RRandom::new(seed);
        let mut out: Vec<L> = Vec::new();
        for _ in 0..n_draws {
            p.draw(&mut a, &mut out);
            let got: Vec<u32> = out.iter().map(|&l| l.into()).collect();
            assert!(got == r_sample_per_group(labels, group, &mut b), "seed {seed}, {} cells", labels.len());
        }
        assert_eq!(a.unif_rand(), b.unif_rand());
    }

    #[test]
    fn draw_equals_r_sample_per_group() {
        // Small groups, a group code without cells, labels in u8 / u16 / u32 buffers.
        let labels: Vec<u32> = (0..40).map(|i| (i * 7 % 5) as u32).collect();
        let group: Vec<u32> = (0..40).map(|i| ((i * 3) % 4) as u32 * 2).collect();
        check_draws::<u8>(&labels, &group, 9, 3);
        check_draws::<u16>(&labels, &group, 9, 3);
        check_draws::<u32>(&labels, &group, 9, 3);
        let wide: Vec<u32> = (0..40).map(|i| 70_000 + i).collect();
        check_draws::<u32>(&wide, &group, 10, 2);
        // Groups above 2^16 cells: indices drawn as two 16-bit chunks, then one as they shrink.
        let n = 150_000;
        let labels: Vec<u32> = (0..n).map(|i| (i % 300) as u32).collect();
        let group: Vec<u32> = (0..n).map(|i| u32::from(i % 5 == 0) + u32::from(i % 7 == 0)).collect();
        check_draws::<u16>(&labels, &group, 11, 2);
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn draw_refuses_a_label_type_too_narrow() {
        let mut p = GroupPermuter::new(vec![0, 256], &[0, 0]).unwrap();
        let mut out: Vec<u8> = Vec::new();
        p.draw(&mut RRandom::new(1), &mut out);
    }

    /// Moments of `n` permutations by the plain path, one after another.
    fn plain_moments<S: Statistic>(stat: &S, labels: &[u32], group: &[u32], seed: i32, n: usize) -> Moments {
        let mut rng = RRandom::new(seed);
        let mut m = Moments::new(stat.len());
        let mut out = vec![0.0; stat.len()];
        for _ in 0..n {
            stat.eval(&r_sample_per_group(labels, group, &mut rng), &mut out);
            m.push(&out);
        }
        m
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// `run` (batched draws, narrow labels, parallel evaluation, in chunks) against the plain
    /// path, for 1 and 2 threads: the same bits.
    fn check_run<S: Statistic + Clone + Send>(stat: S, labels: &[u32], group: &[u32], seed: i32) {
        let want = plain_moments(&stat, labels, group, seed, 21);
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut t = PermutationTest::new(
                stat.clone(),
                GroupPermuter::new(labels.to_vec(), group).unwrap(),
                RRandom::new(seed),
            );
            pool.install(|| {
                t.run(5);
                t.run(0);
                t.run(16);
            });
            assert_eq!(t.moments.count, 21);
            assert_eq!(bits(&t.moments.mean), bits(&want.mean), "{threads} threads");
            assert_eq!(bits(&t.moments.m2), bits(&want.m2), "{threads} threads");
        }
    }

    #[test]
    fn run_equals_the_plain_path_for_any_thread_count() {
        let mut rng = RRandom::new(4);
        let n = 3000;
        let x = rng.runif(n, 0.0, 400.0).unwrap();
        let y = rng.runif(n, 0.0, 400.0).unwrap();
        let group: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        // 7 states (u8 labels) and 400 states (u16 labels; some without kept cells: NaN rows).
        for n_states in [7u32, 400] {
            let labels: Vec<u32> = (0..n as u32).map(|i| (i * 31 + i / 7) % n_states).collect();
            let (g, keep) = knn_graph(&x, &y, 30, 25.0, 3).unwrap();
            let coloc = Colocalization::new(g, &keep, n_states as usize).unwrap();
            check_run(coloc, &labels, &group, 17);
            let (g, _) = knn_graph(&x, &y, 3, f64::INFINITY, 0).unwrap();
            check_run(Moran::new(g, 3, &labels, n_states as usize).unwrap(), &labels, &group, 18);
        }
    }

    #[test]
    fn welford_matches_two_pass() {
        let xs = [[1.0, 5.0], [2.0, 5.0], [4.5, 5.0], [-3.0, 5.0]];
        let mut m = Moments::new(2);
        for x in &xs {
            m.push(x);
        }
        let mean = (1.0 + 2.0 + 4.5 - 3.0) / 4.0;
        let var = xs.iter().map(|x| (x[0] - mean) * (x[0] - mean)).sum::<f64>() / 3.0;
        assert!((m.mean[0] - mean).abs() < 1e-15);
        assert!((m.sd()[0] - var.sqrt()).abs() < 1e-15);
        assert_eq!(m.sd()[1], 0.0);
    }
}
