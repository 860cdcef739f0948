//! The core against R's reference outputs in `tests/fixtures` (no Python involved).

mod common;

use std::collections::BTreeMap;

use ecorecover_core::nmf::{update_h, update_w, StopRule};
use ecorecover_core::preprocess::{scale_dense, ScaleMethod};
use ecorecover_core::rng::RRandom;
use ecorecover_core::Cancel;
use ndarray::Array2;

use common::{fixture, matrix};

#[test]
fn sample_int_draws_match_r() {
    let rows = fixture("rng/sample_int.tsv.gz");
    let mut groups: BTreeMap<(i32, String, usize), Vec<(usize, f64)>> = BTreeMap::new();
    for r in &rows[1..] {
        let key = (r[0].parse().unwrap(), r[1].clone(), r[2].parse::<f64>().unwrap() as usize);
        groups.entry(key).or_default().push((r[3].parse().unwrap(), r[4].parse().unwrap()));
    }
    assert!(groups.len() >= 50);
    for ((seed, n, k), mut draws) in groups {
        draws.sort_by_key(|d| d.0);
        let got = RRandom::new(seed).sample_int(n.parse().unwrap(), k).unwrap();
        let want: Vec<f64> = draws.iter().map(|d| d.1).collect();
        assert_eq!(got, want, "seed {seed} n {n} k {k}");
    }
}

#[test]
fn runif_matches_r_bit_for_bit() {
    let rows = fixture("rng/runif.tsv");
    let mut groups: BTreeMap<(i32, String), Vec<(usize, f64)>> = BTreeMap::new();
    for r in &rows[1..] {
        groups
            .entry((r[0].parse().unwrap(), r[1].clone()))
            .or_default()
            .push((r[2].parse().unwrap(), r[3].parse().unwrap()));
    }
    for ((seed, call), mut vals) in groups {
        vals.sort_by_key(|v| v.0);
        let mut g = RRandom::new(seed);
        let got = if call == "runif(20)" {
            g.runif(20, 0.0, 1.0).unwrap()
        } else if call.starts_with("runif(5") {
            g.runif(5, 0.0, 7.5).unwrap()
        } else {
            g.runif(700, 0.0, 1.0).unwrap();
            g.runif(20, 0.0, 1.0).unwrap()
        };
        let want: Vec<f64> = vals.iter().map(|v| v.1).collect();
        assert_eq!(
            got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "{seed} {call}"
        );
    }
}

#[test]
fn h_step_matches_nmfpredict_kernel_small() {
    let d = "recover/nmfpredict_kernel_small/";
    let (v, w, h0, h) = (
        matrix(&format!("{d}V.tsv.gz")),
        matrix(&format!("{d}W_used.tsv")),
        matrix(&format!("{d}H0.tsv.gz")),
        matrix(&format!("{d}H_raw.tsv.gz")),
    );
    let (got, iters) = update_h(v.view(), w.view(), h0.view(), &StopRule::default(), &Cancel::new()).unwrap();
    assert_eq!(iters, 970);
    assert_eq!(got, h);
}

#[test]
fn w_step_matches_nmfgeneratew() {
    let d = "nmf_generate_w/nfeature150_perse20/";
    let v_rows = fixture(&format!("{d}V.tsv.gz"));
    let cols: Vec<String> = v_rows[0][1..].to_vec();
    let (v, w0, want) = (
        matrix(&format!("{d}V.tsv.gz")),
        matrix(&format!("{d}W0.tsv.gz")),
        matrix(&format!("{d}W_fit_before_selection.tsv.gz")),
    );
    let fr = fixture("nmf_generate_w/fractions.tsv");
    let by_name: BTreeMap<String, Vec<f64>> =
        fr[1..].iter().map(|r| (r[0].clone(), r[1..].iter().map(|x| x.parse().unwrap()).collect())).collect();
    let k = fr[0].len() - 1;
    let h = Array2::from_shape_fn((k, cols.len()), |(a, j)| by_name[&cols[j]][a] + f64::EPSILON);
    let (got, iters) = update_w(v.view(), w0.view(), h.view(), &StopRule::default(), &Cancel::new()).unwrap();
    assert_eq!(iters, 420);
    assert_eq!(got, want);
}

#[test]
fn scale_sparse_path_matches_seurat_and_dense_is_within_rounding() {
    let input = matrix("scale/input.tsv").reversed_axes(); // cells x genes
    for (file, method, tol) in [
        ("scale/scaledata_sparse.tsv", ScaleMethod::Sparse, 0.0),
        ("scale/scaledata_dense.tsv", ScaleMethod::Dense, 1.8e-15),
    ] {
        let want = matrix(file).reversed_axes();
        let got = scale_dense(input.view(), method, 10.0).unwrap();
        let diff = (&got - &want).iter().fold(0.0f64, |m, d| m.max(d.abs()));
        assert!(diff <= tol, "{file}: {diff}");
    }
}
