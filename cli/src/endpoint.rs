//! Where a push goes: the endpoint a sync records at start, how flags and a
//! checkpoint agree on it, and the adapter that reaches it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use adsync::memory::MemoryPlatform;
use adsync::PushAdapter;
use adsync::SystemClock;

use crate::failure::Failure;
use crate::platform_args::{platform_name, Given, Platform, PlatformArgs};

/// Where a push's platform is: recorded in its syncs' labels at start (never
/// a credential) so that `resume` finds it again without flags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    /// The memory platform kept in this file.
    Memory(PathBuf),
    /// Reddit at this API base URL.
    Reddit(String),
}

/// The memory platform's file when `--memory-file` is not given: beside the
/// store (not inside sled's directory), so that pushing twice updates what the
/// first push created instead of forgetting it.
pub fn default_memory_file(db: &Path) -> PathBuf {
    match db.file_name() {
        Some(name) => db.with_file_name(format!("{}.memory-platform.json", name.to_string_lossy())),
        None => db.join("memory-platform.json"),
    }
}

impl Endpoint {
    pub fn of_flags(db: &Path, args: &PlatformArgs) -> Self {
        match args.platform {
            Platform::Memory => {
                let file = args
                    .memory_file
                    .clone()
                    .unwrap_or_else(|| default_memory_file(db));
                Endpoint::Memory(std::path::absolute(&file).unwrap_or(file))
            }
            Platform::Reddit => Endpoint::Reddit(args.reddit.base_url().to_string()),
        }
    }

    pub fn platform(&self) -> &'static str {
        match self {
            Endpoint::Memory(_) => "memory",
            Endpoint::Reddit(_) => "reddit",
        }
    }

    pub fn labels(&self, set_file: &str) -> std::collections::BTreeMap<String, String> {
        let (key, value) = match self {
            Endpoint::Memory(file) => ("memory_file", file.to_string_lossy().into_owned()),
            Endpoint::Reddit(url) => ("base_url", url.clone()),
        };
        std::collections::BTreeMap::from([
            (key.to_string(), value),
            ("set_file".to_string(), set_file.to_string()),
        ])
    }

    /// The flags that name this endpoint again (for suggested commands).
    pub fn flags(&self) -> String {
        match self {
            Endpoint::Memory(file) => format!(
                "--platform memory --memory-file {}",
                crate::suggest::shell_quote(&file.to_string_lossy())
            ),
            Endpoint::Reddit(url) => format!(
                "--platform reddit --reddit-base-url {}",
                crate::suggest::shell_quote(url)
            ),
        }
    }
}

/// The adapter for `endpoint`: a bad flag or variable is a usage error, found
/// before the store is opened or any request is sent.
pub fn open_adapter(
    args: &PlatformArgs,
    endpoint: &Endpoint,
) -> Result<Arc<dyn PushAdapter>, Failure> {
    Ok(match endpoint {
        Endpoint::Memory(path) => Arc::new(
            MemoryPlatform::open_file(path, Arc::new(SystemClock))
                .map_err(|e| Failure::usage(e.to_string()))?,
        ),
        Endpoint::Reddit(url) => args.reddit.adapter_at(url)?,
    })
}

/// The endpoint a push sync was started against, from its labels; flags that
/// were given must agree (a mismatch names both). A sync started before
/// endpoints were recorded takes the flags'.
pub fn endpoint_of(
    db: &Path,
    id: &str,
    record: &adsync::Record,
    args: &PlatformArgs,
    given: Given,
) -> Result<Endpoint, Failure> {
    let platform = record
        .labels
        .get("platform")
        .map(String::as_str)
        .unwrap_or("memory");
    let flagged = platform_name(args.platform);
    if given.platform && flagged != platform {
        return Err(Failure::usage(format!(
            "sync `{id}` was pushed to {platform}, but --platform {flagged} was given: drop the flag or pass --platform {platform}"
        )));
    }
    match platform {
        "reddit" => {
            let flag = args.reddit.base_url();
            match record.labels.get("base_url") {
                Some(url) if given.reddit_base_url && url != flag => Err(Failure::usage(format!(
                    "sync `{id}` was pushed to {url}, but the Reddit base URL given (--reddit-base-url or {}) is {flag}: drop it or give {url}",
                    adsync::reddit::ENV_BASE_URL
                ))),
                Some(url) => Ok(Endpoint::Reddit(url.clone())),
                None => Ok(Endpoint::Reddit(flag.to_string())),
            }
        }
        "memory" => {
            let recorded = record.labels.get("memory_file").map(PathBuf::from);
            let flag = args
                .memory_file
                .as_ref()
                .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()));
            match (recorded, flag) {
                (Some(file), Some(flag)) if file != flag => Err(Failure::usage(format!(
                    "sync `{id}` was pushed to the memory platform in {}, but --memory-file {} was given: drop the flag or give that file",
                    file.display(),
                    flag.display()
                ))),
                (Some(file), _) | (None, Some(file)) => Ok(Endpoint::Memory(file)),
                (None, None) => Ok(Endpoint::Memory(default_memory_file(db))),
            }
        }
        other => Err(Failure::usage(format!(
            "sync `{id}` was pushed to platform `{other}`, which this adsync cannot reach"
        ))),
    }
}
