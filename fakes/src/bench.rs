//! Small helpers the benchmarks share: their flags, and the raw durable-write
//! rate they report beside their own figures.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

/// The value after flag `name` on the command line (`--clients 32`).
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Raw `write` + `fdatasync` of one 4 KiB page per call in directory `dir`,
/// for `seconds`: what one durable write costs on this disk right now.
pub fn raw_fdatasync_rate(dir: &Path, seconds: f64) -> f64 {
    let mut file = std::fs::File::create(dir.join("raw-fdatasync")).expect("raw file");
    let page = vec![7u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        file.write_all(&page).expect("write");
        file.sync_data().expect("fdatasync");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}
