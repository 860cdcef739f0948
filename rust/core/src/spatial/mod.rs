//! Spatial validation of recovered SEs: SpatialEcoTyper's colocalization index of cell states
//! with its permutation z-scores and co-association test, and Moran's I of each SE with
//! permutation z-scores.
//!
//! The neighbour graph is built once ([`graph::knn_graph`], a k-d tree) and shared by every
//! permutation; a permutation only relabels cells, so evaluating it is one pass over the
//! edges. Permutations are R's ([`permute::GroupPermuter`]): drawn sequentially from
//! [`crate::rng::RRandom`], evaluated in parallel, folded in order.

pub mod coloc;
pub mod graph;
pub mod kdtree;
pub mod moran;
pub mod permute;

pub use coloc::{coassociation_zscores, Colocalization};
pub use graph::{knn_graph, Graph};
pub use moran::Moran;
pub use permute::{GroupPermuter, Moments, PermutationTest, Statistic};
