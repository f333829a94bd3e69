//! Platform implementations of the adapter seams.
