//! Prints how many keys and bytes a closed adsync store holds, by key prefix
//! (`h/` history, `p/` plans, `r/` records, `s/` progress segments, `i/`
//! index, `x/` machine data),
//! and sled's own size on disk. See docs/performance.md.
//!
//! Run: `cargo run --release --example store_bytes -- <store directory>`.
//! Reads sled directly: run it on a store no process has open (after a
//! clean exit the write-ahead log holds nothing sled lacks).

use std::collections::BTreeMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: store_bytes <store directory>")?;
    let db = sled::Config::new().path(&path).open()?;
    let tree = db.open_tree("checkpoints")?;
    // prefix → (keys, key bytes, value bytes)
    let mut by_prefix: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for item in tree.iter() {
        let (key, value) = item?;
        let prefix = String::from_utf8_lossy(&key[..key.len().min(2)]).into_owned();
        let entry = by_prefix.entry(prefix).or_default();
        entry.0 += 1;
        entry.1 += key.len() as u64;
        entry.2 += value.len() as u64;
    }
    println!("prefix  keys  key bytes  value bytes");
    for (prefix, (keys, key_bytes, value_bytes)) in &by_prefix {
        println!("{prefix:<6} {keys:>6} {key_bytes:>10} {value_bytes:>12}");
    }
    println!("sled size on disk: {} bytes", db.size_on_disk()?);
    Ok(())
}
