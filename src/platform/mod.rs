//! Platform implementations of the adapter seams.

pub mod memory;
pub mod reddit;
