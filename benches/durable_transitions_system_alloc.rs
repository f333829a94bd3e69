//! [`durable_transitions`](durable_transitions.rs) with the system allocator
//! (glibc's malloc on Linux): what a program that embeds the library without
//! choosing an allocator gets.
//!
//! Run: `cargo bench --bench durable_transitions_system_alloc`.

#[path = "durable/body.rs"]
mod body;

fn main() {
    body::main("the system allocator");
}
