//! A borrowed compressed sparse matrix (CSR or CSC, as scipy stores them).

use crate::error::{CoreError, Result};

/// Compressed storage: `indptr` has one entry per major index plus one; the entries of major
/// index `i` are `indices[indptr[i]..indptr[i + 1]]` (minor indices) and the same slice of
/// `data`. For CSR the major axis is rows, for CSC it is columns.
#[derive(Clone, Copy, Debug)]
pub struct Compressed<'a> {
    pub indptr: &'a [i64],
    pub indices: &'a [i64],
    pub data: &'a [f64],
    /// Number of major slices (rows of a CSR, columns of a CSC).
    pub n_major: usize,
    /// Length of the minor axis.
    pub n_minor: usize,
}

impl<'a> Compressed<'a> {
    /// Check the structure; indices must be in range (sortedness is not required).
    pub fn new(indptr: &'a [i64], indices: &'a [i64], data: &'a [f64], n_major: usize, n_minor: usize) -> Result<Self> {
        if indptr.len() != n_major + 1 {
            return Err(CoreError::Shape(format!(
                "indptr has {} entries, expected {} (major dimension + 1)",
                indptr.len(),
                n_major + 1
            )));
        }
        if indices.len() != data.len() {
            return Err(CoreError::Shape(format!(
                "indices ({}) and data ({}) differ in length",
                indices.len(),
                data.len()
            )));
        }
        if indptr[0] != 0 || indptr[n_major] as usize != data.len() {
            return Err(CoreError::Shape("indptr must start at 0 and end at the number of stored entries".into()));
        }
        if indptr.windows(2).any(|w| w[1] < w[0]) {
            return Err(CoreError::InvalidArgument("indptr must be non-decreasing".into()));
        }
        if let Some(&bad) = indices.iter().find(|&&j| j < 0 || j as usize >= n_minor) {
            return Err(CoreError::Shape(format!("index {bad} out of range for a minor dimension of {n_minor}")));
        }
        Ok(Compressed { indptr, indices, data, n_major, n_minor })
    }

    /// The (indices, values) of major slice `i`.
    #[inline]
    pub fn slice(&self, i: usize) -> (&'a [i64], &'a [f64]) {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }
}
