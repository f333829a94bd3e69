//! Where a sync stands: the word the runner and the store share.
//!
//! Its own module so that the store can record it without depending on the
//! machine; `crate::machine::Status` re-exports it.

use serde::{Deserialize, Serialize};
use strum::Display as StrumDisplay;

/// Where a sync stands, as recorded in its checkpoint.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    StrumDisplay,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Status {
    /// Has an effect to run.
    Running,
    /// Finished, everything done.
    Succeeded,
    /// Finished with failures (see the last error).
    Failed,
    /// Parked: an operator must decide (see the last error for why).
    NeedsAttention,
    /// Stopped for good on request ([`Runner::cancel`](crate::Runner::cancel)),
    /// at a step boundary: the effect in flight, if any, completed and was
    /// recorded first, and everything the sync learnt (platform ids) is kept.
    Cancelled,
}

impl Status {
    /// Whether the runner has nothing more to do on its own.
    pub fn is_settled(self) -> bool {
        !matches!(self, Status::Running)
    }
}

#[cfg(test)]
mod tests {
    use super::Status;

    /// Stored records hold these words: moving the type must not change them.
    #[test]
    fn the_stored_and_displayed_words_are_unchanged() {
        let words = [
            (Status::Running, "running"),
            (Status::Succeeded, "succeeded"),
            (Status::Failed, "failed"),
            (Status::NeedsAttention, "needs_attention"),
            (Status::Cancelled, "cancelled"),
        ];
        for (status, word) in words {
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{word}\"")
            );
            assert_eq!(status.to_string(), word);
            assert_eq!(word.parse::<Status>().unwrap(), status);
        }
    }
}
