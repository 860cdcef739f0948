//! Profiling harness for the spatial permutation tests: times the graph, the draws alone, the
//! evaluations alone and the full `run`, and prints a digest of the moments (to check that an
//! optimisation leaves every bit unchanged).
//!
//! Input: raw little-endian files `x_N.bin`, `y_N.bin` (f64), `state_N.bin`, `type_N.bin`,
//! `se_N.bin` (u32 codes) in a directory.
//!
//!     cargo run --profile profiling -p ecorecover-core --example spatial_profile -- DIR N N_PERM [coloc|moran]

use std::time::Instant;

use ecorecover_core::rng::RRandom;
use ecorecover_core::spatial::{knn_graph, Colocalization, GroupPermuter, Moran, PermutationTest, Statistic};

fn read_f64(path: &str) -> Vec<f64> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
}

fn read_u32(path: &str) -> Vec<u32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    b.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
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

fn profile<S: Statistic + Clone>(stat: S, labels: Vec<u32>, groups: &[u32], n_perm: usize, seed: i32) {
    let permuter = GroupPermuter::new(labels, groups).expect("permuter");
    // Draws alone.
    let mut p = permuter.clone();
    let mut rng = RRandom::new(seed);
    let mut buf: Vec<u8> = Vec::new();
    let t = Instant::now();
    let mut drawn = Vec::new();
    for i in 0..n_perm {
        p.draw(&mut rng, &mut buf);
        if i < 4 {
            drawn.push(buf.clone());
        }
    }
    let t_draw = t.elapsed().as_secs_f64();
    // Evaluations alone (single thread), on the first drawn permutations (u8 labels, as `run`
    // stores fewer than 256 labels).
    let mut out = vec![0.0; stat.len()];
    let t = Instant::now();
    for i in 0..n_perm {
        stat.eval(&drawn[i % drawn.len()], &mut out);
    }
    let t_eval = t.elapsed().as_secs_f64();
    // Full run.
    let mut test = PermutationTest::new(stat, permuter, RRandom::new(seed));
    let t = Instant::now();
    test.run(n_perm);
    let t_run = t.elapsed().as_secs_f64();
    let per = |s: f64| 1e3 * s / n_perm as f64;
    println!(
        "draw {t_draw:.2} s ({:.1} ms/perm), eval 1 thread {t_eval:.2} s ({:.1} ms/perm), run {t_run:.2} s \
         ({:.1} ms/perm, {} threads)",
        per(t_draw),
        per(t_eval),
        per(t_run),
        rayon::current_num_threads()
    );
    println!("digest mean {:016x} sd {:016x}", digest(&test.moments.mean), digest(&test.moments.sd()));
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (dir, n, n_perm) = (&a[1], &a[2], a[3].parse::<usize>().expect("N_PERM"));
    let what = a.get(4).map_or("coloc", String::as_str);
    let x = read_f64(&format!("{dir}/x_{n}.bin"));
    let y = read_f64(&format!("{dir}/y_{n}.bin"));
    let types = read_u32(&format!("{dir}/type_{n}.bin"));
    let t = Instant::now();
    if what == "coloc" {
        let states = read_u32(&format!("{dir}/state_{n}.bin"));
        let n_states = states.iter().max().map_or(0, |&m| m as usize + 1);
        let (g, keep) = knn_graph(&x, &y, 199, 50.0, 10).expect("graph");
        let stat = Colocalization::new(g, &keep, n_states).expect("coloc");
        println!(
            "coloc: {} cells, {} kept, {} edges, graph {:.2} s",
            x.len(),
            stat.n_kept(),
            stat.n_edges(),
            t.elapsed().as_secs_f64()
        );
        profile(stat, states, &types, n_perm, 1);
    } else {
        let se = read_u32(&format!("{dir}/se_{n}.bin"));
        let n_se = se.iter().max().map_or(0, |&m| m as usize + 1);
        let (g, _) = knn_graph(&x, &y, 3, f64::INFINITY, 0).expect("graph");
        let stat = Moran::new(g, 3, &se, n_se).expect("moran");
        println!("moran: {} cells, graph {:.2} s", x.len(), t.elapsed().as_secs_f64());
        profile(stat, se, &types, n_perm, 2);
    }
}
