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

/// Labels to shuffle within groups.
#[derive(Clone, Debug)]
pub struct GroupPermuter {
    labels: Vec<u32>,
    /// Cells of each group in data order, groups in the order R processes them.
    groups: Vec<Vec<u32>>,
    /// Fisher-Yates buffer, reused across draws.
    work: Vec<u32>,
}

impl GroupPermuter {
    /// `group[i]` is the group code of cell `i`; groups are processed in increasing code order.
    pub fn new(labels: Vec<u32>, group: &[u32]) -> Result<Self> {
        if labels.len() != group.len() {
            return Err(CoreError::Shape(format!("{} labels but {} group codes", labels.len(), group.len())));
        }
        let n_groups = group.iter().map(|&g| g as usize + 1).max().unwrap_or(0);
        let mut groups = vec![Vec::new(); n_groups];
        for (i, &g) in group.iter().enumerate() {
            groups[g as usize].push(i as u32);
        }
        groups.retain(|g| !g.is_empty());
        let max = groups.iter().map(Vec::len).max().unwrap_or(0);
        Ok(GroupPermuter { labels, groups, work: Vec::with_capacity(max) })
    }

    /// The unpermuted labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// One permutation: for each group in order, `x[sample.int(n_g)]`, written into `out`.
    pub fn draw(&mut self, rng: &mut RRandom, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.labels);
        for g in &self.groups {
            // R's sample.int(n, n): partial Fisher-Yates (never the hash path for k = n).
            let n = g.len();
            self.work.clear();
            self.work.extend(0..n as u32);
            let mut left = n;
            for &cell in g.iter() {
                let j = rng.unif_index(left as f64) as usize;
                out[cell as usize] = self.labels[g[self.work[j] as usize] as usize];
                left -= 1;
                self.work[j] = self.work[left];
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
    fn eval(&self, labels: &[u32], out: &mut [f64]);
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
    pub fn run(&mut self, n: usize) {
        let n_cells = self.permuter.labels().len().max(1);
        // Batches of a few permutations per thread, at most ~64M labels in flight.
        let batch = (2 * rayon::current_num_threads()).clamp(1, (64 << 20) / n_cells).max(1);
        let len = self.stat.len();
        let draw = |p: &mut GroupPermuter, rng: &mut RRandom, k: usize| -> Vec<Vec<u32>> {
            (0..k)
                .map(|_| {
                    let mut v = Vec::with_capacity(n_cells);
                    p.draw(rng, &mut v);
                    v
                })
                .collect()
        };
        let mut remaining = n;
        let first = batch.min(remaining);
        let mut current = draw(&mut self.permuter, &mut self.rng, first);
        remaining -= first;
        while !current.is_empty() {
            let next_k = batch.min(remaining);
            remaining -= next_k;
            let (permuter, rng, stat) = (&mut self.permuter, &mut self.rng, &self.stat);
            let (next, results) = rayon::join(
                || draw(permuter, rng, next_k),
                || {
                    current
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
            current = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draw_equals_r_sample_per_group() {
        let labels: Vec<u32> = (0..40).map(|i| (i * 7 % 5) as u32).collect();
        let group: Vec<u32> = (0..40).map(|i| ((i * 3) % 4) as u32).collect();
        let mut p = GroupPermuter::new(labels.clone(), &group).unwrap();
        let mut a = RRandom::new(9);
        let mut b = RRandom::new(9);
        for _ in 0..3 {
            let mut out = Vec::new();
            p.draw(&mut a, &mut out);
            let mut expect = labels.clone();
            for g in 0..4u32 {
                let cells: Vec<usize> = (0..40).filter(|&i| group[i] == g).collect();
                let s = b.sample_int(cells.len() as f64, cells.len()).unwrap();
                for (t, &c) in cells.iter().enumerate() {
                    expect[c] = labels[cells[s[t] as usize - 1]];
                }
            }
            assert_eq!(out, expect);
        }
        assert_eq!(a.unif_rand(), b.unif_rand());
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
