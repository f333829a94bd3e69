//! Logs on stderr: `-v`/`-vv` or `RUST_LOG` pick the level.

/// Installs the log subscriber: warnings by default, info with `-v`, debug
/// with `-vv`; `RUST_LOG`, when set, wins.
pub fn init_logs(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("adsync={level}")));
    // Colour codes only for a terminal: piped or captured logs stay plain text.
    // A failed log write is dropped rather than reported on stderr again,
    // which would panic when stderr is the closed end of a pipe.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false)
        .try_init();
}
