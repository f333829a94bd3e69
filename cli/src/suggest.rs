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
    resume_many(&db, &[id.to_string()])
}

/// `adsync --db <db> resume <syncs...>`, ready to paste.
pub fn resume_many(db: &Path, syncs: &[String]) -> String {
    let mut command = format!("adsync --db {} resume", shell_quote(&db.to_string_lossy()));
    for sync in syncs {
        command.push(' ');
        command.push_str(&shell_quote(sync));
    }
    command
}

/// Quotes `word` for a POSIX shell when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `args` as a shell command line that works when pasted: arguments with
/// anything but plain characters are single-quoted.
pub fn command_line<'a>(args: impl IntoIterator<Item = &'a str>) -> String {
    args.into_iter()
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}
