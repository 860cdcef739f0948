//! Errors of the core. The Python binding maps each variant to a specific exception.

use thiserror::Error;

/// Everything that can go wrong in a kernel; the message names the offending argument.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// Dimensions that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// NaN or infinity where only finite numbers are allowed.
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// A negative number where only non-negative ones are allowed.
    #[error("negative value: {0}")]
    Negative(String),
    /// Any other argument outside its domain.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The computation was stopped through its [`crate::Cancel`] flag before it finished.
    #[error("cancelled")]
    Cancelled,
}

pub type Result<T> = std::result::Result<T, CoreError>;
