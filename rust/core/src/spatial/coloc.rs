//! SpatialEcoTyper's colocalization index of cell states (R `.colocalization`).

use super::graph::Graph;
use super::permute::{Label, Statistic};
use crate::error::{CoreError, Result};
use crate::rng::RRandom;

/// The colocalization index of `n_states` labels on a fixed neighbour graph.
///
/// For each kept cell (one with at least `min.cell` neighbours), the fraction of its neighbours
/// in each state; averaged over the kept cells of each state: entry `(a, b)` is the mean
/// fraction of state-`b` neighbours around kept cells of state `a` (row-major `S x S`). A state
/// without kept cells gets NaN (R's 0/0) in every column whose state occurs among the
/// neighbours of kept cells, and 0 in the other columns (as R's table fills them).
#[derive(Clone, Debug)]
pub struct Colocalization {
    graph: Graph,
    kept: Vec<u32>,
    inv_degree: Vec<f64>,
    n_states: usize,
}

impl Colocalization {
    /// `graph` rows of cells that are not kept must be empty; `keep[i]` flags kept cells.
    pub fn new(graph: Graph, keep: &[bool], n_states: usize) -> Result<Self> {
        if keep.len() != graph.n_cells() {
            return Err(CoreError::Shape(format!("{} keep flags for {} cells", keep.len(), graph.n_cells())));
        }
        let kept: Vec<u32> = (0..keep.len()).filter(|&i| keep[i]).map(|i| i as u32).collect();
        let inv_degree = kept.iter().map(|&i| 1.0 / graph.row(i as usize).len() as f64).collect();
        Ok(Colocalization { graph, kept, inv_degree, n_states })
    }

    /// Number of kept cells.
    pub fn n_kept(&self) -> usize {
        self.kept.len()
    }

    /// Number of edges from kept cells.
    pub fn n_edges(&self) -> usize {
        self.graph.n_edges()
    }

    /// Number of kept cells per state under `labels`.
    pub fn kept_per_state(&self, labels: &[u32]) -> Vec<usize> {
        let mut c = vec![0; self.n_states];
        for &i in &self.kept {
            c[labels[i as usize] as usize] += 1;
        }
        c
    }
}

impl Statistic for Colocalization {
    fn len(&self) -> usize {
        self.n_states * self.n_states
    }

    fn eval<L: Label>(&self, labels: &[L], out: &mut [f64]) {
        let s = self.n_states;
        out.fill(0.0);
        let mut count = vec![0u32; s];
        // Kept cells in data order, each one's neighbours in graph order: every sum receives its
        // terms in this fixed order, whatever the label type or the thread.
        for (&i, &w) in self.kept.iter().zip(&self.inv_degree) {
            let a = labels[i as usize].index();
            count[a] += 1;
            let row = &mut out[a * s..(a + 1) * s];
            for &j in self.graph.row(i as usize) {
                row[labels[j as usize].index()] += w;
            }
        }
        // State `b` is among the neighbours of kept cells iff a sum in column `b` is positive (its
        // terms, 1 / degree, are).
        let seen: Vec<bool> = (0..s).map(|b| (0..s).any(|a| out[a * s + b] > 0.0)).collect();
        for a in 0..s {
            let c = f64::from(count[a]);
            for b in 0..s {
                let v = &mut out[a * s + b];
                *v = if count[a] == 0 && !seen[b] { 0.0 } else { *v / c };
            }
        }
    }
}

/// R's `CoassociationTest` on a z-score matrix: per SE, the mean of the z-scores among its
/// states (`z[idx, idx]`, diagonal included) against `n_perm` random column permutations of `z`
/// (one `sample.int(S)` per permutation, all SEs scored on the same permutation). Returns
/// `(observed - mean(null)) / sd(null)` per SE. `se[a]` is the SE code of state `a`.
pub fn coassociation_zscores(
    z: &[f64],
    n_states: usize,
    se: &[u32],
    n_se: usize,
    n_perm: usize,
    rng: &mut RRandom,
) -> Result<Vec<f64>> {
    if z.len() != n_states * n_states || se.len() != n_states {
        return Err(CoreError::Shape(format!(
            "z has {} values and se {} codes for {n_states} states",
            z.len(),
            se.len()
        )));
    }
    let members: Vec<Vec<usize>> = (0..n_se as u32).map(|c| (0..n_states).filter(|&a| se[a] == c).collect()).collect();
    // R's mean of z[idx, idx[perm]]: column-major sum over the block.
    let block_mean = |idx: &[usize], col: &dyn Fn(usize) -> usize| -> f64 {
        let mut sum = 0.0;
        for &j in idx {
            let cj = col(j);
            for &i in idx {
                sum += z[i * n_states + cj];
            }
        }
        sum / (idx.len() * idx.len()) as f64
    };
    let observed: Vec<f64> = members.iter().map(|m| block_mean(m, &|j| j)).collect();
    let mut null = vec![Vec::with_capacity(n_perm); n_se];
    for _ in 0..n_perm {
        let perm = rng.sample_int(n_states as f64, n_states)?;
        let col = |j: usize| perm[j] as usize - 1;
        for (s, m) in members.iter().enumerate() {
            null[s].push(block_mean(m, &col));
        }
    }
    Ok(observed
        .iter()
        .zip(&null)
        .map(|(&o, v)| {
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let sd = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt();
            (o - mean) / sd
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spatial::graph::knn_graph;

    /// Straight from the definition, per cell: fractions of neighbour states, averaged.
    fn brute(x: &[f64], y: &[f64], labels: &[u32], s: usize, k: usize, radius: f64, min: usize) -> Vec<f64> {
        let n = x.len();
        let mut sum = vec![0.0; s * s];
        let mut cnt = vec![0usize; s];
        let mut seen = vec![false; s];
        for i in 0..n {
            let mut d: Vec<(f64, usize)> =
                (0..n).filter(|&j| j != i).map(|j| (((x[i] - x[j]).powi(2) + (y[i] - y[j]).powi(2)), j)).collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let nb: Vec<usize> = d.iter().take(k - 1).filter(|p| p.0.sqrt() <= radius).map(|p| p.1).collect();
            if nb.len() < min {
                continue;
            }
            let a = labels[i] as usize;
            cnt[a] += 1;
            let mut frac = vec![0usize; s];
            for &j in &nb {
                frac[labels[j] as usize] += 1;
                seen[labels[j] as usize] = true;
            }
            for b in 0..s {
                sum[a * s + b] += frac[b] as f64 / nb.len() as f64;
            }
        }
        (0..s * s)
            .map(|e| {
                let (a, b) = (e / s, e % s);
                if cnt[a] == 0 && !seen[b] {
                    0.0
                } else {
                    sum[e] / cnt[a] as f64
                }
            })
            .collect()
    }

    #[test]
    fn colocalization_matches_brute_force() {
        let mut rng = RRandom::new(3);
        for &(n, s, k, radius, min) in
            &[(200usize, 4usize, 20usize, 10.0, 3usize), (500, 9, 60, 6.0, 2), (120, 3, 200, 100.0, 1)]
        {
            let x = rng.runif(n, 0.0, 50.0).unwrap();
            let y = rng.runif(n, 0.0, 50.0).unwrap();
            let labels: Vec<u32> =
                rng.sample_int(n as f64, n).unwrap().iter().map(|&v| (v as u32) % s as u32).collect();
            let (g, keep) = knn_graph(&x, &y, (k - 1).min(n - 1), radius, min).unwrap();
            let c = Colocalization::new(g, &keep, s).unwrap();
            let mut out = vec![0.0; s * s];
            c.eval(&labels, &mut out);
            let b = brute(&x, &y, &labels, s, k, radius, min);
            for (u, v) in out.iter().zip(&b) {
                assert!((u.is_nan() && v.is_nan()) || (u - v).abs() < 1e-14, "{u} vs {v}");
            }
        }
    }

    #[test]
    fn state_without_kept_cells_is_nan_where_seen() {
        // Cells 0-2 close together (state 0, 1, 0); cell 3 far away (state 2).
        let x = [0.0, 1.0, 0.0, 100.0];
        let y = [0.0, 0.0, 1.0, 100.0];
        let (g, keep) = knn_graph(&x, &y, 3, 5.0, 1).unwrap();
        let c = Colocalization::new(g, &keep, 3).unwrap();
        let mut out = vec![0.0; 9];
        c.eval(&[0u32, 1, 0, 2], &mut out);
        assert_eq!(&out[0..3], &[0.5, 0.5, 0.0]);
        assert_eq!(&out[3..6], &[1.0, 0.0, 0.0]);
        assert!(out[6].is_nan() && out[7].is_nan());
        assert_eq!(out[8], 0.0);
    }
}
