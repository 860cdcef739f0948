//! Times the exact-mode H-step with each kernel path this CPU runs (scalar, AVX2, AVX-512) on
//! a recovery-sized problem, checks that all give the same bits, and prints the speedups.
//!
//!     cargo run --release -p ecorecover-core --example nmf_kernels -- [M N K ITERS THREADS REPEATS]
//!
//! Defaults: 150 features, 1000 cells, k = 11, 1500 iterations, 1 thread, best of 3.
//!
//! Besides wall time it prints the CPU time of the run (on Linux: the on-CPU time of all the
//! process's threads, from `/proc/self/task/*/schedstat`), which other processes sharing the
//! CPU disturb much less; the rates are computed from the best CPU time when there is one.

use std::time::Instant;

use ecorecover_core::nmf::{update_h_with, KernelPath, StopRule};
use ecorecover_core::Cancel;
use ndarray::Array2;

/// A posneg-like problem: about half of V is zero; W and H0 positive.
fn problem(m: usize, n: usize, k: usize) -> (Array2<f64>, Array2<f64>, Array2<f64>) {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut unit = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let v = Array2::from_shape_fn((m, n), |_| if unit() < 0.5 { 0.0 } else { 3.0 * unit() });
    let w = Array2::from_shape_fn((m, k), |_| 0.01 + unit());
    let h = Array2::from_shape_fn((k, n), |_| 0.01 + unit());
    (v, w, h)
}

/// Nanoseconds all threads of this process have spent on a CPU (Linux), else `None`.
fn cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn main() {
    let arg = |i: usize, d: usize| std::env::args().nth(i).map_or(d, |a| a.parse().expect("a whole number"));
    let (m, n, k, iters, threads, repeats) =
        (arg(1, 150), arg(2, 1000), arg(3, 11), arg(4, 1500), arg(5, 1), arg(6, 3));
    let (v, w, h0) = problem(m, n, k);
    // Never stop early: every run does exactly `iters` iterations.
    let rule = StopRule { max_iter: iters, every: 10, stationary: usize::MAX };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
    let nnz = v.iter().filter(|&&x| x != 0.0).count();
    // Per non-zero and iteration: k mul + k add for (WH), one div, k mul + k add for the sums.
    let flops = (4 * k + 1) as f64 * nnz as f64 * iters as f64;
    println!("m {m}, n {n}, k {k}, {iters} iterations, {threads} thread(s), {nnz} non-zeros, best of {repeats}");
    let mut results: Vec<(KernelPath, f64, f64, Vec<u64>)> = Vec::new();
    for path in KernelPath::available() {
        let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
        let mut out = Vec::new();
        for _ in 0..repeats {
            let (t, c) = (Instant::now(), cpu_ns());
            let (h, it) = pool
                .install(|| update_h_with(v.view(), w.view(), h0.view(), &rule, &Cancel::new(), path))
                .expect("the H-step runs");
            wall = wall.min(t.elapsed().as_secs_f64());
            if let (Some(c0), Some(c1)) = (c, cpu_ns()) {
                cpu = cpu.min(c1.saturating_sub(c0) as f64 / 1e9);
            }
            assert_eq!(it, iters);
            out = h.iter().map(|x| x.to_bits()).collect();
        }
        results.push((path, wall, cpu, out));
    }
    let time = |r: &(KernelPath, f64, f64, Vec<u64>)| if r.2.is_finite() { r.2 } else { r.1 };
    let base = time(&results[0]);
    for r in &results {
        let (path, wall, cpu, out) = r;
        assert!(*out == results[0].3, "{path:?} differs from {:?}", results[0].0);
        let secs = time(r);
        println!(
            "{:>7}: {wall:7.3} s wall {cpu:7.3} s cpu  {:8.0} cells/s  {:5.2} GFLOP/s  {:4.2}x scalar",
            path.name(),
            n as f64 / secs,
            flops / secs / 1e9,
            base / secs
        );
    }
    println!("all paths bit-identical");
}
