//! Cooperative cancellation of long kernels.
//!
//! A [`Cancel`] is a flag the caller sets (from any thread) and the kernels poll cheaply (one
//! relaxed atomic load per block of work: a few lanes of cells for 10 iterations, or one cell
//! in the fast solver). A kernel that sees it set stops at the next poll and returns
//! [`CoreError::Cancelled`]; nothing it had computed is returned. A flag made with
//! [`Cancel::child`] also reads as set once any of its parents (or their ancestors) is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{CoreError, Result};

/// A cancellation flag, optionally tied to parent flags.
#[derive(Debug, Default)]
pub struct Cancel {
    flag: AtomicBool,
    parents: Vec<Arc<Cancel>>,
}

impl Cancel {
    /// A flag that is not set (and has no parent).
    pub const fn new() -> Self {
        Cancel { flag: AtomicBool::new(false), parents: Vec::new() }
    }

    /// A flag that reads as set when it or one of `parents` (or of their ancestors) is set.
    pub fn child(parents: Vec<Arc<Cancel>>) -> Self {
        Cancel { flag: AtomicBool::new(false), parents }
    }

    /// Ask the computations polling this flag (and its children) to stop.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// True once this flag or an ancestor has been set.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || self.parents.iter().any(|p| p.is_cancelled())
    }

    /// `Err(CoreError::Cancelled)` once the flag is set.
    #[inline]
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(CoreError::Cancelled)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_see_their_ancestors() {
        let root = Arc::new(Cancel::new());
        let other_root = Arc::new(Cancel::new());
        let mid = Arc::new(Cancel::child(vec![root.clone()]));
        let leaf = Cancel::child(vec![other_root.clone(), mid.clone()]);
        assert!(leaf.check().is_ok());
        leaf.cancel();
        assert!(leaf.is_cancelled() && !mid.is_cancelled() && !root.is_cancelled());
        let other = Cancel::child(vec![other_root.clone(), mid]);
        root.cancel();
        assert_eq!(other.check(), Err(CoreError::Cancelled));
        let third = Cancel::child(vec![other_root.clone()]);
        assert!(!third.is_cancelled());
        other_root.cancel();
        assert!(third.is_cancelled());
    }
}
