//! R's feature selection on a fitted W (METHOD.md 1.4-1.5) and R's `rowSums` order.
//!
//! For each SE column, the features whose value exceeds the second largest of their row
//! (`delta > 0`) are ranked by decreasing delta; the genes of the first `n_per_se` of them are
//! kept (counted with duplicates, as R does), with every feature of a kept gene. The kept rows
//! are then ordered by decreasing row sum, where the row sum is R's `rowSums`: the row summed
//! left to right in x87 extended precision ([`crate::longdouble`]), rounded to double. Equal
//! keys keep the earlier row first (a stable sort), as R's `order` does.

use std::cmp::Ordering;
use std::collections::HashSet;

use ndarray::{ArrayView1, ArrayView2, Axis};

use crate::error::{CoreError, Result};
use crate::longdouble::ld_sum;

/// R's `rowSums` of a matrix: each row summed in column order in extended precision, then
/// rounded to double. Independent of the platform's `long double`.
pub fn row_sums_ld(w: ArrayView2<f64>) -> Vec<f64> {
    w.axis_iter(Axis(0)).map(|row| ld_sum(row.iter().copied()).to_f64()).collect()
}

/// Order of `a` before `b` by decreasing value, NaN last (numpy's `argsort(-x)`).
fn decreasing(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

/// `idx` sorted by decreasing `key[i]`, ties (and equal zeros) in their given order.
fn sort_decreasing(idx: &mut [usize], key: impl Fn(usize) -> f64) {
    idx.sort_by(|&a, &b| decreasing(key(a), key(b)));
}

/// The second largest value of a row (the largest when it occurs twice): numpy's
/// `np.sort(row)[-2]`, NaN sorted last.
fn second_largest(row: ArrayView1<f64>) -> f64 {
    let mut v: Vec<f64> = row.to_vec();
    v.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    });
    v[v.len() - 2]
}

/// The genes kept by the delta rule: per SE column, the genes of the first `n_per_se`
/// features with `delta > 0` by decreasing delta.
fn kept_genes(w: ArrayView2<f64>, row_gene: &[i64], n_per_se: usize) -> HashSet<i64> {
    let second: Vec<f64> = w.axis_iter(Axis(0)).map(second_largest).collect();
    let mut kept = HashSet::new();
    for col in w.axis_iter(Axis(1)) {
        let delta: Vec<f64> = col.iter().zip(&second).map(|(&x, &s)| x - s).collect();
        let mut idx: Vec<usize> = (0..delta.len()).filter(|&i| delta[i] > 0.0).collect();
        sort_decreasing(&mut idx, |i| delta[i]);
        kept.extend(idx.iter().take(n_per_se).map(|&i| row_gene[i]));
    }
    kept
}

/// R's feature selection and row order on a fitted W (features x SEs): the rows kept (every
/// row when `n_per_se` is None, R's `Inf`), ordered by decreasing `rowSums`. `row_gene` gives
/// the gene of each row (the `__pos` and `__neg` rows of a gene share it).
pub fn select_rows(w: ArrayView2<f64>, row_gene: &[i64], n_per_se: Option<usize>) -> Result<Vec<usize>> {
    let (m, k) = w.dim();
    if row_gene.len() != m {
        return Err(CoreError::Shape(format!("row_gene has {} entries for {m} rows of W", row_gene.len())));
    }
    let mut keep: Vec<usize> = match n_per_se {
        None => (0..m).collect(),
        Some(_) if k < 2 => {
            return Err(CoreError::InvalidArgument(format!("the delta rule needs at least 2 SE columns, got {k}")))
        }
        Some(n) => {
            let genes = kept_genes(w, row_gene, n);
            (0..m).filter(|&i| genes.contains(&row_gene[i])).collect()
        }
    };
    let sums = row_sums_ld(w);
    sort_decreasing(&mut keep, |i| sums[i]);
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn row_sums_are_sequential_extended_sums() {
        // 1 + 2^-60 - 1 in order: extended precision keeps 2^-60 (a double sum would lose it).
        let w = array![[1.0, 2f64.powi(-60), -1.0], [0.5, 0.25, 0.0]];
        assert_eq!(row_sums_ld(w.view()), vec![2f64.powi(-60), 0.75]);
    }

    #[test]
    fn delta_rule_keeps_every_row_of_a_kept_gene() {
        // rows: g0__pos, g1__pos, g0__neg, g2__pos; SE columns a, b
        let w = array![[3.0, 1.0], [1.0, 2.0], [0.1, 0.2], [1.0, 1.0]];
        let genes = [0, 1, 0, 2];
        let rows = select_rows(w.view(), &genes, Some(1)).unwrap();
        // g0 (delta 2 in a) and g1 (delta 1 in b) kept, g2 (ties) not; by decreasing row sum
        assert_eq!(rows, vec![0, 1, 2]);
        assert_eq!(select_rows(w.view(), &genes, None).unwrap(), vec![0, 1, 3, 2]);
    }

    #[test]
    fn equal_sums_keep_row_order() {
        let w = array![[1.0, 2.0], [2.0, 1.0], [0.0, 3.0]];
        assert_eq!(select_rows(w.view(), &[0, 1, 2], None).unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn shapes_are_checked() {
        let w = array![[1.0, 2.0]];
        assert!(matches!(select_rows(w.view(), &[0, 1], None), Err(CoreError::Shape(_))));
        let one = array![[1.0], [2.0]];
        assert!(matches!(select_rows(one.view(), &[0, 1], Some(1)), Err(CoreError::InvalidArgument(_))));
    }
}
