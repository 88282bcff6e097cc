//! The per-backend benchmark: login-manager with sessions and remember-me tokens in memory,
//! SQLite, PostgreSQL and Redis, side by side in one run.
//!
//! 1. Session requests: one `lm-server --backend URL` per backend, all running, driven in
//!    turn (memory, SQLite, Postgres, Redis, memory, ...) for `BENCH_ROUNDS` rounds: every
//!    request loads the session from the backend and the user from the (in-memory) loader.
//! 2. Remember-me restores: per round and backend a fresh server with pre-issued tokens in
//!    the backend's remember store; every request presents an unused token and no session, so
//!    each one finds and rotates a token and writes a new session.
//!
//! Besides the server's CPU, each run records the CPU the backend's database processes used
//! (`postgres` for Postgres, `redis-server` for Redis; those alive at the end of the run):
//! with an external store, part of the cost of a request is spent there. The services are not pinned; on a 2-core machine they share cores with the
//! server and wrk, as they would in a small deployment.
//!
//! Each backend gets storage of its own, emptied before every server and at the end: a
//! SQLite file under `target/load-logs`, a Postgres database (`BENCH_PG_DATABASE`, default
//! `login_manager_bench`, created and dropped through `BENCH_PG_ADMIN_URL`) and a Redis
//! database (`BENCH_REDIS_URL`, default `redis://127.0.0.1:6379/13`, which must be empty at the
//! start: sessions are stored under their bare ids, so the benchmark flushes it).
//! `BENCH_BACKENDS` picks backends (default `memory,sqlite,postgres,redis`); one more can be
//! named, `postgres-no-ping`: Postgres with a pool that does not ping connections before
//! handing them out (its own database, `BENCH_PG_DATABASE` + `_no_ping`).

use std::{path::PathBuf, process::Command};

use crate::{login_cookie, measure, measure_restores, median, warm_up, Config, Run, Server};

const NO_PING: &[&str] = &["--no-ping"];

/// One backend under test and how to give it empty storage.
struct Backend {
    name: &'static str,
    url: String,
    /// More `lm-server` flags.
    flags: &'static [&'static str],
    storage: Storage,
}

enum Storage {
    Memory,
    SqliteFile(PathBuf),
    Postgres { admin_url: String, database: String },
    Redis,
}

impl Backend {
    fn all(config: &Config) -> Vec<Backend> {
        let wanted: String = crate::env_or("BENCH_BACKENDS", "memory,sqlite,postgres,redis".into());
        const KNOWN: [&str; 5] = ["memory", "sqlite", "postgres", "postgres-no-ping", "redis"];
        for name in wanted.split(',').map(str::trim) {
            assert!(
                KNOWN.contains(&name),
                "BENCH_BACKENDS: unknown backend {name:?} (known: {KNOWN:?})"
            );
        }
        let sqlite_file = config.root.join("target/load-logs/bench-backend.sqlite");
        let admin_url: String = crate::env_or(
            "BENCH_PG_ADMIN_URL",
            "postgres://postgres@127.0.0.1:5432/test".into(),
        );
        let database: String = crate::env_or("BENCH_PG_DATABASE", "login_manager_bench".into());
        assert!(
            database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "BENCH_PG_DATABASE must be a plain identifier"
        );
        let Some((pg_server, _)) = admin_url.rsplit_once('/') else {
            panic!("BENCH_PG_ADMIN_URL must end in /DATABASE")
        };
        let postgres = |database: String, flags| Backend {
            name: if flags == NO_PING {
                "postgres-no-ping"
            } else {
                "postgres"
            },
            url: format!("{pg_server}/{database}"),
            flags,
            storage: Storage::Postgres {
                admin_url: admin_url.clone(),
                database,
            },
        };
        let redis_url: String =
            crate::env_or("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13".into());
        let mut all = vec![
            Backend {
                name: "memory",
                url: "memory:".into(),
                flags: &[],
                storage: Storage::Memory,
            },
            Backend {
                name: "sqlite",
                url: format!("sqlite://{}?mode=rwc", sqlite_file.display()),
                flags: &[],
                storage: Storage::SqliteFile(sqlite_file),
            },
            postgres(database.clone(), &[]),
            postgres(format!("{database}_no_ping"), NO_PING),
            Backend {
                name: "redis",
                url: redis_url,
                flags: &[],
                storage: Storage::Redis,
            },
        ];
        all.retain(|b| wanted.split(',').any(|w| w.trim() == b.name));
        assert!(
            !all.is_empty(),
            "BENCH_BACKENDS names none of memory,sqlite,postgres,redis"
        );
        all
    }

    /// Checks that the service is there and that the storage the benchmark will empty holds
    /// nothing of anyone else's, before any phase runs.
    fn check_unused(&self) {
        match &self.storage {
            Storage::Redis => {
                let keys = run("redis-cli", &["-u", &self.url, "DBSIZE"]);
                assert_eq!(
                    keys.trim(),
                    "0",
                    "the Redis database of BENCH_REDIS_URL ({}) is not empty or Redis is not \
                     answering; the benchmark flushes it, so point BENCH_REDIS_URL at an unused \
                     database",
                    self.url
                );
            }
            Storage::Postgres {
                admin_url,
                database,
            } => {
                let found = run(
                    "psql",
                    &[
                        admin_url,
                        "-Atc",
                        &format!("SELECT count(*) FROM pg_database WHERE datname = '{database}'"),
                    ],
                );
                assert_eq!(
                    found.trim(),
                    "0",
                    "database {database} exists; the benchmark creates and drops it, so drop it \
                     yourself (e.g. left by an interrupted run) or set BENCH_PG_DATABASE"
                );
            }
            Storage::Memory | Storage::SqliteFile(_) => {}
        }
    }

    /// The names of the processes that do this backend's store work.
    fn processes(&self) -> &'static [&'static str] {
        match self.storage {
            Storage::Postgres { .. } => &["postgres"],
            Storage::Redis => &["redis-server"],
            Storage::Memory | Storage::SqliteFile(_) => &[],
        }
    }

    /// Empties the backend's storage.
    fn reset(&self) {
        match &self.storage {
            Storage::Memory => {}
            Storage::SqliteFile(file) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
                }
            }
            Storage::Postgres {
                admin_url,
                database,
            } => {
                run(
                    "psql",
                    &[
                        admin_url,
                        "-qc",
                        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
                    ],
                );
            }
            Storage::Redis => {
                run("redis-cli", &["-u", &self.url, "FLUSHDB"]);
            }
        }
    }

    /// Empty storage and a server on it.
    fn start(&self, config: &Config, extra: &[&str]) -> Server {
        self.reset();
        if let Storage::Postgres {
            admin_url,
            database,
        } = &self.storage
        {
            run(
                "psql",
                &[admin_url, "-qc", &format!("CREATE DATABASE {database}")],
            );
        }
        let mut args = vec!["--backend", &self.url];
        args.extend_from_slice(self.flags);
        args.extend_from_slice(extra);
        let mut server = Server::start_named(
            config,
            "lm-server",
            &format!("lm-server-{}", self.name),
            &config.server_cpu,
            &args,
        );
        server.store_processes = self.processes();
        server
    }
}

/// Runs a service's command-line client; its standard output.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {:?} failed: {}",
        args.first(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn target(backend: &Backend, kind: &str) -> String {
    format!("backend/{}/{kind}", backend.name)
}

/// Fails early, before the other phases spend their time, when a service the per-backend
/// runs need is missing or its storage is in use.
pub fn preflight(config: &Config) {
    for backend in Backend::all(config) {
        backend.check_unused();
    }
}

/// Both parts of the per-backend benchmark.
pub fn backends(config: &Config) -> Vec<Run> {
    let backends = Backend::all(config);
    eprintln!(
        "== backends ({}): session requests, {} rounds of {} s",
        backends
            .iter()
            .map(|b| b.name)
            .collect::<Vec<_>>()
            .join(", "),
        config.rounds,
        config.seconds
    );
    let mut runs = Vec::new();
    {
        let servers: Vec<Server> = backends.iter().map(|b| b.start(config, &[])).collect();
        let cookies: Vec<String> = servers.iter().map(login_cookie).collect();
        for (server, cookie) in servers.iter().zip(&cookies) {
            warm_up(config, server, "/protected", cookie);
        }
        for round in 1..=config.rounds {
            eprintln!(" round {round}");
            for ((backend, server), cookie) in backends.iter().zip(&servers).zip(&cookies) {
                runs.push(measure(
                    config,
                    "backends",
                    round,
                    &target(backend, "session"),
                    server,
                    "/protected",
                    Some(cookie),
                    "report.lua",
                    &[],
                ));
            }
        }
    }

    eprintln!("== backends: remember-me restores");
    let file = config.root.join("target/load-logs/backend-tokens.txt");
    let file_arg = file.to_str().unwrap();
    for round in 1..=config.rounds {
        eprintln!(" round {round}");
        for backend in &backends {
            // A restore costs more than a session request: the session rate bounds how many
            // tokens one run can use.
            let session_rate = median(
                runs.iter()
                    .filter(|r| r.target == target(backend, "session"))
                    .map(|r| r.requests_per_s)
                    .collect(),
            );
            let tokens = ((session_rate * (config.seconds + 2) as f64 * 1.2) as usize)
                .clamp(1000, config.remember_tokens)
                .to_string();
            let server = backend.start(config, &["--remember-tokens", &tokens, file_arg]);
            runs.push(measure_restores(
                config,
                "backends",
                round,
                &target(backend, "remember-restore"),
                &server,
                file_arg,
            ));
        }
    }
    let _ = std::fs::remove_file(&file);
    for backend in &backends {
        backend.reset();
    }
    runs
}

/// The per-backend table: session requests and remember-me restores, each backend against
/// memory (empty when the phase did not run).
pub fn markdown(summary: &[crate::Summary]) -> String {
    if summary.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n| backend | session req/s | vs memory | server CPU µs/req | store CPU µs/req | p99 µs \
         | restore req/s | vs memory | server CPU µs/req | store CPU µs/req | p99 µs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for name in ["memory", "sqlite", "postgres", "postgres-no-ping", "redis"] {
        let find = |kind: &str| {
            summary
                .iter()
                .find(|s| s.target == format!("backend/{name}/{kind}"))
        };
        let (Some(session), Some(restore)) = (find("session"), find("remember-restore")) else {
            continue;
        };
        md.push_str(&format!("| {name} "));
        for s in [session, restore] {
            md.push_str(&format!(
                "| {:.0} | {:.3} | {:.2} | {:.2} | {:.0} ",
                s.median_requests_per_s,
                s.requests_per_s_vs_reference,
                s.median_cpu_us_per_request,
                s.median_store_cpu_us_per_request,
                s.median_latency_p99_us
            ));
        }
        md.push_str("|\n");
    }
    md
}
