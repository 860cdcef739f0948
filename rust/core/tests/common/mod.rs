//! Reading R's reference outputs in `tests/fixtures` for the integration tests (shared by
//! `r_fixtures.rs` and `kernel_paths.rs`).
#![allow(dead_code)] // each test crate uses its own subset

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use ndarray::Array2;

/// The rows of a tab-separated fixture file (gzipped when its name ends with `.gz`), fields as
/// strings, blank rows dropped.
pub fn fixture(rel: &str) -> Vec<Vec<String>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(rel);
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader: Box<dyn Read> =
        if rel.ends_with(".gz") { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
    BufReader::new(reader)
        .lines()
        .map(|l| l.unwrap().split('\t').map(str::to_string).collect())
        .filter(|r: &Vec<String>| !r.is_empty() && !r[0].is_empty())
        .collect()
}

/// A matrix file: header, then row name + values. Rust's float parsing is exact.
pub fn matrix(rel: &str) -> Array2<f64> {
    let rows = fixture(rel);
    let body = &rows[1..];
    let ncol = body[0].len() - 1;
    Array2::from_shape_fn((body.len(), ncol), |(i, j)| body[i][j + 1].parse().unwrap())
}
