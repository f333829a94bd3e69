//! Pull schedules: when a [`Worker`](super::Worker) pulls a profile by itself.
//!
//! A schedule is stored in the checkpoint store (one value per profile), so
//! it survives restarts. It records its next run: a worker that was down when
//! runs were due fires the schedule once when it comes back, then computes the
//! next run from *now* — missed runs collapse into one instead of firing once
//! per missed slot.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use adsync_engine::Timestamp;

/// How often a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Cadence {
    /// Every `seconds`, counted from the previous firing. The first run is
    /// when the schedule is created.
    Every {
        /// The interval (at least one second).
        seconds: u64,
    },
    /// At the times a cron expression names, in UTC: five fields (minute
    /// hour day-of-month month day-of-week), optionally a leading seconds
    /// field, or an alias such as `@hourly`. The first run is the first
    /// matching time after the schedule is created.
    Cron {
        /// The expression, as given.
        expr: String,
    },
}

/// Why a schedule was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// An interval of zero seconds would fire continuously.
    #[error("a schedule's interval must be at least one second")]
    ZeroInterval,
    /// The cron expression does not parse.
    #[error("invalid cron expression `{expr}`: {source}")]
    InvalidCron {
        /// The expression given.
        expr: String,
        /// The parser's reason.
        #[source]
        source: croner::errors::CronError,
    },
    /// The expression parses but names no time after the given one (e.g. a
    /// date that never comes again).
    #[error("cron expression `{expr}` names no future time")]
    NoNextRun {
        /// The expression given.
        expr: String,
    },
}

impl Cadence {
    /// An interval cadence.
    ///
    /// # Errors
    ///
    /// [`ScheduleError::ZeroInterval`] if `every` is shorter than a second.
    pub fn every(every: Duration) -> Result<Cadence, ScheduleError> {
        let cadence = Cadence::Every {
            seconds: every.as_secs(),
        };
        cadence.check()?;
        Ok(cadence)
    }

    /// A cron cadence (see [`Cadence::Cron`]).
    ///
    /// ```
    /// use adsync::Cadence;
    /// assert!(Cadence::cron("0 * * * *").is_ok());
    /// assert!(Cadence::cron("61 * * * *").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ScheduleError::InvalidCron`] if `expr` does not parse.
    pub fn cron(expr: &str) -> Result<Cadence, ScheduleError> {
        let cadence = Cadence::Cron {
            expr: expr.trim().to_string(),
        };
        cadence.check()?;
        Ok(cadence)
    }

    /// Checks a cadence built from untrusted input (a request body).
    ///
    /// # Errors
    ///
    /// As [`Cadence::every`] and [`Cadence::cron`].
    pub fn check(&self) -> Result<(), ScheduleError> {
        match self {
            Cadence::Every { seconds: 0 } => Err(ScheduleError::ZeroInterval),
            Cadence::Every { .. } => Ok(()),
            Cadence::Cron { expr } => parse_cron(expr).map(|_| ()),
        }
    }

    /// The first run of a schedule created at `now`.
    ///
    /// # Errors
    ///
    /// As [`Cadence::check`], and [`ScheduleError::NoNextRun`].
    pub fn first_run(&self, now: Timestamp) -> Result<Timestamp, ScheduleError> {
        match self {
            Cadence::Every { .. } => {
                self.check()?;
                Ok(now)
            }
            Cadence::Cron { .. } => self.next_after(now),
        }
    }

    /// The run after one that fired at `fired`: the next slot strictly
    /// later than `fired`, whatever slots passed before it.
    ///
    /// # Errors
    ///
    /// As [`Cadence::first_run`].
    pub fn next_after(&self, fired: Timestamp) -> Result<Timestamp, ScheduleError> {
        match self {
            Cadence::Every { seconds: 0 } => Err(ScheduleError::ZeroInterval),
            Cadence::Every { seconds } => Ok(fired + Duration::from_secs(*seconds)),
            Cadence::Cron { expr } => {
                let cron = parse_cron(expr)?;
                let none = || ScheduleError::NoNextRun { expr: expr.clone() };
                let from = chrono::DateTime::<chrono::Utc>::from_timestamp(
                    fired.unix_timestamp(),
                    fired.nanosecond(),
                )
                .ok_or_else(none)?;
                let next = cron.find_next_occurrence(&from, false).map_err(|source| {
                    ScheduleError::InvalidCron {
                        expr: expr.clone(),
                        source,
                    }
                })?;
                let nanos = i128::from(next.timestamp()) * 1_000_000_000
                    + i128::from(next.timestamp_subsec_nanos());
                Timestamp::from_unix_timestamp_nanos(nanos).map_err(|_| none())
            }
        }
    }
}

fn parse_cron(expr: &str) -> Result<croner::Cron, ScheduleError> {
    expr.parse::<croner::Cron>()
        .map_err(|source| ScheduleError::InvalidCron {
            expr: expr.to_string(),
            source,
        })
}

/// A stored pull schedule: pull `profile` on `platform` at `cadence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The platform pulled (`amazon`).
    pub platform: String,
    /// The profile pulled.
    pub profile: String,
    /// When it fires.
    pub cadence: Cadence,
    /// When it fires next.
    #[serde(with = "time::serde::rfc3339")]
    pub next_run: Timestamp,
    /// When it last started (or joined) a pull, if ever.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_run: Option<Timestamp>,
    /// How many times it started a pull.
    pub runs: u64,
    /// How many times it fired while the profile's pull was still running,
    /// and so started nothing (one pull per profile at a time).
    pub skips: u64,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

impl Schedule {
    /// A new schedule created at `now`.
    ///
    /// # Errors
    ///
    /// As [`Cadence::first_run`].
    pub fn new(
        platform: &str,
        profile: &str,
        cadence: Cadence,
        now: Timestamp,
    ) -> Result<Schedule, ScheduleError> {
        Ok(Schedule {
            platform: platform.to_string(),
            profile: profile.to_string(),
            next_run: cadence.first_run(now)?,
            cadence,
            last_run: None,
            runs: 0,
            skips: 0,
            created_at: now,
        })
    }

    /// Records a firing at `now`: a run when `ran`, a skip otherwise; the
    /// next run is the first slot after `now`, so slots missed while no
    /// worker ran are not made up one by one. A cadence that names no
    /// future time leaves the schedule due never again (far future).
    pub(crate) fn fired(&mut self, now: Timestamp, ran: bool) {
        if ran {
            self.runs += 1;
            self.last_run = Some(now);
        } else {
            self.skips += 1;
        }
        self.next_run = self
            .cadence
            .next_after(now)
            .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc());
    }

    /// The store key (machine data space) of the schedule of `profile`.
    pub(crate) fn key(platform: &str, profile: &str) -> Vec<u8> {
        format!("{PREFIX}{platform}/{profile}").into_bytes()
    }
}

/// Where schedules live in the store's data space.
pub(crate) const PREFIX: &str = "worker/schedule/";

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn an_interval_fires_at_creation_then_every_interval_from_its_last_firing() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let mut s = Schedule::new(
            "amazon",
            "p",
            Cadence::every(Duration::from_secs(3600)).unwrap(),
            t0,
        )
        .unwrap();
        assert_eq!(s.next_run, t0);
        s.fired(t0, true);
        assert_eq!(s.next_run, datetime!(2026-01-01 01:00 UTC));
        // Down for five hours: one run when it comes back, the next an hour later.
        let back = datetime!(2026-01-01 06:10 UTC);
        s.fired(back, true);
        assert_eq!(s.next_run, datetime!(2026-01-01 07:10 UTC));
        assert_eq!((s.runs, s.skips, s.last_run), (2, 0, Some(back)));
    }

    #[test]
    fn a_cron_schedule_fires_at_its_slots_and_missed_slots_collapse() {
        let t0 = datetime!(2026-01-01 00:20 UTC);
        let mut s = Schedule::new("amazon", "p", Cadence::cron("0 * * * *").unwrap(), t0).unwrap();
        assert_eq!(s.next_run, datetime!(2026-01-01 01:00 UTC));
        s.fired(datetime!(2026-01-01 04:59:59 UTC), false);
        assert_eq!(s.next_run, datetime!(2026-01-01 05:00 UTC));
        assert_eq!((s.runs, s.skips), (0, 1));
        let seconds = Cadence::cron("*/30 * * * * *").unwrap();
        assert_eq!(
            seconds.next_after(t0).unwrap(),
            datetime!(2026-01-01 00:20:30 UTC)
        );
        assert_eq!(
            Cadence::cron("@daily").unwrap().next_after(t0).unwrap(),
            datetime!(2026-01-02 00:00 UTC)
        );
    }

    #[test]
    fn bad_cadences_are_refused_with_the_reason() {
        assert!(matches!(
            Cadence::every(Duration::from_millis(500)),
            Err(ScheduleError::ZeroInterval)
        ));
        for bad in ["", "* * *", "61 * * * *", "every hour"] {
            let e = Cadence::cron(bad).unwrap_err();
            assert!(
                e.to_string().contains("invalid cron expression"),
                "{bad}: {e}"
            );
        }
        let json = r#"{"every": {"seconds": 0}}"#;
        let cadence: Cadence = serde_json::from_str(json).unwrap();
        assert!(matches!(cadence.check(), Err(ScheduleError::ZeroInterval)));
        assert!(serde_json::from_str::<Cadence>(r#"{"hourly": {}}"#).is_err());
    }
}
