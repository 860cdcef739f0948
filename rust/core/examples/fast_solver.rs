//! Timing harness for fast mode's per-cell solver (`fast::solve_cells`, the lane kernel, against
//! `fast::solve_cells_reference`, the plain per-cell solver it replaced): a synthetic but
//! realistic problem (cells drawn from a posneg model, sparse raw values, Seurat scaling on
//! the fly), timed on 1 and 2 threads; prints cells/s, the mean Newton iterations, the
//! achieved fraction of the arithmetic bound, the histogram of Newton iterations and a digest
//! of H (to check that an optimisation leaves every bit unchanged; the lane kernel's digest
//! differs from the reference's since it has its own log and QP).
//!
//!     cargo run --release -p ecorecover-core --example fast_solver -- [N_CELLS] [N_GENES] [K] [lanes]
//!
//! Defaults: 50,000 cells, 75 genes (150 posneg features), k = 11; a fourth argument `lanes`
//! times the lane kernel alone (for profiling).

use std::time::Instant;

use ecorecover_core::fast::{solve_cells, solve_cells_reference, FastOptions, GeneModel, Scaling};
use ecorecover_core::sparse::Compressed;
use ecorecover_core::Cancel;
use ndarray::Array2;

/// SplitMix64: a small deterministic generator for the synthetic data.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Problem {
    wpos: Array2<f64>,
    wneg: Array2<f64>,
    indptr: Vec<i64>,
    indices: Vec<i64>,
    data: Vec<f64>,
    mean: Vec<f64>,
    sd: Vec<f64>,
}

/// Cells of one dominant SE each (plus a little of the others): scaled profile
/// `z = W_pos h - W_neg h + noise`, raw value `max(0, 0.6 + 0.5 z)` (about 30% zeros).
fn problem(n: usize, g: usize, k: usize, seed: u64) -> Problem {
    let mut r = Mix(seed);
    let w = |r: &mut Mix| Array2::from_shape_fn((g, k), |_| 0.05 + 2.0 * r.next().powi(3));
    let (wpos, wneg) = (w(&mut r), w(&mut r));
    let (mut indptr, mut indices, mut data) = (vec![0i64], vec![], vec![]);
    let mut h = vec![0.0; k];
    for _ in 0..n {
        let top = (r.next() * k as f64) as usize % k;
        for (a, ha) in h.iter_mut().enumerate() {
            *ha = if a == top { 1.0 } else { 0.15 * r.next() };
        }
        for j in 0..g {
            let z: f64 = (0..k).map(|a| (wpos[[j, a]] - wneg[[j, a]]) * h[a]).sum::<f64>() + 0.8 * (r.next() - 0.5);
            let x = (0.6 + 0.5 * z).max(0.0);
            if x > 0.0 {
                indices.push(j as i64);
                data.push(x);
            }
        }
        indptr.push(indices.len() as i64);
    }
    let (mut mean, mut sq) = (vec![0.0; g], vec![0.0; g]);
    for (&j, &x) in indices.iter().zip(&data) {
        mean[j as usize] += x;
        sq[j as usize] += x * x;
    }
    let nf = n as f64;
    let sd = (0..g).map(|j| ((sq[j] - mean[j] * mean[j] / nf) / (nf - 1.0)).sqrt()).collect();
    mean.iter_mut().for_each(|m| *m /= nf);
    Problem { wpos, wneg, indptr, indices, data, mean, sd }
}

fn digest(v: &[f64]) -> u64 {
    // FNV-1a over the bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in v {
        for b in x.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// CPU seconds used by this process so far (user + system, from /proc/self/stat): on a
/// shared machine the wall clock overstates the time, the CPU time does not.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum());
    ticks / 100.0
}

fn main() {
    let lanes_only = std::env::args().nth(4).is_some_and(|a| a == "lanes");
    let args: Vec<usize> = std::env::args().skip(1).take(3).map(|a| a.parse().expect("a number")).collect();
    let n = args.first().copied().unwrap_or(50_000);
    let g = args.get(1).copied().unwrap_or(75);
    let k = args.get(2).copied().unwrap_or(11);
    let p = problem(n, g, k, 20240611);
    let x = Compressed::new(&p.indptr, &p.indices, &p.data, n, g).expect("csr");
    let model = GeneModel { wpos: p.wpos.view(), wneg: p.wneg.view(), posneg: true };
    let scaling = Some(Scaling { mean: &p.mean, sd: &p.sd, scale_max: 10.0 });
    let opts = FastOptions::default();
    println!("{n} cells, {g} genes ({} posneg features), k = {k}", 2 * g);
    let runs: [(&str, usize); 4] = [("lanes", 1), ("lanes", 2), ("per-cell reference", 1), ("per-cell reference", 2)];
    for (kernel, threads) in runs.into_iter().filter(|r| !lanes_only || r.0 == "lanes") {
        let solve = if kernel == "lanes" { solve_cells } else { solve_cells_reference };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        let (mut best, mut cpu) = (f64::INFINITY, f64::INFINITY);
        let mut out = None;
        for _ in 0..3 {
            let (t0, c0) = (Instant::now(), cpu_seconds());
            let r = pool.install(|| solve(&x, &model, scaling, &opts, &Cancel::new())).expect("solve");
            best = best.min(t0.elapsed().as_secs_f64());
            cpu = cpu.min(cpu_seconds() - c0);
            out = Some(r);
        }
        let (h, it) = out.expect("ran");
        let iters: f64 = it.iter().map(|&i| f64::from(i)).sum::<f64>() / n as f64;
        let mut hist = [0usize; 12];
        it.iter().for_each(|&i| hist[(i as usize).min(11)] += 1);
        // Per Newton iteration and cell: the Hessian's lower triangle (g * k(k+1)/2 multiply-adds
        // plus g * k for q * row), the gradient (g * k multiply-adds), and about 1.3 trial points
        // of the line search (W h: g * k multiply-adds each), each multiply-add 2 flops; the
        // k-variable QP and the logarithms are not counted.
        let (gf, kf) = (g as f64, k as f64);
        let flops_iter = 2.0 * gf * kf * (kf + 1.0) / 2.0 + gf * kf + 2.0 * gf * kf + 1.3 * 2.0 * gf * kf;
        let gflops = flops_iter * iters * n as f64 / cpu / 1e9;
        println!(
            "{kernel}, threads {threads}: wall {best:.3} s ({:.0} cells/s), CPU {cpu:.2} s ({:.0} cells per CPU second), \
             {iters:.2} iterations/cell, {flops_iter:.0} flops/iteration, {gflops:.2} GFLOP per CPU second, \
             digest {:016x}; cells per iteration count (0..10, 11+) {hist:?}",
            n as f64 / best,
            n as f64 / cpu,
            digest(h.as_slice().expect("contiguous"))
        );
    }
}
