//! Neighbour graphs in compressed-row form, built once and shared by every permutation.

use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::kdtree::KdTree;
use crate::error::{CoreError, Result};

/// A directed neighbour graph: row `i` lists the neighbours of cell `i`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// `offsets[i]..offsets[i + 1]` indexes `neighbours` for cell `i` (length `n + 1`).
    pub offsets: Vec<usize>,
    /// Neighbour indices, per row in increasing (distance, index) order.
    pub neighbours: Vec<u32>,
}

impl Graph {
    /// Number of cells (rows).
    pub fn n_cells(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Number of edges.
    pub fn n_edges(&self) -> usize {
        self.neighbours.len()
    }

    /// The neighbours of cell `i`.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.neighbours[self.offsets[i]..self.offsets[i + 1]]
    }
}

/// Check matching lengths and finite coordinates.
pub fn check_coords(x: &[f64], y: &[f64]) -> Result<()> {
    if x.len() != y.len() {
        return Err(CoreError::Shape(format!("x has {} coordinates but y has {}", x.len(), y.len())));
    }
    if x.len() >= u32::MAX as usize {
        return Err(CoreError::InvalidArgument(format!("too many cells ({}) for 32-bit indices", x.len())));
    }
    for (name, v) in [("x", x), ("y", y)] {
        if let Some(i) = v.iter().position(|c| !c.is_finite()) {
            return Err(CoreError::NonFinite(format!("coordinate {name} of cell {i} is {}", v[i])));
        }
    }
    Ok(())
}

/// For every cell, its `k_others` nearest other cells within Euclidean distance `radius`
/// (`f64::INFINITY`: no limit), as `RANN::nn2(coords, k = k_others + 1)` followed by dropping
/// the first column (the cell itself) and every neighbour farther than `radius`
/// (`sqrt(dx^2 + dy^2) > radius`). Rows with fewer than `min_degree` neighbours are left empty
/// and flagged `false` in the returned mask. Exact distance ties are broken by the lower cell
/// index. Runs in parallel over cells; the result does not depend on the thread count.
pub fn knn_graph(x: &[f64], y: &[f64], k_others: usize, radius: f64, min_degree: usize) -> Result<(Graph, Vec<bool>)> {
    check_coords(x, y)?;
    if radius.is_nan() || radius <= 0.0 {
        return Err(CoreError::InvalidArgument(format!("radius must be > 0, got {radius}")));
    }
    let n = x.len();
    let tree = KdTree::new(x, y);
    // Search a hair beyond radius^2, then apply R's test on the square root exactly.
    let max_d2 = if radius.is_finite() { radius * radius * (1.0 + 8.0 * f64::EPSILON) } else { f64::INFINITY };
    const CHUNK: usize = 2048;
    let parts: Vec<(Vec<u32>, Vec<u32>)> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let (lo, hi) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            let mut heap = BinaryHeap::with_capacity(k_others + 1);
            let mut found = Vec::with_capacity(k_others);
            let mut deg = Vec::with_capacity(hi - lo);
            let mut nbrs = Vec::new();
            for i in lo..hi {
                found.clear();
                tree.nearest([x[i], y[i]], k_others, max_d2, i as u32, &mut heap, &mut found);
                let before = nbrs.len();
                nbrs.extend(found.iter().filter(|(d2, _)| d2.sqrt() <= radius).map(|&(_, j)| j));
                let d = nbrs.len() - before;
                if d < min_degree {
                    nbrs.truncate(before);
                    deg.push(u32::MAX);
                } else {
                    deg.push(d as u32);
                }
            }
            (deg, nbrs)
        })
        .collect();
    let total: usize = parts.iter().map(|p| p.1.len()).sum();
    let mut offsets = Vec::with_capacity(n + 1);
    let mut keep = Vec::with_capacity(n);
    let mut neighbours = Vec::with_capacity(total);
    offsets.push(0);
    for (deg, nbrs) in parts {
        for d in deg {
            keep.push(d != u32::MAX);
            offsets.push(offsets.last().copied().unwrap_or(0) + if d == u32::MAX { 0 } else { d as usize });
        }
        neighbours.extend_from_slice(&nbrs);
    }
    Ok((Graph { offsets, neighbours }, keep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::RRandom;

    /// Brute force: sort all other cells by (d2, index), take k, filter by radius.
    fn brute(x: &[f64], y: &[f64], k: usize, radius: f64, min_degree: usize) -> (Vec<Vec<u32>>, Vec<bool>) {
        let n = x.len();
        let mut rows = Vec::new();
        let mut keep = Vec::new();
        for i in 0..n {
            let mut c: Vec<(f64, u32)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let (dx, dy) = (x[i] - x[j], y[i] - y[j]);
                    (dx * dx + dy * dy, j as u32)
                })
                .collect();
            c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let r: Vec<u32> = c.iter().take(k).filter(|(d, _)| d.sqrt() <= radius).map(|p| p.1).collect();
            if r.len() < min_degree {
                rows.push(vec![]);
                keep.push(false);
            } else {
                rows.push(r);
                keep.push(true);
            }
        }
        (rows, keep)
    }

    fn check(x: &[f64], y: &[f64], k: usize, radius: f64, min_degree: usize) {
        let (g, keep) = knn_graph(x, y, k, radius, min_degree).unwrap();
        let (rows, bkeep) = brute(x, y, k, radius, min_degree);
        assert_eq!(keep, bkeep);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(g.row(i), &r[..], "row {i} (k={k}, radius={radius})");
        }
    }

    #[test]
    fn knn_graph_matches_brute_force_on_random_points() {
        let mut rng = RRandom::new(5);
        for &(n, k, radius, min_degree) in &[
            (1usize, 3usize, f64::INFINITY, 0usize),
            (7, 3, f64::INFINITY, 0),
            (300, 3, f64::INFINITY, 0),
            (500, 20, 8.0, 3),
            (900, 60, 15.0, 5),
            (400, 399, f64::INFINITY, 0),
        ] {
            let x = rng.runif(n, 0.0, 100.0).unwrap();
            let y = rng.runif(n, 0.0, 100.0).unwrap();
            check(&x, &y, k, radius, min_degree);
        }
    }

    #[test]
    fn knn_graph_breaks_ties_by_index() {
        // A lattice with duplicated points: many exact distance ties and zero distances.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..20 {
            for j in 0..20 {
                x.push(f64::from(i % 7));
                y.push(f64::from(j % 5));
            }
        }
        for &(k, radius) in &[(3usize, f64::INFINITY), (10, 1.0), (25, 2.0), (60, 1.5)] {
            check(&x, &y, k, radius, 0);
        }
    }

    #[test]
    fn radius_is_inclusive() {
        let x = [0.0, 3.0, 0.0, 10.0];
        let y = [0.0, 4.0, 5.0, 0.0];
        let (g, _) = knn_graph(&x, &y, 3, 5.0, 0).unwrap();
        assert_eq!(g.row(0), &[1, 2]);
    }

    #[test]
    fn bad_coordinates_are_errors() {
        assert!(knn_graph(&[0.0, f64::NAN], &[0.0, 1.0], 1, 1.0, 0).is_err());
        assert!(knn_graph(&[0.0], &[0.0, 1.0], 1, 1.0, 0).is_err());
        assert!(knn_graph(&[0.0, 1.0], &[0.0, 1.0], 1, 0.0, 0).is_err());
    }
}
