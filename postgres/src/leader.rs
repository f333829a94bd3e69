//! Leadership of a role among the workers of one database: a session-level
//! advisory lock held on a connection of its own. The lock goes with the
//! connection: a worker that dies (or whose connection drops, e.g. the
//! server restarted) stops leading, and another worker takes the role at
//! its next try. A paused worker keeps the role while paused, so the role's
//! work waits; nothing is done twice.

use adsync_engine::StoreError;
use tokio::sync::Mutex;

use crate::store::PgStore;

/// The connection holding each role's lock, by role.
#[derive(Default)]
pub(crate) struct Leader {
    held: Mutex<std::collections::HashMap<String, deadpool_postgres::Object>>,
}

/// The advisory lock key of `role`: a stable hash (FNV-1a), not the
/// standard library's (randomly seeded per process).
fn key(role: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"adsync-role:".iter().chain(role.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

impl PgStore {
    /// See [`adsync_engine::Leases::lead`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] naming the store.
    pub async fn lead(&self, role: &str) -> Result<bool, StoreError> {
        let mut held = self.inner.leader.held.lock().await;
        if let Some(connection) = held.get(role) {
            if !connection.is_closed() {
                return Ok(true);
            }
            // The connection (and with it the lock) is gone: try again.
            if let Some(gone) = held.remove(role) {
                let _ = deadpool_postgres::Object::take(gone);
            }
        }
        let connection = self.client().await?;
        let won: bool = connection
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key(role)])
            .await
            .map_err(|e| self.db_error("trying to lead", e))?
            .get(0);
        if won {
            // Kept out of the pool for as long as this process leads.
            held.insert(role.to_string(), connection);
        }
        Ok(won)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn role_keys_are_stable_and_distinct() {
        assert_eq!(super::key("schedules"), super::key("schedules"));
        assert_ne!(super::key("schedules"), super::key("other"));
    }
}
