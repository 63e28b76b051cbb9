//! The cell model and the search space: operations, graphs and the dataset hash, specs and pruning, the network's shape, and the enumeration of every cell.

pub mod generate;
pub mod graph;
pub mod lanes;
pub mod network;
pub mod ops;
pub mod parse;
pub mod spec;
