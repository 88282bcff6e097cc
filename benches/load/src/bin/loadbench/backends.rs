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
//!
//! 3. Store operations per request (#16 target 5), after the timed runs: per backend a
//!    server with `--count-ops` (the stores wrapped in counters, never in a timed run), and
//!    `BENCH_OPS_REQUESTS` (200) logged-in requests, then as many restores, one at a time.
//!    Per request: the store operations the library made (`GET /bench/ops`), the data
//!    segments the server sent to the database on its TCP connections (`ss -ti`:
//!    `data_segs_out`; one a round trip, requests being sequential), and the database's own
//!    count — Redis `INFO commandstats` (commands inside Lua scripts counted too), Postgres
//!    `pg_stat_database.xact_commit` of the benchmark database (statements outside a
//!    transaction count one each; pg_stat_statements is not loaded here).

use std::{collections::BTreeMap, path::PathBuf, process::Command, time::Duration};

use serde_json::{json, Value};

use crate::{http, login_cookie, measure, measure_restores, median, warm_up, Config, Run, Server};

const NO_PING: &[&str] = &["--no-ping"];

/// One backend under test and how to give it empty storage.
pub(crate) struct Backend {
    pub(crate) name: &'static str,
    pub(crate) url: String,
    /// More `lm-server` flags.
    flags: &'static [&'static str],
    storage: Storage,
}

pub(crate) enum Storage {
    Memory,
    SqliteFile(PathBuf),
    Postgres { admin_url: String, database: String },
    Redis,
}

impl Backend {
    fn all(config: &Config) -> Vec<Backend> {
        let wanted: String = crate::env_or("BENCH_BACKENDS", "memory,sqlite,postgres,redis".into());
        Backend::select(config, &wanted)
    }

    /// The backends named in `wanted` (comma-separated).
    pub(crate) fn select(config: &Config, wanted: &str) -> Vec<Backend> {
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
            "{wanted:?} names none of memory,sqlite,postgres,redis"
        );
        all
    }

    /// Checks that the service is there and that the storage the benchmark will empty holds
    /// nothing of anyone else's, before any phase runs.
    pub(crate) fn check_unused(&self) {
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
    pub(crate) fn reset(&self) {
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
    pub(crate) fn start(&self, config: &Config, extra: &[&str]) -> Server {
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
    /// The TCP port of the database server (none for in-process stores).
    fn port(&self) -> Option<u16> {
        let default = match self.storage {
            Storage::Postgres { .. } => 5432,
            Storage::Redis => 6379,
            Storage::Memory | Storage::SqliteFile(_) => return None,
        };
        let rest = self.url.split_once("://").map_or("", |(_, rest)| rest);
        let host = rest.split('/').next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
        Some(
            host.rsplit_once(':')
                .and_then(|(_, port)| port.parse().ok())
                .unwrap_or(default),
        )
    }

    /// The database's own counters: Redis `INFO commandstats` (calls per command, the whole
    /// server), Postgres `pg_stat_database` of this backend's database (once its backends have
    /// flushed their statistics: read until two reads a second apart agree).
    pub(crate) fn database_counters(&self) -> BTreeMap<String, f64> {
        match &self.storage {
            Storage::Redis => run("redis-cli", &["-u", &self.url, "INFO", "commandstats"])
                .lines()
                .filter_map(|line| {
                    let (name, stats) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
                    let calls = stats
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("calls="))?
                        .parse()
                        .ok()?;
                    // The harness's own `redis-cli` calls.
                    if matches!(name, "info" | "select" | "dbsize" | "flushdb" | "ping") {
                        return None;
                    }
                    Some((format!("redis.{name}"), calls))
                })
                .collect(),
            Storage::Postgres {
                admin_url,
                database,
            } => {
                let read = || {
                    let line = run(
                        "psql",
                        &[
                            admin_url,
                            "-Atc",
                            &format!(
                                "SELECT xact_commit, xact_rollback, tup_fetched, tup_inserted, \
                                 tup_updated, tup_deleted FROM pg_stat_database \
                                 WHERE datname = '{database}'"
                            ),
                        ],
                    );
                    let names = [
                        "xact_commit",
                        "xact_rollback",
                        "tup_fetched",
                        "tup_inserted",
                        "tup_updated",
                        "tup_deleted",
                    ];
                    names
                        .iter()
                        .zip(line.trim().split('|'))
                        .map(|(n, v)| (format!("pg.{n}"), v.parse().unwrap_or(f64::NAN)))
                        .collect::<BTreeMap<String, f64>>()
                };
                // An idle Postgres backend flushes its statistics within 10 s
                // (PGSTAT_IDLE_INTERVAL) of its last statement.
                std::thread::sleep(Duration::from_secs(11));
                let mut last = read();
                for _ in 0..20 {
                    std::thread::sleep(Duration::from_millis(1100));
                    let now = read();
                    if now == last {
                        break;
                    }
                    last = now;
                }
                last
            }
            Storage::Memory | Storage::SqliteFile(_) => BTreeMap::new(),
        }
    }
}

/// Data segments a server process sent to and received from port `port` on its established
/// TCP connections (`ss -ti`), summed: with one request at a time, one sent segment is one
/// round trip.
fn wire_segments(pid: u32, port: u16) -> (f64, f64) {
    let out = run(
        "ss",
        &[
            "-tinpH",
            "state",
            "established",
            &format!("( dport = :{port} )"),
        ],
    );
    let (mut sent, mut received, mut ours) = (0.0, 0.0, false);
    let owner = format!("pid={pid},");
    for line in out.lines() {
        if !line.starts_with(char::is_whitespace) {
            ours = line.contains(&owner);
            continue;
        }
        if !ours {
            continue;
        }
        for field in line.split_whitespace() {
            if let Some(v) = field.strip_prefix("data_segs_out:") {
                sent += v.parse::<f64>().unwrap_or(0.0);
            } else if let Some(v) = field.strip_prefix("data_segs_in:") {
                received += v.parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    (sent, received)
}

/// Every counter of one moment of a counting run: the library's store operations
/// (`GET /bench/ops`), the wire and the database.
fn counters(backend: &Backend, server: &Server) -> BTreeMap<String, f64> {
    let mut all: BTreeMap<String, f64> = BTreeMap::new();
    let (status, body) = crate::http_body(&server.addr, "GET", "/bench/ops", &[]);
    assert_eq!(status, 200, "GET /bench/ops");
    let ops: BTreeMap<String, f64> = serde_json::from_str(&body).expect("ops JSON");
    all.extend(ops);
    if let Some(port) = backend.port() {
        let (sent, received) = wire_segments(server.pid, port);
        all.insert("wire.segments_sent".into(), sent);
        all.insert("wire.segments_received".into(), received);
    }
    all.extend(backend.database_counters());
    all
}

/// `(after - before) / requests` for every counter that moved.
fn per_request(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    requests: usize,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(name, a)| {
            let delta = a - before.get(name).copied().unwrap_or(0.0);
            (delta != 0.0).then(|| (name.clone(), delta / requests as f64))
        })
        .collect()
}

/// The counting run of one backend: after a warm-up of each kind (every pooled connection
/// has prepared its statements), `requests` logged-in requests, then `requests` restores,
/// one at a time.
fn count_ops(config: &Config, backend: &Backend, requests: usize) -> Value {
    let file = config.root.join("target/load-logs/backend-ops-tokens.txt");
    let file_arg = file.to_str().unwrap();
    let warm = requests / 4 + 10;
    let server = backend.start(
        config,
        &[
            "--count-ops",
            "--remember-tokens",
            &(requests + warm).to_string(),
            file_arg,
        ],
    );
    let cookie = login_cookie(&server);
    let tokens = std::fs::read_to_string(&file).expect("token file");
    let mut tokens = tokens.lines();
    let session = || {
        let (status, _) = http(&server.addr, "GET", "/protected", &[("Cookie", &cookie)]);
        assert_eq!(status, 200, "{}: counted session request", backend.name);
    };
    let restore = |token: &str| {
        let cookie = format!("remember_token={token}");
        let (status, cookies) = http(&server.addr, "GET", "/protected", &[("Cookie", &cookie)]);
        assert_eq!(status, 200, "{}: counted restore", backend.name);
        assert!(
            cookies.iter().any(|c| c.starts_with("id=")),
            "{}: a restore sets a session",
            backend.name
        );
    };
    for token in tokens.by_ref().take(warm) {
        session();
        restore(token);
    }
    let start = counters(backend, &server);
    for _ in 0..requests {
        session();
    }
    let sessions_done = counters(backend, &server);
    let mut restores = 0;
    for token in tokens.take(requests) {
        restore(token);
        restores += 1;
    }
    let restores_done = counters(backend, &server);
    drop(server);
    let _ = std::fs::remove_file(&file);
    let ops = json!({
        "backend": backend.name,
        "requests": requests,
        "session": per_request(&start, &sessions_done, requests),
        "remember_restore": per_request(&sessions_done, &restores_done, restores),
    });
    eprintln!("  {ops}");
    ops
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

/// The parts of the per-backend benchmark: the timed runs, and the store operations each
/// kind of request costs.
pub fn backends(config: &Config) -> (Vec<Run>, Vec<Value>) {
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

    let requests: usize = crate::env_or("BENCH_OPS_REQUESTS", 200);
    eprintln!("== backends: store operations per request ({requests} of each kind, one at a time)");
    let ops = backends
        .iter()
        .map(|backend| count_ops(config, backend, requests))
        .collect();
    for backend in &backends {
        backend.reset();
    }
    (runs, ops)
}

/// `name value, …` of the counters whose names start with `prefix` (dropped unless `keep`).
fn listed(counters: &Value, prefix: &str, keep: bool) -> String {
    let list: Vec<String> = counters
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, v)| {
            let short = name.strip_prefix(prefix)?;
            let shown = if keep { name.as_str() } else { short };
            Some(format!("{shown} {:.2}", v.as_f64()?))
        })
        .collect();
    if list.is_empty() {
        "—".to_owned()
    } else {
        list.join(", ")
    }
}

/// The store operations table (empty without counting runs).
pub fn ops_markdown(ops: &[Value]) -> String {
    if ops.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n| backend | request | library store operations per request | round trips to the \
         database (client data segments) | the database's count per request |\n\
         |---|---|---|---:|---|\n",
    );
    for backend in ops {
        for (kind, label) in [("session", "logged in"), ("remember_restore", "restore")] {
            let c = &backend[kind];
            let ops = [listed(c, "session.", true), listed(c, "remember.", true)]
                .into_iter()
                .filter(|l| l != "—")
                .collect::<Vec<_>>();
            let wire = c["wire.segments_sent"]
                .as_f64()
                .map_or("— (in process)".to_owned(), |v| format!("{v:.2}"));
            let db = [listed(c, "redis.", false), listed(c, "pg.", false)]
                .into_iter()
                .filter(|l| l != "—")
                .collect::<Vec<_>>();
            md.push_str(&format!(
                "| {} | {label} | {} | {wire} | {} |\n",
                backend["backend"].as_str().unwrap_or(""),
                if ops.is_empty() {
                    "none".to_owned()
                } else {
                    ops.join("; ")
                },
                if db.is_empty() {
                    "—".to_owned()
                } else {
                    db.join("; ")
                },
            ));
        }
    }
    md
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
