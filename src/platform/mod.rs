//! Platform implementations of the adapter seams.
pub mod reddit;
