//! The data path of recovery: the model genes read straight from the caller's matrix (dense in
//! any strides, CSR or CSC; float or integer values; 32- or 64-bit indices), without format
//! conversions, into the per-(cell type, gene) statistics of the scaling passes and the dense
//! blocks of the runs.
//!
//! Rows (cells) are read in tiles: a tile holds the chosen columns ("slots") of a few hundred
//! rows as f64, row-major, after the optional `log2(x + 1)` of the raw-count guard. Row-major
//! inputs fill a tile row by row in parallel, column-major ones column by column. The sums of
//! a slot are accumulated one value after the other in cell order, so they are the bits of
//! numpy's unbuffered `np.add.at` over the cells; the work is split over slots, never within
//! a sum, so every thread count gives the same bits.

use std::ops::Range;

use ndarray::ArrayView2;

use crate::error::{CoreError, Result};

/// Values above this count as expressed in the "fewer than 3 genes" rule.
pub const EXPRESSED: f64 = 1e-16;
/// A scored cell expressing fewer model genes than this is left out when scaling.
pub const MIN_GENES_EXPRESSED: usize = 3;
/// Values per tile read row by row (256 kB of f64: the tile stays in L2 between its filling
/// and its accumulation).
const TILE: usize = 1 << 15;
/// Values per tile read column by column (4 MB: every column costs a search per tile).
const COLUMN_TILE: usize = 1 << 19;
const NONE: u32 = u32::MAX;

/// A stored value: converted to f64 as numpy's `astype(float64)` does.
pub trait Value: Copy + Send + Sync {
    fn to_f64(self) -> f64;
}
macro_rules! value {
    ($($t:ty),*) => { $(impl Value for $t { #[inline] fn to_f64(self) -> f64 { self as f64 } })* };
}
value!(f64, f32, i64, i32, i16, i8, u64, u32, u16, u8);

/// A sparse index (scipy uses int32 or int64).
pub trait Index: Copy + Send + Sync {
    fn to_index(self) -> Option<usize>;
}
impl Index for i32 {
    #[inline]
    fn to_index(self) -> Option<usize> {
        usize::try_from(self).ok()
    }
}
impl Index for i64 {
    #[inline]
    fn to_index(self) -> Option<usize> {
        usize::try_from(self).ok()
    }
}

/// Compressed storage as scipy keeps it; `sorted`: the minor indices ascend within each slice.
#[derive(Clone, Copy, Debug)]
pub struct Sparse<'a, T, I> {
    indptr: &'a [I],
    indices: &'a [I],
    data: &'a [T],
    n_major: usize,
    sorted: bool,
}

impl<'a, T: Value, I: Index> Sparse<'a, T, I> {
    /// Checks `indptr` (length, start, end, order); indices are checked as they are read.
    pub fn new(indptr: &'a [I], indices: &'a [I], data: &'a [T], n_major: usize, sorted: bool) -> Result<Self> {
        if indptr.len() != n_major + 1 {
            return Err(CoreError::Shape(format!("indptr has {} entries, expected {}", indptr.len(), n_major + 1)));
        }
        if indices.len() != data.len() {
            return Err(CoreError::Shape(format!(
                "indices ({}) and data ({}) differ in length",
                indices.len(),
                data.len()
            )));
        }
        let ptr: Option<Vec<usize>> = indptr.iter().map(|p| p.to_index()).collect();
        let ok = ptr.is_some_and(|p| p[0] == 0 && p.windows(2).all(|w| w[0] <= w[1]) && p[n_major] <= data.len());
        if !ok {
            return Err(CoreError::InvalidArgument("indptr must start at 0, not decrease and stay within data".into()));
        }
        Ok(Sparse { indptr, indices, data, n_major, sorted })
    }

    #[inline]
    fn range(&self, i: usize) -> Range<usize> {
        self.indptr[i].to_index().unwrap_or(0)..self.indptr[i + 1].to_index().unwrap_or(0)
    }
}

/// The input matrix (cells x genes), borrowed.
#[derive(Clone, Copy, Debug)]
pub enum Matrix<'a, T, I> {
    Dense(ArrayView2<'a, T>),
    Csr(Sparse<'a, T, I>, usize),
    Csc(Sparse<'a, T, I>, usize),
}

impl<T: Value, I: Index> Matrix<'_, T, I> {
    /// (rows, columns).
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Matrix::Dense(v) => v.dim(),
            Matrix::Csr(s, n_cols) => (s.n_major, *n_cols),
            Matrix::Csc(s, n_rows) => (*n_rows, s.n_major),
        }
    }
}

/// The columns read ("slots", in the given order) and the slot of every input column.
#[derive(Clone, Debug)]
pub struct Columns {
    cols: Vec<usize>,
    slot: Vec<u32>,
}

impl Columns {
    /// `cols`: distinct input columns below `n_cols`.
    pub fn new(cols: &[i64], n_cols: usize) -> Result<Self> {
        let mut slot = vec![NONE; n_cols];
        let mut out = Vec::with_capacity(cols.len());
        for (s, &c) in cols.iter().enumerate() {
            let c = usize::try_from(c).ok().filter(|&c| c < n_cols);
            let Some(c) = c else {
                return Err(CoreError::Shape(format!("column {} out of range for {n_cols} columns", cols[s])));
            };
            if slot[c] != NONE {
                return Err(CoreError::InvalidArgument(format!("column {c} is given twice")));
            }
            slot[c] = s as u32;
            out.push(c);
        }
        Ok(Columns { cols: out, slot })
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.cols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }
}

/// What a tile's raw (untransformed) values hold: non-finite and negative values (first in
/// (row, slot) order), min and max of the stored values, and how many were stored (an
/// implicit zero is a cell/slot pair with nothing stored; dense zeros count as implicit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scan {
    pub nonfinite: u64,
    pub first_nonfinite: Option<(usize, usize, f64)>,
    pub first_negative: Option<(usize, usize, f64)>,
    pub min: f64,
    pub max: f64,
    pub stored: u64,
    pub cells: u64,
}

impl Default for Scan {
    fn default() -> Self {
        Scan {
            nonfinite: 0,
            first_nonfinite: None,
            first_negative: None,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            stored: 0,
            cells: 0,
        }
    }
}

fn first(a: Option<(usize, usize, f64)>, b: Option<(usize, usize, f64)>) -> Option<(usize, usize, f64)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if (y.0, y.1) < (x.0, x.1) { y } else { x }),
        (x, y) => x.or(y),
    }
}

impl Scan {
    #[inline]
    fn see(&mut self, row: usize, slot: usize, v: f64) {
        self.stored += 1;
        if !v.is_finite() {
            self.nonfinite += 1;
            self.first_nonfinite = first(self.first_nonfinite, Some((row, slot, v)));
        } else if v < 0.0 {
            self.first_negative = first(self.first_negative, Some((row, slot, v)));
        }
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Both scans together (associative and commutative: any split gives the same result).
    pub fn merge(self, o: Scan) -> Scan {
        Scan {
            nonfinite: self.nonfinite + o.nonfinite,
            first_nonfinite: first(self.first_nonfinite, o.first_nonfinite),
            first_negative: first(self.first_negative, o.first_negative),
            min: self.min.min(o.min),
            max: self.max.max(o.max),
            stored: self.stored + o.stored,
            cells: self.cells + o.cells,
        }
    }

    /// Whether some cell/slot pair holds an implicit zero.
    pub fn implicit_zero(&self) -> bool {
        self.stored < self.cells
    }
}

fn dup(r: usize, c: usize) -> CoreError {
    CoreError::InvalidArgument(format!("the sparse matrix stores row {r}, column {c} twice; sum_duplicates() first"))
}

fn unsorted(c: usize) -> CoreError {
    CoreError::InvalidArgument(format!("the rows of column {c} are not sorted although the matrix says so"))
}

fn bad_index(i: usize, n: usize) -> CoreError {
    CoreError::Shape(format!("a sparse index is out of range (entry {i}, dimension {n})"))
}

/// Rows per tile for `k` slots.
fn tile_rows<T: Value, I: Index>(k: usize, m: &Matrix<T, I>) -> usize {
    let by_columns = match m {
        Matrix::Dense(v) => v.nrows() > 1 && v.strides()[0] == 1,
        Matrix::Csc(..) => true,
        Matrix::Csr(..) => false,
    };
    (if by_columns { COLUMN_TILE } else { TILE } / k.max(1)).clamp(16, 8192)
}

fn check_len(name: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(CoreError::Shape(format!("{name} has {got} entries, expected {want}")))
    }
}

fn check_rows(rows: &Range<usize>, n_rows: usize, groups: usize) -> Result<()> {
    if rows.start > rows.end || rows.end > n_rows {
        return Err(CoreError::Shape(format!("rows {}..{} out of range for {n_rows} rows", rows.start, rows.end)));
    }
    if groups != rows.len() {
        return Err(CoreError::Shape(format!("{groups} group ids for {} rows", rows.len())));
    }
    Ok(())
}

mod cells;
mod csc;
mod entries;
mod quick;
mod runs;
mod stats;
mod tile;
use quick::{Quick, Tr};
pub use runs::{extract_csr, extract_dense, run_features, Scaling};
pub use stats::{pass1, pass2, Moments};
pub use tile::fill_tile;
