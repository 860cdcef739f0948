//! Moran's I of label indicators on a k-nearest-neighbour graph (R `spdep::moran` with
//! `nb2listw(knn2nb(knearneigh(coords, k)), style = "W")`).

use super::graph::Graph;
use super::permute::{Label, Statistic};
use crate::error::{CoreError, Result};

/// Moran's I of each label's 0/1 indicator with row-standardised weights `1/k`.
///
/// With `z = x - mean(x)` and `m = n_s / n`, `I = sum_ij w_ij z_i z_j / sum_i z_i^2`, which for
/// an indicator and `w_ij = 1/k` is `(C - m D) / (k n_s (1 - m))`, where `C` counts the edges
/// joining two cells of the label and `D` sums the in-degrees of its cells. Both are exact
/// integers, so every permutation costs one pass over the edges and one over the cells.
#[derive(Clone, Debug)]
pub struct Moran {
    graph: Graph,
    k: usize,
    in_degree: Vec<u32>,
    n_per_label: Vec<u64>,
}

impl Moran {
    /// `graph` must give every cell exactly `k` neighbours; `labels` fix the label sizes (a
    /// within-group permutation keeps them).
    pub fn new(graph: Graph, k: usize, labels: &[u32], n_labels: usize) -> Result<Self> {
        let n = graph.n_cells();
        if labels.len() != n {
            return Err(CoreError::Shape(format!("{} labels for {n} cells", labels.len())));
        }
        if (0..n).any(|i| graph.row(i).len() != k) {
            return Err(CoreError::InvalidArgument(format!("every cell needs exactly k = {k} neighbours")));
        }
        let mut in_degree = vec![0u32; n];
        for &j in &graph.neighbours {
            in_degree[j as usize] += 1;
        }
        let mut n_per_label = vec![0u64; n_labels];
        for &l in labels {
            n_per_label[l as usize] += 1;
        }
        Ok(Moran { graph, k, in_degree, n_per_label })
    }
}

impl Statistic for Moran {
    fn len(&self) -> usize {
        self.n_per_label.len()
    }

    fn eval<L: Label>(&self, labels: &[L], out: &mut [f64]) {
        let s = self.n_per_label.len();
        let mut same = vec![0u64; s];
        let mut indeg = vec![0u64; s];
        for (i, &a) in labels.iter().enumerate() {
            let a = a.index();
            indeg[a] += u64::from(self.in_degree[i]);
            same[a] += self.graph.row(i).iter().filter(|&&j| labels[j as usize].index() == a).count() as u64;
        }
        let n = labels.len() as f64;
        for l in 0..s {
            let ns = self.n_per_label[l] as f64;
            let m = ns / n;
            out[l] = (same[l] as f64 - m * indeg[l] as f64) / (self.k as f64 * ns * (1.0 - m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::RRandom;
    use crate::spatial::graph::knn_graph;

    #[test]
    fn moran_matches_the_definition() {
        let mut rng = RRandom::new(8);
        for &(n, s, k) in &[(50usize, 3usize, 3usize), (400, 6, 5), (300, 2, 1)] {
            let x = rng.runif(n, 0.0, 10.0).unwrap();
            let y = rng.runif(n, 0.0, 10.0).unwrap();
            let labels: Vec<u32> = (0..n).map(|i| ((i * 7 + i / 3) % s) as u32).collect();
            let (g, _) = knn_graph(&x, &y, k, f64::INFINITY, 0).unwrap();
            let moran = Moran::new(g.clone(), k, &labels, s).unwrap();
            let mut out = vec![0.0; s];
            moran.eval(&labels, &mut out);
            for (l, &got) in out.iter().enumerate() {
                let xs: Vec<f64> = labels.iter().map(|&a| f64::from(u8::from(a as usize == l))).collect();
                let mean = xs.iter().sum::<f64>() / n as f64;
                let z: Vec<f64> = xs.iter().map(|v| v - mean).collect();
                let lag: Vec<f64> =
                    (0..n).map(|i| g.row(i).iter().map(|&j| z[j as usize]).sum::<f64>() / k as f64).collect();
                let i_def = z.iter().zip(&lag).map(|(a, b)| a * b).sum::<f64>() / z.iter().map(|a| a * a).sum::<f64>();
                assert!((got - i_def).abs() < 1e-13, "label {l}: {got} vs {i_def}");
            }
        }
    }
}
