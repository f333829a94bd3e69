//! Platform implementations of the adapter seams.

pub mod amazon;
pub mod memory;
pub mod reddit;
