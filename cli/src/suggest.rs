//! Command lines printed for the user to paste: to resume, to continue after
//! a signal.

use std::path::Path;

/// `path` made absolute (so a suggested command works from any directory).
pub fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The command that continues sync `id` (its platform comes from its checkpoint).
pub fn resume_command(db: &Path, id: &str) -> String {
    let db = std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf());
    adsync::push::resume_command(&db, &[id.to_string()])
}

/// `args` as a shell command line that works when pasted: arguments with
/// anything but plain characters are single-quoted.
pub fn command_line<'a>(args: impl IntoIterator<Item = &'a str>) -> String {
    args.into_iter()
        .map(adsync::push::shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}
