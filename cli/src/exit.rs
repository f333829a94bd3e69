//! The exit codes of `adsync`: every code the binary can return is a variant
//! of [`Exit`], and the `--help` paragraph that lists them is generated from
//! it, so the two cannot drift apart.

/// How `adsync` ends. The numbers are a contract with scripts (README, CLI),
/// so they live in [`Exit::code`] and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every sync settled as synced (or the command had nothing to sync).
    Ok,
    /// A sync failed; its report names the entity and why.
    SyncFailed,
    /// Bad input or usage: nothing was written because of it.
    BadInput,
    /// A sync is parked for an operator (`adsync resolve`).
    NeedsAttention,
    /// The store cannot be used (locked, corrupt, newer format).
    StoreUnusable,
    /// A sync stopped unfinished because the platform was unavailable; a
    /// later `resume` continues it.
    Deferred,
    /// What a read command was asked for does not exist: `show` of a profile
    /// with no completed pull, or of an entity id the current snapshot lacks.
    /// Distinct from [`Exit::Ok`] with empty output, so a script never reads
    /// "never pulled" as "zero keywords".
    NotFound,
    /// Differences found: `plan` — the push would write (create, update,
    /// adopt, replace or prune); `drift` — the platform no longer holds what
    /// adsync wrote. Like `terraform plan -detailed-exitcode`'s 2, but
    /// distinct from every other code here, so "changes pending" is never
    /// read as an error or as "nothing to do".
    ChangesPending,
    /// Stopped by this signal (`libc::SIGINT` or `libc::SIGTERM`) at a
    /// durable checkpoint: the shell convention, 128 + the signal.
    Interrupted(i32),
}

impl Exit {
    /// Every exit in the order `--help` lists them; `Interrupted` stands for
    /// both signals the binary handles.
    const ALL: [Exit; 9] = [
        Exit::Ok,
        Exit::SyncFailed,
        Exit::BadInput,
        Exit::NeedsAttention,
        Exit::StoreUnusable,
        Exit::Deferred,
        Exit::NotFound,
        Exit::ChangesPending,
        Exit::Interrupted(libc::SIGINT),
    ];

    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::SyncFailed => 1,
            Exit::BadInput => 2,
            Exit::NeedsAttention => 3,
            Exit::StoreUnusable => 4,
            Exit::Deferred => 5,
            Exit::NotFound => 6,
            Exit::ChangesPending => 7,
            // Out of range only for a signal we never install a handler for.
            Exit::Interrupted(signal) => u8::try_from(128 + signal).unwrap_or(u8::MAX),
        }
    }

    /// The exit that says more when a command ran several syncs: a missing
    /// thing over success (no sync command returns it today), then attention
    /// over a failure over a sync that could not be run over success; a
    /// deferred sync over those, a signal over a deferred sync (the printed
    /// command continues both), and an unusable store over everything, since
    /// until it is fixed nothing can continue. Of two signals, the first.
    pub fn worst(self, other: Exit) -> Exit {
        let rank = |e: Exit| match e {
            Exit::Ok => 0,
            Exit::ChangesPending => 1,
            Exit::NotFound => 2,
            Exit::BadInput => 3,
            Exit::SyncFailed => 4,
            Exit::NeedsAttention => 5,
            Exit::Deferred => 6,
            Exit::Interrupted(_) => 7,
            Exit::StoreUnusable => 8,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }

    /// What the code means, as `--help` says it.
    fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "everything synced",
            Exit::SyncFailed => "a sync failed",
            Exit::BadInput => "bad input or usage",
            Exit::NeedsAttention => "a sync needs attention",
            Exit::StoreUnusable => "the store could not be used (locked, corrupt)",
            Exit::Deferred => {
                "a sync stopped unfinished because the platform was unavailable (resume it later)"
            }
            Exit::NotFound => {
                "not found: no completed pull of the profile, or no entity with that id"
            }
            Exit::ChangesPending => {
                "differences: the push would write (plan), or the platform drifted (drift)"
            }
            Exit::Interrupted(_) => {
                "stopped by SIGINT/SIGTERM at a durable checkpoint (the printed command continues)"
            }
        }
    }

    /// The code(s) as `--help` shows them.
    fn shown_code(self) -> String {
        match self {
            Exit::Interrupted(_) => format!(
                "{}/{}",
                Exit::Interrupted(libc::SIGINT).code(),
                Exit::Interrupted(libc::SIGTERM).code()
            ),
            other => other.code().to_string(),
        }
    }

    /// The "Exit codes: …" paragraph of `adsync --help`.
    pub fn help_paragraph() -> String {
        let codes: Vec<String> = Exit::ALL
            .iter()
            .map(|e| format!("{} {}", e.shown_code(), e.meaning()))
            .collect();
        format!("Exit codes: {}.", codes.join("; "))
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn help_paragraph_lists_every_code() {
        assert_eq!(
            Exit::help_paragraph(),
            "Exit codes: 0 everything synced; 1 a sync failed; 2 bad input or usage; \
3 a sync needs attention; 4 the store could not be used (locked, corrupt); \
5 a sync stopped unfinished because the platform was unavailable (resume it later); \
6 not found: no completed pull of the profile, or no entity with that id; \
7 differences: the push would write (plan), or the platform drifted (drift); \
130/143 stopped by SIGINT/SIGTERM at a durable checkpoint (the printed command continues)."
        );
    }

    #[test]
    fn help_shows_the_generated_paragraph() {
        let help = <crate::Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(help.contains(&Exit::help_paragraph()), "{help}");
    }

    #[test]
    fn codes_are_distinct_and_match_the_readme_table() {
        let mut ours: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        ours.push(Exit::Interrupted(libc::SIGTERM).code());
        let mut sorted = ours.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ours.len(), "two exits share a code: {ours:?}");
        // The README's table rows look like `| 0 | ... |` or `| 130 / 143 | ... |`.
        let readme = include_str!("../../README.md");
        let table = readme
            .split("Exit codes:")
            .nth(1)
            .expect("the README has an exit-code table");
        let mut documented: Vec<u8> = table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split('|').nth(1))
            .flat_map(|cell| cell.split('/').map(|c| c.trim().parse::<u8>()))
            .filter_map(Result::ok)
            .collect();
        documented.sort_unstable();
        assert_eq!(documented, sorted);
    }

    #[test]
    fn worst_prefers_attention_then_failure_then_bad_input() {
        assert_eq!(Exit::Ok.worst(Exit::BadInput), Exit::BadInput);
        assert_eq!(Exit::BadInput.worst(Exit::SyncFailed), Exit::SyncFailed);
        assert_eq!(
            Exit::SyncFailed.worst(Exit::NeedsAttention),
            Exit::NeedsAttention
        );
        assert_eq!(
            Exit::NeedsAttention.worst(Exit::SyncFailed),
            Exit::NeedsAttention
        );
        assert_eq!(Exit::Deferred.worst(Exit::NeedsAttention), Exit::Deferred);
    }

    #[test]
    fn worst_is_a_total_order_with_an_unusable_store_on_top() {
        // Least to most telling; `worst` picks the later of any two, in
        // either argument order.
        let order = [
            Exit::Ok,
            Exit::ChangesPending,
            Exit::NotFound,
            Exit::BadInput,
            Exit::SyncFailed,
            Exit::NeedsAttention,
            Exit::Deferred,
            Exit::Interrupted(libc::SIGINT),
            Exit::StoreUnusable,
        ];
        assert_eq!(order.len(), Exit::ALL.len(), "every exit is ranked");
        for (i, &a) in order.iter().enumerate() {
            for &b in &order[i..] {
                assert_eq!(a.worst(b), b, "{a:?} then {b:?}");
                assert_eq!(b.worst(a), b, "{b:?} then {a:?}");
            }
        }
        assert_eq!(
            Exit::Deferred.worst(Exit::StoreUnusable),
            Exit::StoreUnusable
        );
        // Two signals: the first one decides.
        assert_eq!(
            Exit::Interrupted(libc::SIGTERM).worst(Exit::Interrupted(libc::SIGINT)),
            Exit::Interrupted(libc::SIGTERM)
        );
    }
}
