//! All output of the binary goes through here, so a closed pipe (`adsync push
//! … | head -1`) ends output quietly instead of panicking as `println!` does.
//!
//! The first failed write to stdout (or stderr) marks it closed and every later
//! write to it is skipped: a push or pull keeps running and exits with its own
//! code, it just stops talking.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to stdout unless an earlier write failed.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    // Any error (a closed pipe above all) means nobody reads us any more.
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes `args` to stderr unless an earlier write failed.
pub fn write_err(args: std::fmt::Arguments<'_>) {
    if STDERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    if err.write_fmt(args).is_err() {
        STDERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `print!` that never panics (see the module docs).
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdout::write_out(format_args!($($arg)*)) };
}

/// `println!` that never panics (see the module docs).
macro_rules! outln {
    () => { $crate::stdout::write_out(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::stdout::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics (see the module docs).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::stdout::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}
