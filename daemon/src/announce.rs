//! How a command that finds the store locked learns that a daemon holds it,
//! and where to reach it: the daemon leaves a small file in the store's
//! directory while it serves (its URL and pid) and removes it when it stops.
//!
//! A daemon killed without a chance to remove it leaves the file behind; a
//! reader checks that the pid is alive before believing it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in the store's directory.
pub const FILE: &str = "daemon.json";

/// What the daemon announces: where its control API listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// `http://ADDR` of the control API.
    pub url: String,
    /// The daemon's process id.
    pub pid: u32,
}

/// Removes the announcement when dropped (the daemon stopped).
#[derive(Debug)]
pub struct Announced {
    path: PathBuf,
}

impl Drop for Announced {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes the announcement of this process serving `url` into the store
/// directory `db`; it is removed when the guard drops.
///
/// # Errors
///
/// The I/O error of writing the file.
pub fn announce(db: &Path, url: &str) -> std::io::Result<Announced> {
    let path = db.join(FILE);
    let announcement = Announcement {
        url: url.to_string(),
        pid: std::process::id(),
    };
    let text = serde_json::to_vec(&announcement).map_err(std::io::Error::other)?;
    // Written aside and renamed, so a reader never sees half a file.
    let partial = db.join(format!("{FILE}.partial"));
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, &path)?;
    Ok(Announced { path })
}

/// The announcement in store directory `db`, if a live process made it.
pub fn announced(db: &Path) -> Option<Announcement> {
    let text = std::fs::read(db.join(FILE)).ok()?;
    let announcement: Announcement = serde_json::from_slice(&text).ok()?;
    alive(announcement.pid).then_some(announcement)
}

#[cfg(unix)]
fn alive(pid: u32) -> bool {
    // /proc/<pid> exists while the process does (Linux); elsewhere assume
    // it is alive rather than hide the hint.
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

#[cfg(not(unix))]
fn alive(_pid: u32) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_is_read_while_it_stands_and_gone_after() {
        let dir = tempfile::tempdir().expect("dir");
        let guard = announce(dir.path(), "http://127.0.0.1:7878").expect("written");
        assert_eq!(
            announced(dir.path()),
            Some(Announcement {
                url: "http://127.0.0.1:7878".into(),
                pid: std::process::id()
            })
        );
        drop(guard);
        assert_eq!(announced(dir.path()), None);
        // A file left by a dead process is not believed.
        std::fs::write(
            dir.path().join(FILE),
            r#"{"url": "http://127.0.0.1:1", "pid": 4294967295}"#,
        )
        .expect("write");
        assert_eq!(announced(dir.path()), None);
    }
}
