//! What a worker counts, and its rendering in the Prometheus text format.
//!
//! Labels are fixed, small sets (machine kind, platform, effect name,
//! status): never a sync id, account or anything a user typed, so a scrape
//! stays small and no secret can reach it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use parking_lot::Mutex;

use adsync_engine::{Status, WriterStats};

use super::queue::QueueDepth;

/// Upper bounds (seconds) of the effect latency histogram's buckets: from a
/// fast local call to a platform answering slowly near a client timeout.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, n) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// (machine, platform) → transitions.
    transitions: BTreeMap<(&'static str, String), u64>,
    /// (machine, platform, effect) → latency from step start to durable outcome.
    effects: BTreeMap<(&'static str, String, &'static str), Histogram>,
    /// (machine, status) → syncs this worker saw settle.
    settled: BTreeMap<(&'static str, Status), u64>,
    /// machine → submissions acknowledged.
    submitted: BTreeMap<&'static str, u64>,
    /// platform → (runs, skips).
    schedules: BTreeMap<String, (u64, u64)>,
    /// machine → run errors (store failures, undecodable states).
    errors: BTreeMap<&'static str, u64>,
}

/// A worker's counters; [`Metrics::render`] writes them out.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

/// Figures read at scrape time rather than counted: they belong to the
/// store, the queue and the platform clients.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Every sync in the store, by machine and status.
    pub syncs: BTreeMap<(String, Status), u64>,
    /// The queue.
    pub depth: QueueDepth,
    /// The store's writer.
    pub writer: WriterStats,
    /// platform → (429 responses received, seconds waited in its rate limiter).
    pub platforms: BTreeMap<String, (u64, f64)>,
}

impl Metrics {
    pub(crate) fn transition(
        &self,
        machine: &'static str,
        platform: &str,
        effect: Option<&'static str>,
        took: Duration,
    ) {
        let mut c = self.counters.lock();
        *c.transitions
            .entry((machine, platform.to_string()))
            .or_default() += 1;
        if let Some(effect) = effect {
            c.effects
                .entry((machine, platform.to_string(), effect))
                .or_default()
                .observe(took.as_secs_f64());
        }
    }

    pub(crate) fn settled(&self, machine: &'static str, status: Status) {
        *self
            .counters
            .lock()
            .settled
            .entry((machine, status))
            .or_default() += 1;
    }

    pub(crate) fn submitted(&self, machine: &'static str, n: usize) {
        *self.counters.lock().submitted.entry(machine).or_default() += n as u64;
    }

    pub(crate) fn schedule_fired(&self, platform: &str, ran: bool) {
        let mut c = self.counters.lock();
        let entry = c.schedules.entry(platform.to_string()).or_default();
        if ran {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }

    pub(crate) fn error(&self, machine: &'static str) {
        *self.counters.lock().errors.entry(machine).or_default() += 1;
    }

    /// Transitions counted so far, all machines and platforms.
    pub fn transitions(&self) -> u64 {
        self.counters.lock().transitions.values().sum()
    }

    /// The counters and `gauges` in the Prometheus text exposition format
    /// (version 0.0.4).
    pub fn render(&self, gauges: &Gauges) -> String {
        let c = self.counters.lock();
        let mut out = String::new();
        header(
            &mut out,
            "adsync_syncs",
            "gauge",
            "Syncs in the store by machine and status.",
        );
        for ((machine, status), n) in &gauges.syncs {
            let _ = writeln!(
                out,
                "adsync_syncs{{machine=\"{}\",status=\"{}\"}} {n}",
                escape(machine),
                status
            );
        }
        header(&mut out, "adsync_queue", "gauge", "Syncs the worker holds, by place: ready (waiting for a slot), waiting (for a time), running.");
        for (place, n) in [
            ("ready", gauges.depth.ready),
            ("waiting", gauges.depth.waiting),
            ("running", gauges.depth.running),
        ] {
            let _ = writeln!(out, "adsync_queue{{place=\"{place}\"}} {n}");
        }
        header(
            &mut out,
            "adsync_transitions_total",
            "counter",
            "Durable transitions applied by this worker.",
        );
        for ((machine, platform), n) in &c.transitions {
            let _ = writeln!(
                out,
                "adsync_transitions_total{{machine=\"{machine}\",platform=\"{}\"}} {n}",
                escape(platform)
            );
        }
        header(
            &mut out,
            "adsync_effect_seconds",
            "histogram",
            "Time from a step's start to its outcome being durable, for steps that ran an effect.",
        );
        for ((machine, platform, effect), h) in &c.effects {
            let labels = format!(
                "machine=\"{machine}\",platform=\"{}\",effect=\"{effect}\"",
                escape(platform)
            );
            for (bound, n) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "adsync_effect_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "adsync_effect_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "adsync_effect_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "adsync_effect_seconds_count{{{labels}}} {}", h.count);
        }
        header(
            &mut out,
            "adsync_syncs_settled_total",
            "counter",
            "Syncs this worker ran to a settled status.",
        );
        for ((machine, status), n) in &c.settled {
            let _ = writeln!(
                out,
                "adsync_syncs_settled_total{{machine=\"{machine}\",status=\"{status}\"}} {n}"
            );
        }
        header(
            &mut out,
            "adsync_submissions_total",
            "counter",
            "Submissions acknowledged (durable) by this worker.",
        );
        for (machine, n) in &c.submitted {
            let _ = writeln!(out, "adsync_submissions_total{{machine=\"{machine}\"}} {n}");
        }
        header(
            &mut out,
            "adsync_run_errors_total",
            "counter",
            "Syncs a worker could not step (store failure, undecodable state).",
        );
        for (machine, n) in &c.errors {
            let _ = writeln!(out, "adsync_run_errors_total{{machine=\"{machine}\"}} {n}");
        }
        header(
            &mut out,
            "adsync_schedule_runs_total",
            "counter",
            "Schedule firings that started a pull.",
        );
        for (platform, (runs, _)) in &c.schedules {
            let _ = writeln!(
                out,
                "adsync_schedule_runs_total{{platform=\"{}\"}} {runs}",
                escape(platform)
            );
        }
        header(
            &mut out,
            "adsync_schedule_skips_total",
            "counter",
            "Schedule firings skipped because the profile's pull was still running.",
        );
        for (platform, (_, skips)) in &c.schedules {
            let _ = writeln!(
                out,
                "adsync_schedule_skips_total{{platform=\"{}\"}} {skips}",
                escape(platform)
            );
        }
        header(
            &mut out,
            "adsync_rate_limited_total",
            "counter",
            "429 responses received from a platform.",
        );
        for (platform, (throttled, _)) in &gauges.platforms {
            let _ = writeln!(
                out,
                "adsync_rate_limited_total{{platform=\"{}\"}} {throttled}",
                escape(platform)
            );
        }
        header(
            &mut out,
            "adsync_rate_wait_seconds_total",
            "counter",
            "Seconds requests waited in a platform client's rate limiter.",
        );
        for (platform, (_, waited)) in &gauges.platforms {
            let _ = writeln!(
                out,
                "adsync_rate_wait_seconds_total{{platform=\"{}\"}} {waited}",
                escape(platform)
            );
        }
        header(
            &mut out,
            "adsync_store_commits_total",
            "counter",
            "Commits the store acknowledged.",
        );
        let _ = writeln!(out, "adsync_store_commits_total {}", gauges.writer.commits);
        header(&mut out, "adsync_store_durable_writes_total", "counter", "Durable writes (flushes) of the store; commits per durable write is the ratio of the two.");
        let _ = writeln!(
            out,
            "adsync_store_durable_writes_total {}",
            gauges.writer.flushes
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, quote, newline), per the format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
