//! The platform flags of `push`, `resume` and `resolve`: `--platform`,
//! `--memory-file` and the `--reddit-*` flags that build the HTTP adapter;
//! and those of `pull` and `show`: `--platform` and `--profile`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use adsync::reddit::{
    ConfigError, RatePolicy, RedditAdapter, RedditConfig, DEFAULT_BASE_URL, ENV_BASE_URL,
    ENV_TOKEN, ENV_USER_AGENT,
};
use adsync::Secret;
use clap::ValueEnum;

use crate::failure::Failure;

/// The platforms `push` can reach (`--platform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Platform {
    /// The in-memory platform, kept in a JSON file beside the store
    /// (`<db>.memory-platform.json`) unless `--memory-file` names another.
    Memory,
    /// Reddit Ads API v3 over HTTP (see the `--reddit-*` flags).
    Reddit,
}

/// Where `push`, `resume` and `resolve` reach a platform; for `resume` and
/// `resolve` a sync's checkpoint says it, and flags given must agree.
#[derive(Debug, clap::Args)]
pub struct PlatformArgs {
    /// Where to push.
    #[arg(long, value_enum, default_value = "memory")]
    pub platform: Platform,
    /// For `--platform memory`: keep the platform in this JSON file across runs.
    #[arg(long)]
    pub memory_file: Option<PathBuf>,
    #[command(flatten)]
    pub reddit: RedditArgs,
}

/// Platforms that can be pulled from (`--platform` of `pull` and `show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPlatform {
    /// Amazon Ads, Sponsored Products v3.
    Amazon,
}

/// The pulled profile `pull` fetches and `show` reads, written once so that
/// both commands' help and defaults agree.
#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// The platform the profile is pulled from.
    #[arg(long, value_enum, default_value = "amazon")]
    pub platform: PullPlatform,
    /// The advertising profile (Amazon-Advertising-API-Scope).
    #[arg(long)]
    pub profile: String,
}

/// The name a platform's adapter records in checkpoints.
pub fn platform_name(platform: Platform) -> &'static str {
    match platform {
        Platform::Memory => "memory",
        Platform::Reddit => "reddit",
    }
}

/// Which platform flags of `resume` were given (on the command line or in
/// the environment) rather than defaulted: only those must agree with a
/// checkpoint.
#[derive(Debug, Default, Clone, Copy)]
pub struct Given {
    /// `--platform` was given.
    pub platform: bool,
    /// `--reddit-base-url` (or its variable) was given.
    pub reddit_base_url: bool,
}

impl Given {
    /// What `matches` says was given; nothing for commands other than
    /// `resume` and `resolve`, which have no checkpoint to agree with.
    pub fn of(matches: &clap::ArgMatches) -> Self {
        let Some(("resume" | "resolve", sub)) = matches.subcommand() else {
            return Given::default();
        };
        let given = |id: &str| {
            matches!(
                sub.value_source(id),
                Some(
                    clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable
                )
            )
        };
        Given {
            platform: given("platform"),
            reddit_base_url: given("base_url"),
        }
    }
}

/// Parses a token into its redacting wrapper, so that not even `Debug` of the
/// parsed command line shows it.
fn parse_token(raw: &str) -> Result<Secret, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("the token must not be empty".into());
    }
    Ok(Secret::new(raw))
}

/// Flags of `--platform reddit` (ignored by other platforms).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Reddit (--platform reddit)")]
pub struct RedditArgs {
    /// The Reddit Ads API root.
    #[arg(long = "reddit-base-url", env = ENV_BASE_URL, default_value = DEFAULT_BASE_URL)]
    base_url: String,
    /// The OAuth2 bearer token. Prefer the environment variable: a flag shows
    /// in the process list. Never logged or stored.
    #[arg(long = "reddit-token", env = ENV_TOKEN, hide_env_values = true, value_parser = parse_token)]
    token: Option<Secret>,
    /// The User-Agent sent with every request (Reddit requires one).
    #[arg(long = "reddit-user-agent", env = ENV_USER_AGENT)]
    user_agent: Option<String>,
    /// Timeout of every HTTP request, in seconds.
    #[arg(long = "reddit-timeout-secs", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_secs: u64,
    /// Client-side read budget per ad account, per minute.
    #[arg(long = "reddit-reads-per-min", default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    reads_per_min: u32,
    /// Client-side write budget per ad account, per minute.
    #[arg(long = "reddit-writes-per-min", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    writes_per_min: u32,
}

impl RedditArgs {
    /// The API base URL of these flags (never a credential: it is recorded
    /// in checkpoints so that `resume` needs no flags).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Whether a token was given (flag or variable): `adsync daemon` serves
    /// Reddit only then.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The adapter these flags describe, at API base URL `base_url` (the
    /// flag's, or a checkpoint's); a missing token or a bad URL is a usage error.
    pub fn adapter_at(&self, base_url: &str) -> Result<Arc<RedditAdapter>, Failure> {
        let defaults = RedditConfig::default();
        let config = RedditConfig {
            base_url: base_url.to_string(),
            token: Some(self.token.clone().ok_or_else(|| {
                Failure::usage(format!(
                    "--platform reddit needs a token: set {ENV_TOKEN} (or --reddit-token)"
                ))
            })?),
            user_agent: self
                .user_agent
                .clone()
                .unwrap_or_else(|| defaults.user_agent.clone()),
            timeout: Duration::from_secs(self.timeout_secs),
            rate: RatePolicy {
                reads: self.reads_per_min,
                writes: self.writes_per_min,
                window: Duration::from_secs(60),
            },
            ..defaults
        };
        RedditAdapter::new(config)
            .map(Arc::new)
            .map_err(|e| Failure::usage(config_message(&e)))
    }
}

/// A configuration error, naming the flag and variable the bad value came from
/// (never a token's value).
fn config_message(e: &ConfigError) -> String {
    match e {
        ConfigError::BaseUrl { .. } => format!("--reddit-base-url / {ENV_BASE_URL}: {e}"),
        ConfigError::MissingToken => {
            format!("--platform reddit needs a token: set {ENV_TOKEN} (or --reddit-token)")
        }
        ConfigError::EmptyUserAgent | ConfigError::InvalidUserAgent { .. } => {
            format!("--reddit-user-agent / {ENV_USER_AGENT}: {e}")
        }
        ConfigError::InvalidToken => format!(
            "{ENV_TOKEN} / --reddit-token: the token contains a newline or another character \
             not allowed in an HTTP header (its value is not shown)"
        ),
        ConfigError::Client(_) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    /// `--platform` and `--profile` of `pull` and `show`: help, default and
    /// whether required, as clap builds them.
    fn profile_flags(command: &str) -> Vec<(String, Option<String>, Vec<String>, bool)> {
        let cli = <crate::Cli as clap::CommandFactory>::command();
        let sub = cli
            .find_subcommand(command)
            .unwrap_or_else(|| panic!("no `{command}` subcommand"));
        ["platform", "profile"]
            .iter()
            .map(|id| {
                let arg = sub
                    .get_arguments()
                    .find(|a| a.get_id() == id)
                    .unwrap_or_else(|| panic!("`{command}` has no --{id}"));
                (
                    id.to_string(),
                    arg.get_help().map(ToString::to_string),
                    arg.get_default_values()
                        .iter()
                        .map(|v| v.to_string_lossy().into_owned())
                        .collect(),
                    arg.is_required_set(),
                )
            })
            .collect()
    }

    #[test]
    fn pull_and_show_describe_the_profile_alike() {
        let pull = profile_flags("pull");
        assert_eq!(pull, profile_flags("show"));
        assert_eq!(pull[0].2, ["amazon"], "--platform defaults to amazon");
        assert!(pull[1].3, "--profile is required");
    }
}
