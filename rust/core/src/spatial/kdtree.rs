//! A 2-d k-d tree for exact k-nearest-neighbour queries with a deterministic tie rule.
//!
//! Neighbours are ordered by squared Euclidean distance `dx*dx + dy*dy` (as ANN, behind R's
//! `RANN::nn2` and `spdep::knearneigh`, computes it), then by point index: among points at
//! exactly the same distance the one with the lower index comes first. The query point itself
//! is never returned (it is passed as `exclude`).

use std::collections::BinaryHeap;

const LEAF: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Node {
    lo: u32,
    hi: u32,
    /// Children indices (0 = leaf).
    left: u32,
    right: u32,
    min: [f64; 2],
    max: [f64; 2],
}

/// A static k-d tree over 2-d points.
#[derive(Clone, Debug)]
pub struct KdTree {
    pts: Vec<[f64; 2]>,
    idx: Vec<u32>,
    nodes: Vec<Node>,
}

/// Candidate in the bounded max-heap: larger (distance, index) first. Distances are
/// non-negative, so their IEEE bits order as the values do.
type Cand = (u64, u32);

impl KdTree {
    /// Build over the points `(x[i], y[i])`; coordinates must be finite (checked by callers).
    pub fn new(x: &[f64], y: &[f64]) -> Self {
        assert_eq!(x.len(), y.len());
        assert!(x.len() < u32::MAX as usize, "too many points for u32 indices");
        let n = x.len();
        let mut pts: Vec<[f64; 2]> = x.iter().zip(y).map(|(&a, &b)| [a, b]).collect();
        let mut idx: Vec<u32> = (0..n as u32).collect();
        let mut nodes = Vec::with_capacity(2 * n / LEAF + 2);
        if n > 0 {
            build(&mut pts, &mut idx, 0, n, &mut nodes);
        }
        KdTree { pts, idx, nodes }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.pts.len()
    }

    /// Whether the tree holds no point.
    pub fn is_empty(&self) -> bool {
        self.pts.is_empty()
    }

    /// The (up to) `k` nearest points to `q` other than point `exclude`, whose squared distance
    /// is at most `max_d2`, appended to `out` in increasing (distance, index) order.
    /// `scratch` is a reusable heap.
    pub fn nearest(
        &self,
        q: [f64; 2],
        k: usize,
        max_d2: f64,
        exclude: u32,
        scratch: &mut BinaryHeap<Cand>,
        out: &mut Vec<(f64, u32)>,
    ) {
        scratch.clear();
        if k == 0 || self.nodes.is_empty() {
            return;
        }
        self.search(0, q, k, max_d2, exclude, scratch);
        let start = out.len();
        out.extend(scratch.drain().map(|(d, i)| (f64::from_bits(d), i)));
        out[start..].sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    }

    fn search(&self, node: usize, q: [f64; 2], k: usize, max_d2: f64, exclude: u32, heap: &mut BinaryHeap<Cand>) {
        let nd = &self.nodes[node];
        if nd.left == 0 {
            for p in nd.lo as usize..nd.hi as usize {
                let i = self.idx[p];
                if i == exclude {
                    continue;
                }
                let dx = q[0] - self.pts[p][0];
                let dy = q[1] - self.pts[p][1];
                let d2 = dx * dx + dy * dy;
                if d2 > max_d2 {
                    continue;
                }
                let c = (d2.to_bits(), i);
                if heap.len() < k {
                    heap.push(c);
                } else if c < *heap.peek().expect("heap is full") {
                    heap.pop();
                    heap.push(c);
                }
            }
            return;
        }
        let (l, r) = (nd.left as usize, nd.right as usize);
        let (dl, dr) = (box_d2(&self.nodes[l], q), box_d2(&self.nodes[r], q));
        let (first, d_first, second, d_second) = if dl <= dr { (l, dl, r, dr) } else { (r, dr, l, dl) };
        for (child, d) in [(first, d_first), (second, d_second)] {
            if d > max_d2 {
                continue;
            }
            // A box at exactly the k-th distance may still hold a tied point of lower index.
            if heap.len() == k && d > f64::from_bits(heap.peek().expect("heap is full").0) {
                continue;
            }
            self.search(child, q, k, max_d2, exclude, heap);
        }
    }
}

fn box_d2(n: &Node, q: [f64; 2]) -> f64 {
    // Never larger than the squared distance to any point inside the box (rounding of the
    // per-axis differences is monotone), so pruning on it is exact.
    let gap = |c: f64, lo: f64, hi: f64| {
        if c < lo {
            lo - c
        } else if c > hi {
            c - hi
        } else {
            0.0
        }
    };
    let (dx, dy) = (gap(q[0], n.min[0], n.max[0]), gap(q[1], n.min[1], n.max[1]));
    dx * dx + dy * dy
}

fn build(pts: &mut [[f64; 2]], idx: &mut [u32], lo: usize, hi: usize, nodes: &mut Vec<Node>) -> u32 {
    let mut min = [f64::INFINITY; 2];
    let mut max = [f64::NEG_INFINITY; 2];
    for p in &pts[lo..hi] {
        for a in 0..2 {
            min[a] = min[a].min(p[a]);
            max[a] = max[a].max(p[a]);
        }
    }
    let me = nodes.len();
    nodes.push(Node { lo: lo as u32, hi: hi as u32, left: 0, right: 0, min, max });
    if hi - lo <= LEAF {
        return me as u32;
    }
    let axis = usize::from(max[1] - min[1] > max[0] - min[0]);
    let mid = lo + (hi - lo) / 2;
    // Sort the (point, index) pairs of this range around the median on `axis`.
    let mut pairs: Vec<([f64; 2], u32)> = pts[lo..hi].iter().copied().zip(idx[lo..hi].iter().copied()).collect();
    pairs.select_nth_unstable_by(mid - lo, |a, b| a.0[axis].total_cmp(&b.0[axis]));
    for (t, (p, i)) in pairs.into_iter().enumerate() {
        pts[lo + t] = p;
        idx[lo + t] = i;
    }
    let left = build(pts, idx, lo, mid, nodes);
    let right = build(pts, idx, mid, hi, nodes);
    nodes[me].left = left;
    nodes[me].right = right;
    me as u32
}
