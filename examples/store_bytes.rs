//! Prints how many keys and bytes a closed adsync store holds, by key prefix
//! (`h/` history, `p/` plans, `r/` records, `m/` record heads, `s/` progress
//! segments, `i/` index, `x/` machine data), the number of history
//! transitions and sled's own size on disk. See docs/performance.md.
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
    let mut transitions = 0u64;
    for item in tree.iter() {
        let (key, value) = item?;
        if key.starts_with(b"h/") {
            transitions += history_entries(&value);
        }
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
    if let Some((_, _, bytes)) = by_prefix.get("h/") {
        println!(
            "h/ holds {transitions} transitions, {:.1} value bytes each",
            *bytes as f64 / transitions.max(1) as f64
        );
    }
    println!("sled size on disk: {} bytes", db.size_on_disk()?);
    Ok(())
}

/// How many transitions one history value holds: a run (`[[…],…]`, or
/// `[{…},…]` as earlier versions joined them) or one entry (`[time,…]`,
/// `{…}`).
fn history_entries(value: &[u8]) -> u64 {
    match serde_json::from_slice::<serde_json::Value>(value) {
        Ok(serde_json::Value::Array(items))
            if items.first().is_some_and(|i| i.is_array() || i.is_object()) =>
        {
            items.len() as u64
        }
        _ => 1,
    }
}
