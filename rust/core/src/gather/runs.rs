//! The dense blocks of a run, read straight from the input: cells x slots (fast mode's input,
//! scaled or not, dense or CSR) and NMFpredict's V (posneg features x cells, exact mode).

use ndarray::Array2;
use rayon::prelude::*;

use super::{check_len, fill_tile, Columns, Index, Matrix, Value};
use crate::error::{CoreError, Result};
use crate::preprocess::scaled;

/// ScaleData's statistics per slot: `(x - mean) / sd`, NaN -> 0, above `max` -> `max`.
#[derive(Clone, Copy, Debug)]
pub struct Scaling<'a> {
    pub mean: &'a [f64],
    pub sd: &'a [f64],
    pub max: f64,
}

fn check_run(n_rows: usize, rows: &[usize]) -> Result<()> {
    if rows.windows(2).any(|w| w[0] >= w[1]) || rows.last().is_some_and(|&r| r >= n_rows) {
        return Err(CoreError::InvalidArgument(format!("run rows must ascend strictly and stay below {n_rows}")));
    }
    Ok(())
}

/// The run's cells x slots, transformed and (with `scaling`) scaled, row-major.
fn run_block<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: &[usize],
    cols: &Columns,
    scaling: Option<Scaling>,
    transform: bool,
) -> Result<Vec<f64>> {
    let k = cols.len();
    check_run(m.shape().0, rows)?;
    let mut z = vec![0.0; rows.len() * k];
    fill_tile(m, rows, cols, transform, &mut z)?;
    if let Some(sc) = scaling {
        check_len("mean", sc.mean.len(), k)?;
        check_len("sd", sc.sd.len(), k)?;
        z.par_chunks_mut(k.max(1)).with_min_len(16).for_each(|row| {
            for (j, v) in row.iter_mut().enumerate() {
                *v = scaled(*v, sc.mean[j], sc.sd[j], sc.max);
            }
        });
    }
    Ok(z)
}

/// Dense cells x slots block of a run (fast mode's input), scaled when `scaling` is given.
pub fn extract_dense<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: &[usize],
    cols: &Columns,
    scaling: Option<Scaling>,
    transform: bool,
) -> Result<Array2<f64>> {
    let z = run_block(m, rows, cols, scaling, transform)?;
    Ok(Array2::from_shape_vec((rows.len(), cols.len()), z).expect("rows x slots"))
}

/// CSR (indptr, indices, data) of a run's cells x slots, transformed, zeros left out.
pub fn extract_csr<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: &[usize],
    cols: &Columns,
    transform: bool,
) -> Result<(Vec<i64>, Vec<i64>, Vec<f64>)> {
    let k = cols.len();
    let z = run_block(m, rows, cols, None, transform)?;
    let (mut indptr, mut indices, mut data) = (Vec::with_capacity(rows.len() + 1), Vec::new(), Vec::new());
    indptr.push(0);
    for row in z.chunks(k.max(1)).take(rows.len()) {
        for (j, &v) in row.iter().enumerate() {
            if v != 0.0 {
                indices.push(j as i64);
                data.push(v);
            }
        }
        indptr.push(data.len() as i64);
    }
    Ok((indptr, indices, data))
}

/// NMFpredict's V of a run, features x cells: with `posneg` the positive parts of the slots
/// then their negative parts (`max(z, 0)`, `max(-z, 0)`), else the slots themselves; only the
/// features that are in W (`in_w`) and not constant over the run's cells. Returns V and the
/// kept features' indices.
pub fn run_features<T: Value, I: Index>(
    m: &Matrix<T, I>,
    rows: &[usize],
    cols: &Columns,
    scaling: Option<Scaling>,
    posneg: bool,
    transform: bool,
    in_w: &[bool],
) -> Result<(Array2<f64>, Vec<usize>)> {
    let (n, k) = (rows.len(), cols.len());
    let nf = if posneg { 2 * k } else { k };
    check_len("in_w", in_w.len(), nf)?;
    let z = run_block(m, rows, cols, scaling, transform)?;
    let value = |f: usize, i: usize| -> f64 {
        let v = z[i * k + f % k.max(1)];
        match (posneg, f < k) {
            (false, _) => v,
            (true, true) => {
                if v > 0.0 {
                    v
                } else {
                    0.0
                }
            }
            (true, false) => {
                if -v > 0.0 {
                    -v
                } else {
                    0.0
                }
            }
        }
    };
    let kept: Vec<usize> =
        (0..nf).into_par_iter().filter(|&f| in_w[f] && n > 0 && (1..n).any(|i| value(f, i) != value(f, 0))).collect();
    let mut v = Array2::zeros((kept.len(), n));
    v.as_slice_mut().expect("standard layout").par_chunks_mut(n.max(1)).zip(&kept).for_each(|(out, &f)| {
        for (i, o) in out.iter_mut().enumerate() {
            *o = value(f, i);
        }
    });
    Ok((v, kept))
}
