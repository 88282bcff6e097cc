//! The scale phase (#16 target 4): is a request's cost flat in the size of the stores?
//!
//! For each backend of `BENCH_SCALE_BACKENDS` (default `postgres,redis`) and each size N of
//! `BENCH_SCALE_SIZES` (default `1000,1000000`), a login-manager server on freshly emptied
//! storage (the backends phase's: `BENCH_PG_DATABASE`, `BENCH_REDIS_URL`), started with
//! `--fill N` — N more live sessions, N remember-me tokens of N other users and N throttle
//! keys, all unexpired, in the stores' own formats (see `lm-server.rs`) — and with the
//! remember-me tokens of alice that the restores use. Then, as in the backends phase: a
//! warm-up, `GET /protected` with a logged-in session cookie, then remember-me restores
//! (an unused token and no session each), `BENCH_SECONDS` each, server on the server core,
//! wrk on the client core, requests/s and server and database CPU per request.
//!
//! The sizes are interleaved within each round (their order alternates from round to
//! round), for `BENCH_ROUNDS` rounds, and every store is filled again for each run: the
//! restores of a run add sessions and rotate tokens. The report is each size's medians and
//! the ratio of the largest size to the smallest, of the medians and round by round.

use serde_json::{json, Value};

use crate::{
    backends::Backend, login_cookie, measure, measure_restores, warm_up, Config, Run, Summary,
};

/// The sizes to compare, smallest first.
fn sizes() -> Vec<usize> {
    let list: String = crate::env_or("BENCH_SCALE_SIZES", "1000,1000000".to_owned());
    let mut sizes: Vec<usize> = list
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("BENCH_SCALE_SIZES: {s:?} is not a number"))
        })
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    assert!(!sizes.is_empty(), "BENCH_SCALE_SIZES is empty");
    sizes
}

fn backends(config: &Config) -> Vec<Backend> {
    let wanted: String = crate::env_or("BENCH_SCALE_BACKENDS", "postgres,redis".to_owned());
    Backend::select(config, &wanted)
}

/// Fails early when a service is missing or its storage is in use.
pub fn preflight(config: &Config) {
    for backend in backends(config) {
        backend.check_unused();
    }
}

pub fn target(backend: &str, size: usize, kind: &str) -> String {
    format!("scale/{backend}/{size}/{kind}")
}

/// How many tokens of alice a restore run may use: from the fastest restore run of this
/// backend and size so far, else a generous guess per backend.
fn restore_tokens(config: &Config, runs: &[Run], backend: &Backend, size: usize) -> usize {
    let seconds = (config.seconds + 2) as f64;
    let fastest = runs
        .iter()
        .filter(|r| r.target == target(backend.name, size, "remember-restore"))
        .map(|r| r.requests_per_s)
        .fold(0.0, f64::max);
    let rate = if fastest > 0.0 {
        fastest * 1.5
    } else {
        match backend.name {
            // 23 000/s measured on a 2-vCPU Xeon: a guess too low runs out of tokens.
            "redis" => 30_000.0,
            "memory" => 60_000.0,
            _ => 2_000.0,
        }
    };
    ((rate * seconds) as usize).clamp(1000, config.remember_tokens.max(1000))
}

/// What a filled store holds, as its database counts it.
fn store_size(backend: &Backend) -> Value {
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    match backend.name {
        "redis" => {
            let memory = run("redis-cli", &["-u", &backend.url, "INFO", "memory"]);
            json!({
                "keys": run("redis-cli", &["-u", &backend.url, "DBSIZE"]).parse::<u64>().ok(),
                "used_memory": memory
                    .lines()
                    .find_map(|l| l.strip_prefix("used_memory:"))
                    .and_then(|v| v.trim().parse::<u64>().ok()),
            })
        }
        name if name.starts_with("postgres") => {
            let counts = run(
                "psql",
                &[
                    &backend.url,
                    "-Atc",
                    "SELECT (SELECT count(*) FROM tower_sessions.session), \
                     (SELECT count(*) FROM login_remember_tokens), \
                     (SELECT count(*) FROM login_throttle), pg_database_size(current_database())",
                ],
            );
            let v: Vec<u64> = counts.split('|').filter_map(|v| v.parse().ok()).collect();
            json!({
                "sessions": v.first(),
                "remember_tokens": v.get(1),
                "throttle_keys": v.get(2),
                "database_bytes": v.get(3),
            })
        }
        _ => Value::Null,
    }
}

/// Every run of the scale phase, and what each filled store held.
pub fn scale(config: &Config) -> (Vec<Run>, Vec<Value>) {
    let backends = backends(config);
    let sizes = sizes();
    eprintln!(
        "== scale ({}): sizes {sizes:?}, {} rounds of {} s per request kind",
        backends
            .iter()
            .map(|b| b.name)
            .collect::<Vec<_>>()
            .join(", "),
        config.rounds,
        config.seconds
    );
    let file = config.root.join("target/load-logs/scale-tokens.txt");
    let file_arg = file.to_str().unwrap();
    let mut runs = Vec::new();
    let mut fills = Vec::new();
    for round in 1..=config.rounds {
        eprintln!(" round {round}");
        let mut order = sizes.clone();
        if round % 2 == 0 {
            order.reverse();
        }
        for backend in &backends {
            for &size in &order {
                let tokens = restore_tokens(config, &runs, backend, size).to_string();
                let started = std::time::Instant::now();
                let server = backend.start(
                    config,
                    &[
                        "--remember-tokens",
                        &tokens,
                        file_arg,
                        "--fill",
                        &size.to_string(),
                    ],
                );
                let fill_s = started.elapsed().as_secs_f64();
                let held = store_size(backend);
                eprintln!(
                    "  {} with {size} more: started and filled in {fill_s:.1} s, {tokens} tokens of alice; {held}",
                    backend.name
                );
                fills.push(json!({
                    "round": round,
                    "backend": backend.name,
                    "size": size,
                    "alice_tokens": tokens.parse::<u64>().ok(),
                    "start_and_fill_s": fill_s,
                    "store": held,
                }));
                let cookie = login_cookie(&server);
                warm_up(config, &server, "/protected", &cookie);
                runs.push(measure(
                    config,
                    "scale",
                    round,
                    &target(backend.name, size, "session"),
                    &server,
                    "/protected",
                    Some(&cookie),
                    "report.lua",
                    &[],
                ));
                runs.push(measure_restores(
                    config,
                    "scale",
                    round,
                    &target(backend.name, size, "remember-restore"),
                    &server,
                    file_arg,
                ));
            }
        }
    }
    let _ = std::fs::remove_file(&file);
    for backend in &backends {
        backend.reset();
    }
    (runs, fills)
}

/// The reference of a scale target: the same backend and kind at the smallest size run.
pub fn reference(name: &str, names: &[String]) -> Option<String> {
    let rest = name.strip_prefix("scale/")?;
    let mut parts = rest.splitn(3, '/');
    let (backend, _, kind) = (parts.next()?, parts.next()?, parts.next()?);
    names
        .iter()
        .filter_map(|n| {
            let mut p = n.strip_prefix("scale/")?.splitn(3, '/');
            let (b, size, k) = (p.next()?, p.next()?.parse::<usize>().ok()?, p.next()?);
            (b == backend && k == kind).then_some(size)
        })
        .min()
        .map(|size| target(backend, size, kind))
}

/// The scale table: per backend and kind, each size's medians and the largest size over the
/// smallest (medians, and round by round).
pub fn markdown(summary: &[Summary], runs: &[Run]) -> String {
    if summary.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n| backend | request | extra entries per store | req/s (median, min..max) | server CPU µs/req \
         | store CPU µs/req | p99 µs | req/s vs smallest | server CPU vs smallest | req/s ratio per round |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for s in summary {
        let parts: Vec<&str> = s.target.splitn(4, '/').collect();
        let [_, backend, size, kind] = parts[..] else {
            continue;
        };
        // Same-round ratios against the reference.
        let of = |name: &str, round: usize| {
            runs.iter()
                .find(|r| r.target == name && r.round == round)
                .map(|r| r.requests_per_s)
        };
        let per_round: Vec<String> = if s.target == s.reference {
            vec!["—".to_owned()]
        } else {
            let rounds = runs.iter().map(|r| r.round).max().unwrap_or(0);
            (1..=rounds)
                .filter_map(|round| Some(of(&s.target, round)? / of(&s.reference, round)?))
                .map(|r| format!("{r:.3}"))
                .collect()
        };
        md.push_str(&format!(
            "| {backend} | {} | {size} | {:.0} ({:.0}..{:.0}) | {:.2} | {:.2} | {:.0} | {:.3} | {:.3} | {} |\n",
            if kind == "session" {
                "logged in"
            } else {
                "restore"
            },
            s.median_requests_per_s,
            s.min_requests_per_s,
            s.max_requests_per_s,
            s.median_cpu_us_per_request,
            s.median_store_cpu_us_per_request,
            s.median_latency_p99_us,
            s.requests_per_s_vs_reference,
            s.cpu_per_request_vs_reference,
            per_round.join(", "),
        ));
    }
    md
}
