//! A throwaway PostgreSQL server for tests and benches: [`TestServer`].
//!
//! * With `ADSYNC_TEST_POSTGRES_URL` set (a `postgres://user:password@host:port/db`
//!   URL of a server the tests may create databases in), each
//!   [`TestServer::start`] creates a fresh database there and drops it again.
//! * Otherwise the system's PostgreSQL binaries (`initdb`, `pg_ctl`: on `PATH`,
//!   else the newest `/usr/lib/postgresql/*/bin`) run one server per test
//!   binary, `initdb`'d into a temporary directory, listening on a free port of
//!   127.0.0.1 only, with a generated password (scram) for TCP; as the
//!   `postgres` user when the tests run as root. Each [`TestServer::start`]
//!   gets a fresh database in it, so tests running in parallel do not see each
//!   other. The server is stopped (`pg_ctl stop -m immediate`) and its
//!   directory removed when the test binary exits.
//! * [`TestServer::dedicated`] starts a server of its own (for tests that
//!   [`restart`](TestServer::restart) it); it is stopped and removed on drop.
//!
//! No binaries and no URL: the call panics, saying what to install. A test
//! that needs PostgreSQL never passes without one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The variable naming an existing server to use instead of starting one.
pub const URL_VARIABLE: &str = "ADSYNC_TEST_POSTGRES_URL";

/// A database of its own for one test, on a throwaway (or given) server.
pub struct TestServer {
    url: String,
    kind: Kind,
}

enum Kind {
    /// A database on this binary's shared server.
    Shared,
    /// A database on the server of `ADSYNC_TEST_POSTGRES_URL`.
    External { admin_url: String, database: String },
    /// A server of its own.
    Dedicated(Cluster),
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the generated password: tests print it only on purpose.
        f.debug_struct("TestServer").finish_non_exhaustive()
    }
}

static SHARED: OnceLock<Cluster> = OnceLock::new();
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(0);

impl TestServer {
    /// A fresh, empty database: on `ADSYNC_TEST_POSTGRES_URL`'s server when
    /// set, else on this test binary's own throwaway server (started by the
    /// first call). Works from plain and async tests alike.
    ///
    /// # Panics
    ///
    /// When no server can be had: the message says to install the Debian
    /// package `postgresql` or to set `ADSYNC_TEST_POSTGRES_URL`.
    pub fn start() -> TestServer {
        let database = format!(
            "adsync_t{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        );
        if let Some(admin_url) = std::env::var(URL_VARIABLE).ok().filter(|u| !u.is_empty()) {
            create_database(&admin_url, &database);
            return TestServer {
                url: with_database(&admin_url, &database),
                kind: Kind::External {
                    admin_url,
                    database,
                },
            };
        }
        let cluster = SHARED.get_or_init(|| {
            let cluster = Cluster::start();
            // Statics are never dropped: stop the server when the binary exits.
            // SAFETY: registers a plain `extern "C"` function without arguments.
            unsafe { libc::atexit(stop_shared) };
            cluster
        });
        create_database(&cluster.url("postgres"), &database);
        TestServer {
            url: cluster.url(&database),
            kind: Kind::Shared,
        }
    }

    /// A server of its own (always from the local binaries, even with
    /// `ADSYNC_TEST_POSTGRES_URL` set), for a test that restarts it; stopped
    /// and removed when dropped.
    ///
    /// # Panics
    ///
    /// As [`TestServer::start`] when there are no binaries.
    pub fn dedicated() -> TestServer {
        let cluster = Cluster::start();
        let database = "adsync_test";
        create_database(&cluster.url("postgres"), database);
        TestServer {
            url: cluster.url(database),
            kind: Kind::Dedicated(cluster),
        }
    }

    /// The connection URL of this test's database (with its password).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// `pg_ctl restart` (fast shutdown: open connections are closed) of a
    /// [`dedicated`](TestServer::dedicated) server; returns once it accepts
    /// connections again, on the same port.
    ///
    /// # Panics
    ///
    /// For a shared or external server (restarting it would disturb other
    /// tests), or when `pg_ctl` fails.
    pub fn restart(&self) {
        match &self.kind {
            Kind::Dedicated(cluster) => cluster.restart(),
            _ => panic!("only a TestServer::dedicated() server can be restarted"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Kind::External {
            admin_url,
            database,
        } = &self.kind
        {
            // Best effort: a leftover database only costs space.
            let sql = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
            let _ = admin(admin_url, &sql);
        }
        // A dedicated cluster stops in its own Drop.
    }
}

extern "C" fn stop_shared() {
    if let Some(cluster) = SHARED.get() {
        cluster.stop();
    }
}

/// One `initdb`'d server in a temporary directory.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    password: String,
    /// `runuser -u postgres --` when running as root (PostgreSQL refuses root).
    run_as: Option<String>,
}

impl Cluster {
    fn start() -> Cluster {
        let bin = find_binaries().unwrap_or_else(|| {
            panic!(
                "PostgreSQL is needed for this test and none was found: no `initdb`/`pg_ctl` on PATH \
                 or in /usr/lib/postgresql/*/bin. Install the server (Debian/Ubuntu: \
                 `apt-get install postgresql`), or set {URL_VARIABLE} to a \
                 postgres://user:password@host:port/db URL of a server where tests may create databases"
            )
        });
        static NEXT_DIR: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "adsync-pg-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let run_as = if unsafe { libc::geteuid() } == 0 {
            let (uid, gid) = postgres_user();
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", dir.display()));
            Some("postgres".to_string())
        } else {
            None
        };
        let password = generated_password();
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n"))
            .unwrap_or_else(|e| panic!("writing {}: {e}", pwfile.display()));
        if run_as.is_some() {
            let (uid, gid) = postgres_user();
            let _ = std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid));
        }
        let port = free_port();
        let cluster = Cluster {
            dir,
            bin,
            port,
            password,
            run_as,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
            ],
        );
        let _ = std::fs::remove_file(&pwfile);
        cluster.pg_ctl("start");
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// `pg_ctl start|restart`, waiting until the server accepts connections.
    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=300",
            self.port,
            self.dir.display()
        );
        let data = self.data();
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "60",
                "-m",
                "fast",
                "-o",
                &options,
                action,
            ],
        );
    }

    fn restart(&self) {
        self.pg_ctl("restart");
    }

    fn stop(&self) {
        let data = self.data();
        let _ = self.command(
            "pg_ctl",
            &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn command(&self, program: &str, args: &[&str]) -> std::io::Result<Output> {
        let program = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        // The server inherits the directory it starts in: one it can read.
        command.args(args).current_dir(&self.dir).output()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program, args).unwrap_or_else(|e| {
            panic!(
                "running {} {}: {e}{}",
                program,
                args.join(" "),
                if self.run_as.is_some() {
                    " (through `runuser -u postgres --`, as root)"
                } else {
                    ""
                }
            )
        });
        if !output.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            panic!(
                "{program} failed ({}):\n{}{}\nserver log:\n{log}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// A directory holding both `initdb` and `pg_ctl`: `PATH` first, then the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian keeps them off `PATH`).
fn find_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                return Some(dir);
            }
            // A symlinked `initdb` (as some images install) points at the rest.
            if let Ok(target) = std::fs::canonicalize(dir.join("initdb")) {
                if let Some(parent) = target.parent() {
                    if has_both(parent) {
                        return Some(parent.to_path_buf());
                    }
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The `postgres` user's uid and gid (the server package creates it).
fn postgres_user() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap_or_else(|e| panic!("running `id {flag} postgres`: {e}"));
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "the tests run as root, and PostgreSQL refuses to run as root; there is no \
                     `postgres` user to run it as (the Debian package `postgresql` creates it), \
                     or set {URL_VARIABLE}"
                )
            })
    };
    (id("-u"), id("-g"))
}

fn generated_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut text = String::new();
    for _ in 0..2 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        text.push_str(&format!("{:016x}", hasher.finish()));
    }
    text
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("finding a free port on 127.0.0.1: {e}"))
}

/// `url` with its database (the URL's path) replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let authority = url.find("://").map(|i| i + 3).unwrap_or(0);
    let query = url[authority..].find('?').map(|i| i + authority);
    let path = url[authority..query.unwrap_or(url.len())]
        .find('/')
        .map(|i| i + authority);
    let end = query.unwrap_or(url.len());
    let start = path.unwrap_or(end);
    format!("{}/{database}{}", &url[..start], &url[end..])
}

fn create_database(admin_url: &str, database: &str) {
    if let Err(e) = admin(admin_url, &format!("CREATE DATABASE {database}")) {
        panic!("creating test database {database}: {e}");
    }
}

/// Runs `sql` on a connection of its own, on a thread of its own (so that it
/// works both inside and outside a tokio runtime).
fn admin(url: &str, sql: &str) -> Result<(), String> {
    let url = url.to_string();
    let sql = sql.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("connecting: {e}"))?;
            let task = tokio::spawn(connection);
            let result = client.batch_execute(&sql).await.map_err(|e| e.to_string());
            drop(client);
            let _ = task.await;
            result
        })
    })
    .join()
    .map_err(|_| "the admin thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@h:5/db?sslmode=disable", "t1"),
            "postgres://u:p@h:5/t1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u:p@h:5", "t1"),
            "postgres://u:p@h:5/t1"
        );
        assert_eq!(with_database("postgres://h/", "t1"), "postgres://h/t1");
    }
}
