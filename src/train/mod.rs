//! Training any cell with the NAS-Bench-101 protocol: the backend interface, the CPU reference backend, the network, data, the trainer and its results as rows.

pub mod backend;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod data;
pub mod net;
#[cfg(feature = "cuda")]
pub mod parity;
pub mod rows;
pub mod trainer;

pub use backend::{Backend, BackendError};
pub use cpu::Cpu;
pub use net::{Graph, Mode, Net};
