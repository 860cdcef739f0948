//! Times the gather kernels (not a check): ns per value read (dense) and per stored entry read
//! (CSR, CSC) for pass 1 and pass 2, then a run's dense block; also a plain streaming sum.
//!
//!     cargo run --release -p ecorecover-core --example gather_kernels
//!
//! Environment: `GATHER_THREADS` (default 1), `GATHER_ONLY=dense|csr|csc`, `GATHER_REVERSE` (kept
//! columns in reverse order). Prints wall and process CPU time.

use ecorecover_core::gather::{self, Columns, Matrix, Moments, Scaling, Sparse};

#[path = "../tests/common/random.rs"]
mod random;
use random::{csr, random, Rng};

/// Process CPU seconds (user + system, from /proc/self/stat; Linux only).
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after.split_whitespace().skip(11).take(2).map(|v| v.parse().unwrap_or(0.0)).collect();
    f.iter().sum::<f64>() / 100.0
}

fn main() {
    let threads = std::env::var("GATHER_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(1);
    let (n, p, k, g_n) = (20_000, 2_000, 1_500, 10);
    let mut rng = Rng(42);
    let x = random(&mut rng, n, p, 0.2, false);
    let mut cols: Vec<i64> = (0..p as i64).filter(|_| rng.unif() < k as f64 / p as f64).collect();
    if std::env::var("GATHER_REVERSE").is_ok() {
        cols.reverse();
    }
    let k = cols.len();
    let groups: Vec<i64> = (0..n).map(|_| rng.below(g_n + 1) as i64 - 1).collect();
    let columns = Columns::new(&cols, p).unwrap();
    let (pc, ic, dc) = csr(&x);
    let xt = x.t().to_owned();
    let (pt, it, dt) = csr(&xt);
    let stored: usize = cols.iter().map(|&c| (pt[c as usize + 1] - pt[c as usize]) as usize).sum();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let only = std::env::var("GATHER_ONLY").unwrap_or_default();
    let run = |name: &str, m: &Matrix<f64, i64>, per: usize| {
        if !only.is_empty() && only != name {
            return;
        }
        let (mut sum, mut nnz) = (vec![0.0; g_n * k], vec![0i64; g_n * k]);
        let (mut lo, mut hi) = (vec![f64::INFINITY; g_n * k], vec![f64::NEG_INFINITY; g_n * k]);
        let mut omitted = vec![false; n];
        let mut sq = vec![0.0; g_n * k];
        let (t, c0) = (std::time::Instant::now(), cpu());
        for a in (0..n).step_by(5000) {
            let b = (a + 5000).min(n);
            let acc = Moments { sum: &mut sum, nnz: &mut nnz, lo: &mut lo, hi: &mut hi };
            gather::pass1(m, a..b, &columns, &groups[a..b], g_n, true, false, acc, &mut omitted[a..b]).unwrap();
        }
        let (t1, c1) = (t.elapsed().as_secs_f64(), cpu() - c0);
        let mean: Vec<f64> = sum.iter().map(|s| s / 1000.0).collect();
        let (t, c0) = (std::time::Instant::now(), cpu());
        for a in (0..n).step_by(5000) {
            let b = (a + 5000).min(n);
            gather::pass2(m, a..b, &columns, &groups[a..b], &mean, false, &mut sq).unwrap();
        }
        let (t2, c2) = (t.elapsed().as_secs_f64(), cpu() - c0);
        let rows: Vec<usize> = (0..n).step_by(3).collect();
        let sc = Scaling { mean: &mean[..k], sd: &mean[..k], max: 10.0 };
        let (t, c0) = (std::time::Instant::now(), cpu());
        for r in rows.chunks(1000) {
            gather::extract_dense(m, r, &columns, Some(sc), false).unwrap();
        }
        let (t3, c3) = (t.elapsed().as_secs_f64(), cpu() - c0);
        let ns = |s: f64, c: usize| s * 1e9 / c as f64;
        println!(
            "{name:6} threads {threads}: pass1 {:.2} ns, pass2 {:.2} ns per {} wall ({:.2}, {:.2} cpu); runs {:.2} ns per value wall ({:.2} cpu)",
            ns(t1, per),
            ns(t2, per),
            if per == n * k { "value" } else { "stored entry" },
            ns(c1, per),
            ns(c2, per),
            ns(t3, rows.len() * k),
            ns(c3, rows.len() * k)
        );
    };
    let (t, c0) = (std::time::Instant::now(), cpu());
    let total: f64 = x.as_slice().unwrap().iter().sum();
    let (ts, cs) = (t.elapsed().as_secs_f64(), cpu() - c0);
    println!(
        "stream: plain sum of all values {:.2} ns per value wall ({:.2} cpu) [{total}]",
        ts * 1e9 / (n * p) as f64,
        cs * 1e9 / (n * p) as f64
    );
    pool.install(|| {
        run("dense", &Matrix::Dense(x.view()), n * k);
        run("csr", &Matrix::Csr(Sparse::new(&pc, &ic, &dc, n, true).unwrap(), p), stored);
        run("csc", &Matrix::Csc(Sparse::new(&pt, &it, &dt, p, true).unwrap(), n), stored);
    });
}
