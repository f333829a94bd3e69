//! Durable transitions per second, beside raw write+fdatasync on the same disk,
//! with the allocator the `adsync` binary uses (mimalloc). The measurement
//! itself is in `durable/body.rs`; `durable_transitions_system_alloc` runs it
//! with the system allocator, for programs that embed the library without
//! choosing one.
//!
//! Run: `cargo bench --bench durable_transitions` (add `-- --quick` for a short run).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "durable/body.rs"]
mod body;

fn main() {
    body::main("mimalloc, as the adsync binary");
}
