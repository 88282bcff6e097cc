//! The load-benchmark driver (run it through `benches/load/run.sh`).
//!
//! 1. Throughput: the three servers, each pinned to the server core, driven by wrk pinned to
//!    the client core, interleaved target by target (A B C ... A B C ...) for `BENCH_ROUNDS`
//!    rounds of `BENCH_SECONDS`. Per run: requests/s from wrk, and the server's CPU time
//!    (utime + stime from `/proc/PID/stat`) divided by the requests.
//! 2. Remember-me restore: a fresh login-manager server per round with pre-issued tokens,
//!    every request presenting an unused one and no session.
//! 3. Login storm: idle latency of `/protected`, then the same probe during `BENCH_STORM_LOGINS`
//!    concurrent argon2id logins; the server on one core, then on all cores.
//! 4. Backends (`backends.rs`): session requests and remember-me restores with sessions and
//!    tokens in memory, SQLite, Postgres and Redis, and the store operations each costs.
//! 5. Scale (`scale.rs`, not in the default phases): the same two requests in Postgres and
//!    Redis with 10^3 and with 10^6 more live sessions, remember-me tokens and throttle keys.
//!
//! `BENCH_PHASES` picks phases (default `throughput,remember,storm,argon2,backends`; `scale`
//! runs only when named).
//!
//! Writes `target/bench-results.json`, `target/bench-results.md` (tables) and
//! `benchmarks.svg` and `benchmarks-backends.svg` (charts) in `BENCH_CHART_DIR` (default
//! `docs`) under `BENCH_ROOT`.

mod backends;
mod scale;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use plotters::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};

const USER_AGENT: &str = login_manager_load::USER_AGENT;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Config {
    root: PathBuf,
    bin: PathBuf,
    rounds: usize,
    seconds: u64,
    warmup: u64,
    connections: usize,
    server_cpu: String,
    client_cpu: String,
    remember_tokens: usize,
    storm_seconds: f64,
    storm_logins: usize,
    max_load: f64,
    wait_quiet: u64,
    clk_tck: f64,
}

impl Config {
    fn from_env() -> Self {
        let exe = std::env::current_exe().expect("current exe");
        let bin = exe.parent().expect("bin dir").to_owned();
        let root = std::env::var("BENCH_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::current_dir().expect("cwd"));
        let clk_tck = command_output("getconf", &["CLK_TCK"])
            .trim()
            .parse()
            .unwrap_or(100.0);
        Config {
            root,
            bin,
            rounds: env_or("BENCH_ROUNDS", 3),
            seconds: env_or("BENCH_SECONDS", 10),
            warmup: env_or("BENCH_WARMUP", 2),
            connections: env_or("BENCH_CONNECTIONS", 64),
            server_cpu: env_or("BENCH_SERVER_CPU", "1".to_owned()),
            client_cpu: env_or("BENCH_CLIENT_CPU", "0".to_owned()),
            remember_tokens: env_or("BENCH_REMEMBER_TOKENS", 600_000),
            storm_seconds: env_or("BENCH_STORM_SECONDS", 10.0),
            storm_logins: env_or("BENCH_STORM_LOGINS", 200),
            max_load: env_or("BENCH_MAX_LOAD", 0.5),
            wait_quiet: env_or("BENCH_WAIT_QUIET", 1800),
            clk_tck,
        }
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// processes and /proc

/// A benchmark server, killed when dropped.
struct Server {
    name: String,
    child: Child,
    pid: u32,
    addr: String,
    /// The names of the database processes this server's stores use (their CPU is measured
    /// with the server's); empty for in-process stores.
    store_processes: &'static [&'static str],
}

impl Server {
    fn start(config: &Config, binary: &str, cpus: &str, args: &[&str]) -> Server {
        Server::start_named(config, binary, binary, cpus, args)
    }

    /// A server whose log and messages say `name` (several run the same binary).
    fn start_named(config: &Config, binary: &str, name: &str, cpus: &str, args: &[&str]) -> Server {
        let log_dir = config.root.join("target/load-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let log = std::fs::File::create(log_dir.join(format!("{name}.log"))).unwrap();
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg(cpus)
            .arg(config.bin.join(binary))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        // taskset execs the server: same pid.
        let pid = child.id();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name} did not start: {line:?}"))
            .to_owned();
        Server {
            name: name.to_owned(),
            child,
            pid,
            addr,
            store_processes: &[],
        }
    }

    fn cpu_seconds(&self, config: &Config) -> f64 {
        process_cpu_ticks(self.pid) as f64 / config.clk_tck
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process, in clock ticks.
fn process_cpu_ticks(pid: u32) -> u64 {
    try_process_cpu_ticks(pid).expect("read /proc/PID/stat")
}

/// utime + stime of a process, in clock ticks; `None` once it has ended.
fn try_process_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// utime + stime, in clock ticks, of every process named one of `names`, by pid.
fn store_process_ticks(names: &[&str]) -> BTreeMap<u32, u64> {
    if names.is_empty() {
        return BTreeMap::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            if !names.contains(&comm.trim()) {
                return None;
            }
            // Worker processes come and go: one may end between the two reads.
            Some((pid, try_process_cpu_ticks(pid)?))
        })
        .collect()
}

/// CPU seconds the database processes used between two snapshots (a process that started in
/// between counts whole).
fn store_cpu_seconds(
    config: &Config,
    before: &BTreeMap<u32, u64>,
    after: &BTreeMap<u32, u64>,
) -> f64 {
    let ticks: u64 = after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum();
    ticks as f64 / config.clk_tck
}

/// Per CPU (busy, steal) jiffies from /proc/stat.
fn cpu_jiffies() -> BTreeMap<String, (u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next().unwrap().to_owned();
            let v: Vec<u64> = parts.map(|p| p.parse().unwrap_or(0)).collect();
            // user nice system idle iowait irq softirq steal
            let busy = v[0] + v[1] + v[2] + v[5] + v[6];
            (name, (busy, v[7]))
        })
        .collect()
}

/// CPU seconds used by waited-for children (wrk, storm).
fn children_cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::MAX)
}

/// Waits until the 1-minute load average is below the limit (other builds, fuzzers).
fn wait_until_quiet(config: &Config) {
    if std::env::var("BENCH_IGNORE_LOAD").is_ok() {
        return;
    }
    let start = Instant::now();
    loop {
        let load = load_average();
        if load < config.max_load {
            eprintln!("load average {load:.2}: quiet enough");
            return;
        }
        if start.elapsed().as_secs() > config.wait_quiet {
            panic!(
                "the machine stayed busy (load average {load:.2} >= {}): not measuring. \
                 BENCH_IGNORE_LOAD=1 measures anyway.",
                config.max_load
            );
        }
        eprintln!(
            "load average {load:.2} >= {}: waiting. Busiest processes:\n{}",
            config.max_load,
            command_output("sh", &["-c", "ps aux --sort=-%cpu | head -5 | cut -c1-150"])
        );
        std::thread::sleep(Duration::from_secs(30));
    }
}

/// Before each measured run: waits until the whole machine was idle (less than
/// `BENCH_IDLE_CPU`, default 5 %, of all cores busy) over one second, so that a build or a
/// fuzzer that started mid-benchmark does not end up inside a measurement.
fn wait_until_idle(config: &Config) {
    if std::env::var("BENCH_IGNORE_LOAD").is_ok() {
        return;
    }
    let limit: f64 = env_or("BENCH_IDLE_CPU", 0.05);
    let start = Instant::now();
    loop {
        let before = cpu_jiffies();
        std::thread::sleep(Duration::from_secs(1));
        let after = cpu_jiffies();
        let busy: u64 = after.iter().map(|(cpu, (b, _))| b - before[cpu].0).sum();
        let share = busy as f64 / config.clk_tck / after.len() as f64;
        if share < limit {
            return;
        }
        if start.elapsed().as_secs() > config.wait_quiet {
            panic!(
                "the machine stayed busy ({:.0} % of all cores): not measuring",
                share * 100.0
            );
        }
        eprintln!(
            "  machine busy ({:.0} % of all cores), waiting:\n{}",
            share * 100.0,
            command_output("sh", &["-c", "ps aux --sort=-%cpu | head -4 | cut -c1-150"])
        );
        std::thread::sleep(Duration::from_secs(20));
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP by hand (set-up only)

/// Sends one request on a new connection; (status, Set-Cookie values).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<String>) {
    let (status, head, _) = http_raw(addr, method, path, headers);
    let cookies = head
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().split(';').next().unwrap_or("").to_owned())
        })
        .collect();
    (status, cookies)
}

/// Sends one request on a new connection; (status, body).
fn http_body(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _, body) = http_raw(addr, method, path, headers);
    (status, body)
}

/// One request on a new connection; (status, header lines, body).
fn http_raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: {USER_AGENT}\r\n\
         Accept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or((response.as_str(), ""));
    (status, head.to_owned(), body.to_owned())
}

/// Logs alice in on a server (`POST /bench/login`) and returns the session cookie.
fn login_cookie(server: &Server) -> String {
    let (status, cookies) = http(&server.addr, "POST", "/bench/login", &[]);
    assert_eq!(status, 200, "{}: login", server.name);
    let cookie = cookies
        .into_iter()
        .find(|c| c.starts_with("id="))
        .unwrap_or_else(|| panic!("{}: no session cookie", server.name));
    for path in ["/protected", "/public"] {
        let (status, _) = http(&server.addr, "GET", path, &[("Cookie", &cookie)]);
        assert_eq!(status, 200, "{}: GET {path} logged in", server.name);
    }
    let (status, _) = http(&server.addr, "GET", "/protected", &[]);
    // 401 (login-manager for JSON clients, the floor) or a redirect (axum-login).
    assert!(
        status == 401 || status == 303 || status == 307,
        "{}: GET /protected anonymous answered {status}",
        server.name
    );
    cookie
}

// ---------------------------------------------------------------------------------------------
// wrk

/// Runs wrk pinned to the client core; the parsed `RESULT` line.
fn wrk(
    config: &Config,
    url: &str,
    cookie: Option<&str>,
    script: &str,
    extra: &[&str],
    seconds: u64,
) -> Value {
    let script = config.root.join("benches/load/wrk").join(script);
    let mut command = Command::new("taskset");
    command
        .args(["-c", &config.client_cpu, "wrk", "-t1"])
        .arg(format!("-c{}", config.connections))
        .arg(format!("-d{seconds}s"))
        .args(["-H", "Accept: application/json"])
        .args(["-H", &format!("User-Agent: {USER_AGENT}")]);
    if let Some(cookie) = cookie {
        command.args(["-H", &format!("Cookie: {cookie}")]);
    }
    command.arg("-s").arg(&script).arg(url);
    if !extra.is_empty() {
        command.arg("--").args(extra);
    }
    let output = command.output().expect("run wrk (apt-get install wrk)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "wrk printed no result:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    serde_json::from_str(line).expect("wrk result JSON")
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    phase: &'static str,
    round: usize,
    target: String,
    requests: u64,
    seconds: f64,
    requests_per_s: f64,
    server_cpu_s: f64,
    server_cpu_us_per_request: f64,
    /// Server CPU time / wall time: 1.0 is one core saturated.
    server_cpu_utilisation: f64,
    client_cpu_s: f64,
    /// CPU time of the processes of the server's database (the backend runs only).
    store_cpu_s: f64,
    store_cpu_us_per_request: f64,
    /// CPU time on the machine used by neither the server nor wrk, as a share of all cores'
    /// time (other engineers' processes: should be ~0).
    foreign_cpu_share: f64,
    steal_share: f64,
    latency_p50_us: f64,
    latency_p99_us: f64,
    errors: u64,
    wrk: Value,
}

/// One measured wrk run against `server`.
#[allow(clippy::too_many_arguments)]
fn measure(
    config: &Config,
    phase: &'static str,
    round: usize,
    target: &str,
    server: &Server,
    path: &str,
    cookie: Option<&str>,
    script: &str,
    extra: &[&str],
) -> Run {
    let url = format!("http://{}{path}", server.addr);
    wait_until_idle(config);
    let cpu_before = server.cpu_seconds(config);
    let store_before = store_process_ticks(server.store_processes);
    let children_before = children_cpu_seconds();
    let jiffies_before = cpu_jiffies();
    let start = Instant::now();
    let result = wrk(config, &url, cookie, script, extra, config.seconds);
    let wall = start.elapsed().as_secs_f64();
    let jiffies_after = cpu_jiffies();
    let client_cpu = children_cpu_seconds() - children_before;
    let server_cpu = server.cpu_seconds(config) - cpu_before;
    let store_cpu = store_cpu_seconds(
        config,
        &store_before,
        &store_process_ticks(server.store_processes),
    );

    let (mut busy, mut steal) = (0u64, 0u64);
    for (cpu, (b, s)) in &jiffies_after {
        let (b0, s0) = jiffies_before[cpu];
        busy += b - b0;
        steal += s - s0;
    }
    let cores = jiffies_after.len() as f64;
    let busy_s = busy as f64 / config.clk_tck;
    let foreign = (busy_s - server_cpu - client_cpu - store_cpu).max(0.0) / (wall * cores);

    let requests = result["requests"].as_u64().unwrap();
    let seconds = result["duration_us"].as_f64().unwrap() / 1e6;
    let errors: u64 = result["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let run = Run {
        phase,
        round,
        target: target.to_owned(),
        requests,
        seconds,
        requests_per_s: requests as f64 / seconds,
        server_cpu_s: server_cpu,
        server_cpu_us_per_request: server_cpu * 1e6 / requests as f64,
        server_cpu_utilisation: server_cpu / seconds,
        client_cpu_s: client_cpu,
        store_cpu_s: store_cpu,
        store_cpu_us_per_request: store_cpu * 1e6 / requests as f64,
        foreign_cpu_share: foreign,
        steal_share: steal as f64 / config.clk_tck / (wall * cores),
        latency_p50_us: result["latency_us"]["p50"].as_f64().unwrap(),
        latency_p99_us: result["latency_us"]["p99"].as_f64().unwrap(),
        errors,
        wrk: result,
    };
    eprintln!(
        "  {:<34} {:>9.0} req/s  {:>6.2} µs CPU/req  server CPU {:>4.0}%  store {:>6.2} µs/req  foreign {:>4.1}%  errors {}",
        run.target,
        run.requests_per_s,
        run.server_cpu_us_per_request,
        run.server_cpu_utilisation * 100.0,
        run.store_cpu_us_per_request,
        run.foreign_cpu_share * 100.0,
        run.errors
    );
    run
}

// ---------------------------------------------------------------------------------------------
// phases

struct Target {
    name: &'static str,
    server: usize,
    path: &'static str,
}

const TARGETS: [Target; 7] = [
    Target {
        name: "protected/login-manager",
        server: 0,
        path: "/protected",
    },
    Target {
        name: "protected/axum-login",
        server: 1,
        path: "/protected",
    },
    Target {
        name: "protected/floor",
        server: 2,
        path: "/protected",
    },
    Target {
        name: "public/login-manager",
        server: 0,
        path: "/public",
    },
    Target {
        name: "public/no-layer",
        server: 2,
        path: "/public",
    },
    Target {
        name: "public/axum-login",
        server: 1,
        path: "/public",
    },
    // The two layers in two `.layer` calls (DESIGN.md's example) instead of one: what axum's
    // second wrapping of every route costs.
    Target {
        name: "public/login-manager-two-layer-calls",
        server: 3,
        path: "/public",
    },
];

fn throughput(config: &Config) -> Vec<Run> {
    eprintln!(
        "== throughput: {} rounds of {} s, {} connections",
        config.rounds, config.seconds, config.connections
    );
    let servers = [
        Server::start(config, "lm-server", &config.server_cpu, &[]),
        Server::start(config, "axum-login-server", &config.server_cpu, &[]),
        Server::start(config, "floor-server", &config.server_cpu, &[]),
        Server::start(
            config,
            "lm-server",
            &config.server_cpu,
            &["--separate-layers"],
        ),
    ];
    let cookies: Vec<String> = servers.iter().map(login_cookie).collect();
    for target in &TARGETS {
        warm_up(
            config,
            &servers[target.server],
            target.path,
            &cookies[target.server],
        );
    }
    let mut runs = Vec::new();
    for round in 1..=config.rounds {
        eprintln!(" round {round}");
        for target in &TARGETS {
            runs.push(measure(
                config,
                "throughput",
                round,
                target.name,
                &servers[target.server],
                target.path,
                Some(&cookies[target.server]),
                "report.lua",
                &[],
            ));
        }
    }
    runs
}

/// An unmeasured wrk run of `BENCH_WARMUP` seconds (connections, caches, pools).
fn warm_up(config: &Config, server: &Server, path: &str, cookie: &str) {
    let url = format!("http://{}{path}", server.addr);
    wrk(config, &url, Some(cookie), "report.lua", &[], config.warmup);
}

fn remember(config: &Config) -> Vec<Run> {
    eprintln!(
        "== remember-me restore: {} rounds, {} tokens each",
        config.rounds, config.remember_tokens
    );
    let file = config.root.join("target/load-logs/remember-tokens.txt");
    let file_arg = file.to_str().unwrap();
    let count = config.remember_tokens.to_string();
    let mut runs = Vec::new();
    for round in 1..=config.rounds {
        let server = Server::start(
            config,
            "lm-server",
            &config.server_cpu,
            &["--remember-tokens", &count, file_arg],
        );
        runs.push(measure_restores(
            config,
            "remember",
            round,
            "protected/remember-restore",
            &server,
            file_arg,
        ));
    }
    let _ = std::fs::remove_file(&file);
    runs
}

/// One measured run of remember-me restores: every request presents an unused token from
/// `tokens_file` (pre-issued into `server`'s store) and no session.
fn measure_restores(
    config: &Config,
    phase: &'static str,
    round: usize,
    target: &str,
    server: &Server,
    tokens_file: &str,
) -> Run {
    let run = measure(
        config,
        phase,
        round,
        target,
        server,
        "/protected",
        None,
        "remember.lua",
        &[tokens_file],
    );
    assert_eq!(
        run.wrk["tokens_exhausted"], 0,
        "{target}: more requests than pre-issued tokens; raise BENCH_REMEMBER_TOKENS"
    );
    run
}

fn storm_tool(config: &Config, cpus: &str, args: &[&str]) -> Value {
    let output = Command::new("taskset")
        .args(["-c", cpus])
        .arg(config.bin.join("storm"))
        .args(args)
        .output()
        .expect("run storm");
    assert!(
        output.status.success(),
        "storm {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("storm JSON")
}

/// The storm with the server on `server_cpus`, the client on `client_cpus`.
fn storm(config: &Config, label: &str, server_cpus: &str, client_cpus: &str) -> Value {
    let cores = server_cpus.split(',').count();
    eprintln!("== login storm, server on {cores} core(s) ({server_cpus})");
    wait_until_idle(config);
    let hash = storm_tool(config, server_cpus, &["hash-time", "20"]);
    let server = Server::start(config, "lm-server", server_cpus, &[]);
    let cookie = login_cookie(&server);
    let pid = server.pid.to_string();
    let seconds = config.storm_seconds.to_string();
    // A short warm-up of the probe path, then the idle baseline and the storm.
    storm_tool(
        config,
        client_cpus,
        &["probe", &server.addr, &cookie, "1", &pid],
    );
    wait_until_idle(config);
    let idle = storm_tool(
        config,
        client_cpus,
        &["probe", &server.addr, &cookie, &seconds, &pid],
    );
    let logins = config.storm_logins.to_string();
    wait_until_idle(config);
    let storm = storm_tool(
        config,
        client_cpus,
        &["storm", &server.addr, &cookie, &seconds, &pid, &logins],
    );
    let expected = cores as f64 / hash["median_s"].as_f64().unwrap();
    let logins_per_s = storm["logins_per_s"].as_f64().unwrap();
    let p99_ratio =
        storm["probe"]["p99_us"].as_f64().unwrap() / idle["probe"]["p99_us"].as_f64().unwrap();
    eprintln!(
        "  {label}: argon2 verify {:.1} ms; {:.1} logins/s (expected cores/time = {:.1}); \
         p99 /protected idle {:.0} µs, storm {:.0} µs ({:.2}x); peak RSS {} KiB",
        hash["median_s"].as_f64().unwrap() * 1e3,
        logins_per_s,
        expected,
        idle["probe"]["p99_us"].as_f64().unwrap(),
        storm["probe"]["p99_us"].as_f64().unwrap(),
        p99_ratio,
        storm["hwm_kib"]
    );
    json!({
        "label": label,
        "server_cpus": server_cpus,
        "client_cpus": client_cpus,
        "cores": cores,
        "argon2_verify": hash,
        "idle": idle,
        "storm": storm,
        "expected_logins_per_s": expected,
        "logins_per_s_vs_expected": logins_per_s / expected,
        "p99_storm_over_idle": p99_ratio,
    })
}

/// argon2-memory both ways, interleaved, pinned to the server core.
fn argon2_memory(config: &Config) -> Value {
    eprintln!("== argon2 memory: verify_password vs a reused block buffer");
    let mut runs = Vec::new();
    for _ in 0..config.rounds.max(1) {
        for mode in ["verify_password", "with_memory"] {
            wait_until_idle(config);
            let output = Command::new("taskset")
                .args(["-c", &config.server_cpu])
                .arg(config.bin.join("argon2-memory"))
                .args([mode, "30"])
                .output()
                .expect("run argon2-memory");
            assert!(output.status.success(), "argon2-memory {mode} failed");
            let run: Value = serde_json::from_slice(&output.stdout).expect("argon2-memory JSON");
            eprintln!("  {run}");
            runs.push(run);
        }
    }
    let summary: Vec<Value> = ["verify_password", "with_memory"]
        .iter()
        .map(|mode| {
            let of = |key: &str| {
                median(
                    runs.iter()
                        .filter(|r| r["mode"] == *mode)
                        .map(|r| r[key].as_f64().unwrap())
                        .collect(),
                )
            };
            json!({
                "mode": mode,
                "median_ms_per_verification": of("ms_per_verification"),
                "median_vm_hwm_kib": of("vm_hwm_kib"),
                "median_minor_faults_per_verification": of("minor_faults_per_verification"),
            })
        })
        .collect();
    json!({ "summary": summary, "runs": runs })
}

// ---------------------------------------------------------------------------------------------
// summary, chart, tables

/// The median; NaN for no values (a reference that was not run).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[derive(Debug, Clone, Serialize)]
struct Summary {
    target: String,
    runs: usize,
    median_requests_per_s: f64,
    min_requests_per_s: f64,
    max_requests_per_s: f64,
    median_cpu_us_per_request: f64,
    min_cpu_us_per_request: f64,
    max_cpu_us_per_request: f64,
    median_latency_p99_us: f64,
    median_store_cpu_us_per_request: f64,
    /// Medians divided by the reference's medians (the floor for `/protected`, the no-layer
    /// server for `/public`, the plain session request for the remember restore).
    reference: String,
    requests_per_s_vs_reference: f64,
    cpu_per_request_vs_reference: f64,
}

fn summarise(runs: &[Run]) -> Vec<Summary> {
    let mut names: Vec<String> = Vec::new();
    for run in runs {
        if !names.contains(&run.target) {
            names.push(run.target.clone());
        }
    }
    fn of<'a>(runs: &'a [Run], name: &'a str) -> impl Iterator<Item = &'a Run> {
        runs.iter().filter(move |r| r.target == name)
    }
    let med = |name: &str, f: fn(&Run) -> f64| median(of(runs, name).map(f).collect());
    names
        .iter()
        .map(|name| {
            let reference = if let Some(reference) = scale::reference(name, &names) {
                // The same backend and request with the fewest extra entries.
                reference
            } else if let Some(kind) = name.strip_prefix("backend/") {
                // Each backend against memory, the same kind of request.
                let kind = kind.split_once('/').map_or(kind, |(_, kind)| kind);
                format!("backend/memory/{kind}")
            } else if name.starts_with("public/") {
                "public/no-layer".to_owned()
            } else if name.ends_with("remember-restore") {
                "protected/login-manager".to_owned()
            } else {
                "protected/floor".to_owned()
            };
            let reference = reference.as_str();
            let rps: Vec<f64> = of(runs, name).map(|r| r.requests_per_s).collect();
            let cpu: Vec<f64> = of(runs, name)
                .map(|r| r.server_cpu_us_per_request)
                .collect();
            let mrps = median(rps.clone());
            let mcpu = median(cpu.clone());
            Summary {
                target: name.clone(),
                runs: rps.len(),
                median_requests_per_s: mrps,
                min_requests_per_s: rps.iter().copied().fold(f64::MAX, f64::min),
                max_requests_per_s: rps.iter().copied().fold(0.0, f64::max),
                median_cpu_us_per_request: mcpu,
                min_cpu_us_per_request: cpu.iter().copied().fold(f64::MAX, f64::min),
                max_cpu_us_per_request: cpu.iter().copied().fold(0.0, f64::max),
                median_latency_p99_us: med(name, |r| r.latency_p99_us),
                median_store_cpu_us_per_request: med(name, |r| r.store_cpu_us_per_request),
                reference: reference.to_owned(),
                requests_per_s_vs_reference: mrps / med(reference, |r| r.requests_per_s),
                cpu_per_request_vs_reference: mcpu
                    / med(reference, |r| r.server_cpu_us_per_request),
            }
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct Verdict {
    target: &'static str,
    measured: f64,
    limit: f64,
    met: bool,
}

fn verdicts(summary: &[Summary], storms: &[Value]) -> Vec<Verdict> {
    let get = |name: &str| summary.iter().find(|s| s.target == name);
    let mut out = Vec::new();
    if let (Some(lm), Some(axl), Some(public)) = (
        get("protected/login-manager"),
        get("protected/axum-login"),
        get("public/login-manager"),
    ) {
        out.extend(throughput_verdicts(lm, axl, public));
    }
    for storm in storms {
        let ratio = storm["p99_storm_over_idle"].as_f64().unwrap();
        let throughput = storm["logins_per_s_vs_expected"].as_f64().unwrap();
        let (p99_target, login_target) = if storm["cores"] == 1 {
            (
                "p99 /protected during the login storm <= 2x idle (server on 1 core)",
                "logins/s >= 0.9x cores / argon2 time (server on 1 core)",
            )
        } else {
            (
                "p99 /protected during the login storm <= 2x idle (server on all cores)",
                "logins/s >= 0.9x cores / argon2 time (server on all cores)",
            )
        };
        out.push(Verdict {
            target: p99_target,
            measured: ratio,
            limit: 2.0,
            met: ratio <= 2.0,
        });
        out.push(Verdict {
            target: login_target,
            measured: throughput,
            limit: 0.9,
            met: throughput >= 0.9,
        });
    }
    out
}

/// The DESIGN.md targets of the throughput phase.
fn throughput_verdicts(lm: &Summary, axl: &Summary, public: &Summary) -> Vec<Verdict> {
    vec![
        Verdict {
            target: "/protected server CPU per request <= 1.10x the floor",
            measured: lm.cpu_per_request_vs_reference,
            limit: 1.10,
            met: lm.cpu_per_request_vs_reference <= 1.10,
        },
        Verdict {
            target: "/protected requests/s >= 1.15x axum-login",
            measured: lm.median_requests_per_s / axl.median_requests_per_s,
            limit: 1.15,
            met: lm.median_requests_per_s / axl.median_requests_per_s >= 1.15,
        },
        Verdict {
            target: "/public server CPU per request <= 1.03x no layer",
            measured: public.cpu_per_request_vs_reference,
            limit: 1.03,
            met: public.cpu_per_request_vs_reference <= 1.03,
        },
        Verdict {
            target: "/public requests/s >= 0.97x no layer",
            measured: public.requests_per_s_vs_reference,
            limit: 0.97,
            met: public.requests_per_s_vs_reference >= 0.97,
        },
    ]
}

/// Bars of requests/s and CPU per request, medians with min..max whiskers. Where a run's
/// database processes used CPU (the backend runs), their median share is stacked, lighter,
/// on the server's CPU bar.
fn chart(
    path: &Path,
    title: &str,
    reference: &str,
    summary: &[Summary],
    machine: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1100, 820)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title_area, body) = root.split_vertically(50);
    title_area.titled(
        &format!("{title} — medians, whiskers min..max ({machine})"),
        ("sans-serif", 17),
    )?;
    let panels = body.split_evenly((2, 1));
    let n = summary.len();
    let names: Vec<String> = summary
        .iter()
        .map(|s| match s.target.as_str() {
            "protected/remember-restore" => "remember restore".to_owned(),
            other => other
                .trim_start_matches("backend/")
                .replace('/', " ")
                .replace("login-manager", "LM")
                .replace("remember-restore", "restore"),
        })
        .collect();
    let color = |s: &Summary| {
        if s.target.contains("login-manager")
            || s.target.ends_with("remember-restore")
            || s.target.ends_with("/session")
        {
            RGBColor(31, 119, 180)
        } else if s.target.ends_with("axum-login") {
            RGBColor(214, 39, 40)
        } else {
            RGBColor(127, 127, 127)
        }
    };
    // (median, min, max, ratio to the reference, stacked on the median)
    type Pick = fn(&Summary) -> (f64, f64, f64, f64, f64);
    let rps_caption =
        format!("requests/s (higher is better); × ratio to the reference ({reference})");
    let metrics: [(&str, Pick); 2] = [
        (
            &rps_caption,
            |s| {
                (
                    s.median_requests_per_s,
                    s.min_requests_per_s,
                    s.max_requests_per_s,
                    s.requests_per_s_vs_reference,
                    0.0,
                )
            },
        ),
        (
            "server CPU µs per request (lower is better; lighter: database processes); × server ratio to the reference",
            |s| {
                (
                    s.median_cpu_us_per_request,
                    s.min_cpu_us_per_request,
                    s.max_cpu_us_per_request,
                    s.cpu_per_request_vs_reference,
                    s.median_store_cpu_us_per_request,
                )
            },
        ),
    ];
    for (panel, (title, pick)) in panels.iter().zip(metrics) {
        let top = summary
            .iter()
            .map(|s| {
                let (med, _, hi, _, stacked) = pick(s);
                hi.max(med + stacked)
            })
            .fold(0.0, f64::max)
            * 1.15;
        let label_style = ("sans-serif", 12).into_font().color(&BLACK);
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(60)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_style(("sans-serif", 12))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        for (i, s) in summary.iter().enumerate() {
            let (med, lo, hi, ratio, stacked) = pick(s);
            let base = color(s);
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), med),
                ],
                base.filled(),
            );
            bar.set_margin(0, 0, 14, 14);
            chart.draw_series(std::iter::once(bar))?;
            if stacked > 0.01 * med {
                let mut store = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), med),
                        (SegmentValue::Exact(i + 1), med + stacked),
                    ],
                    base.mix(0.35).filled(),
                );
                store.set_margin(0, 0, 14, 14);
                chart.draw_series(std::iter::once(store))?;
            }
            chart.draw_series(std::iter::once(PathElement::new(
                vec![
                    (SegmentValue::CenterOf(i), lo),
                    (SegmentValue::CenterOf(i), hi),
                ],
                BLACK.stroke_width(2),
            )))?;
            let label = if med >= 100.0 {
                format!("{med:.0} ×{ratio:.2}")
            } else {
                format!("{med:.2} ×{ratio:.2}")
            };
            chart.draw_series(std::iter::once(Text::new(
                label,
                (
                    SegmentValue::CenterOf(i),
                    hi.max(med + stacked) + top * 0.05,
                ),
                label_style.clone(),
            )))?;
        }
    }
    root.present()?;
    Ok(())
}

fn markdown(summary: &[Summary], storms: &[Value], verdicts: &[Verdict]) -> String {
    let mut md = String::new();
    md.push_str("| target | req/s (median) | req/s min..max | vs ref | server CPU µs/req (median) | CPU min..max | vs ref | p99 latency µs | reference |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for s in summary {
        md.push_str(&format!(
            "| {} | {:.0} | {:.0}..{:.0} | {:.3} | {:.2} | {:.2}..{:.2} | {:.3} | {:.0} | {} |\n",
            s.target,
            s.median_requests_per_s,
            s.min_requests_per_s,
            s.max_requests_per_s,
            s.requests_per_s_vs_reference,
            s.median_cpu_us_per_request,
            s.min_cpu_us_per_request,
            s.max_cpu_us_per_request,
            s.cpu_per_request_vs_reference,
            s.median_latency_p99_us,
            s.reference
        ));
    }
    md.push_str("\n| login storm | argon2 verify ms | logins/s | cores / argon2 time | ratio | /protected p50 idle → storm µs | p99 idle → storm µs | p99 ratio | RSS before → peak (VmHWM) MiB |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in storms {
        let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        md.push_str(&format!(
            "| {} ({} core(s), {} concurrent logins) | {:.1} | {:.1} | {:.1} | {:.2} | {:.0} → {:.0} | {:.0} → {:.0} | {:.2} | {:.1} → {:.1} |\n",
            s["label"].as_str().unwrap_or(""),
            s["cores"],
            s["storm"]["concurrent_logins"],
            f(&s["argon2_verify"]["median_s"]) * 1e3,
            f(&s["storm"]["logins_per_s"]),
            f(&s["expected_logins_per_s"]),
            f(&s["logins_per_s_vs_expected"]),
            f(&s["idle"]["probe"]["p50_us"]),
            f(&s["storm"]["probe"]["p50_us"]),
            f(&s["idle"]["probe"]["p99_us"]),
            f(&s["storm"]["probe"]["p99_us"]),
            f(&s["p99_storm_over_idle"]),
            f(&s["storm"]["rss_before_kib"]) / 1024.0,
            f(&s["storm"]["hwm_kib"]) / 1024.0,
        ));
    }
    md.push_str("\n| target (DESIGN.md) | measured | limit | met |\n|---|---:|---:|---|\n");
    for v in verdicts {
        md.push_str(&format!(
            "| {} | {:.3} | {} | {} |\n",
            v.target,
            v.measured,
            v.limit,
            if v.met { "yes" } else { "**no**" }
        ));
    }
    md
}

/// Criterion's estimates from this run (`target/criterion/**/new/`), if the micro-benchmarks
/// ran after `BENCH_RUN_START` (unix seconds, set by run.sh).
fn criterion_results(config: &Config) -> Vec<Value> {
    let since: u64 = env_or("BENCH_RUN_START", u64::MAX);
    let mut out = Vec::new();
    let mut stack = vec![config.root.join("target/criterion")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.file_name().is_none_or(|n| n != "estimates.json")
                || path
                    .parent()
                    .and_then(|p| p.file_name())
                    .is_none_or(|n| n != "new")
            {
                continue;
            }
            let fresh = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|t| t.as_secs() >= since);
            let benchmark = path.with_file_name("benchmark.json");
            let (Ok(estimates), Ok(benchmark)) = (
                std::fs::read_to_string(&path),
                std::fs::read_to_string(&benchmark),
            ) else {
                continue;
            };
            if !fresh {
                continue;
            }
            let estimates: Value = serde_json::from_str(&estimates).unwrap_or_default();
            let benchmark: Value = serde_json::from_str(&benchmark).unwrap_or_default();
            out.push(json!({
                "id": benchmark["full_id"],
                "mean_ns": estimates["mean"]["point_estimate"],
                "median_ns": estimates["median"]["point_estimate"],
                "mean_ci95_ns": [
                    estimates["mean"]["confidence_interval"]["lower_bound"],
                    estimates["mean"]["confidence_interval"]["upper_bound"],
                ],
            }));
        }
    }
    out.sort_by_key(|v| v["id"].as_str().unwrap_or("").to_owned());
    out
}

fn criterion_markdown(results: &[Value]) -> String {
    if results.is_empty() {
        return String::new();
    }
    let mean = |id: &str| {
        results
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["mean_ns"].as_f64())
    };
    let references = [
        ("resolve/protected/login_manager", "resolve/protected/floor"),
        (
            "resolve/public/login_manager",
            "resolve/public/sessions_only",
        ),
        (
            "resolve/protected/remember_restore",
            "resolve/protected/login_manager",
        ),
    ];
    let mut md =
        String::from("\n| criterion benchmark | mean | median | vs |\n|---|---:|---:|---|\n");
    let time = |ns: f64| {
        if ns >= 1000.0 {
            format!("{:.2} µs", ns / 1000.0)
        } else {
            format!("{ns:.1} ns")
        }
    };
    for r in results {
        let id = r["id"].as_str().unwrap_or("");
        let m = r["mean_ns"].as_f64().unwrap_or(f64::NAN);
        let vs = references
            .iter()
            .find(|(a, _)| *a == id)
            .and_then(|(_, b)| Some((b, mean(b)?)))
            .map(|(b, base)| format!("{:.3}x {b}", m / base))
            .unwrap_or_default();
        md.push_str(&format!(
            "| {id} | {} | {} | {vs} |\n",
            time(m),
            time(r["median_ns"].as_f64().unwrap_or(f64::NAN))
        ));
    }
    md
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    json!({
        "cpu_model": model,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "rustc": command_output("rustc", &["-V"]).trim(),
        "wrk": command_output("sh", &["-c", "wrk -v 2>&1 | head -1"]).trim(),
        "load_average_at_start": load_average(),
    })
}

fn main() {
    let config = Config::from_env();
    wait_until_quiet(&config);
    if std::env::args().any(|a| a == "--wait-only") {
        return;
    }
    let machine = machine();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let phases: String = env_or(
        "BENCH_PHASES",
        "throughput,remember,storm,argon2,backends".to_owned(),
    );
    let phase = |name: &str| phases.split(',').any(|p| p.trim() == name);
    if phase("backends") {
        backends::preflight(&config);
    }
    if phase("scale") {
        scale::preflight(&config);
    }
    let mut runs = Vec::new();
    if phase("throughput") {
        runs.extend(throughput(&config));
    }
    if phase("remember") {
        runs.extend(remember(&config));
    }
    let mut storms = Vec::new();
    if phase("storm") {
        storms.push(storm(
            &config,
            "one core",
            &config.server_cpu,
            &config.client_cpu,
        ));
        storms.push(storm(&config, "all cores", "0,1", "0,1"));
    }
    let argon2 = if phase("argon2") {
        argon2_memory(&config)
    } else {
        Value::Null
    };
    let mut store_ops = Vec::new();
    if phase("backends") {
        let (backend_runs, ops) = backends::backends(&config);
        runs.extend(backend_runs);
        store_ops = ops;
    }
    let mut scale_fills = Vec::new();
    if phase("scale") {
        let (scale_runs, fills) = scale::scale(&config);
        runs.extend(scale_runs);
        scale_fills = fills;
    }

    let micro = criterion_results(&config);
    let summary = summarise(&runs);
    let verdicts = verdicts(&summary, &storms);
    let results = json!({
        "started_unix": started,
        "machine": machine,
        "config": {
            "phases": phases,
            "rounds": config.rounds,
            "seconds": config.seconds,
            "connections": config.connections,
            "server_cpu": config.server_cpu,
            "client_cpu": config.client_cpu,
            "remember_tokens": config.remember_tokens,
            "storm_seconds": config.storm_seconds,
            "storm_logins": config.storm_logins,
        },
        "summary": summary,
        "storms": storms,
        "targets": verdicts,
        "argon2_memory": argon2,
        "store_ops": store_ops,
        "scale_fills": scale_fills,
        "criterion": micro,
        "runs": runs,
    });
    let out = config.root.join("target/bench-results.json");
    std::fs::write(&out, serde_json::to_string_pretty(&results).unwrap()).unwrap();
    let (scale_summary, summary): (Vec<Summary>, Vec<Summary>) = summary
        .iter()
        .cloned()
        .partition(|s| s.target.starts_with("scale/"));
    let (backend_summary, main_summary): (Vec<Summary>, Vec<Summary>) = summary
        .iter()
        .cloned()
        .partition(|s| s.target.starts_with("backend/"));
    let mut md = markdown(&main_summary, &storms, &verdicts);
    md.push_str(&backends::markdown(&backend_summary));
    md.push_str(&backends::ops_markdown(&store_ops));
    md.push_str(&scale::markdown(&scale_summary, &runs));
    if argon2["summary"].is_array() {
        md.push_str("\n| argon2id verification (30 in a row, one thread) | ms each (median) | peak RSS MiB | minor page faults each |\n|---|---:|---:|---:|\n");
    }
    for row in argon2["summary"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {:.2} | {:.1} | {:.0} |\n",
            row["mode"].as_str().unwrap_or(""),
            row["median_ms_per_verification"]
                .as_f64()
                .unwrap_or(f64::NAN),
            row["median_vm_hwm_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
            row["median_minor_faults_per_verification"]
                .as_f64()
                .unwrap_or(f64::NAN),
        ));
    }
    md.push_str(&criterion_markdown(&micro));
    std::fs::write(config.root.join("target/bench-results.md"), &md).unwrap();
    let label = format!(
        "{}, {} cores",
        machine["cpu_model"].as_str().unwrap_or(""),
        machine["cores"]
    );
    let mut written = vec![out, config.root.join("target/bench-results.md")];
    let chart_dir = config
        .root
        .join(env_or("BENCH_CHART_DIR", "docs".to_owned()));
    for (summary, file, title, reference) in [
        (
            &main_summary,
            "benchmarks.svg",
            "login-manager load benchmark",
            "floor, no layer, session request",
        ),
        (
            &backend_summary,
            "benchmarks-backends.svg",
            "login-manager with sessions and remember-me tokens per backend",
            "memory",
        ),
    ] {
        if !summary.is_empty() {
            std::fs::create_dir_all(&chart_dir).expect("chart directory");
            let svg = chart_dir.join(file);
            chart(&svg, title, reference, summary, &label).expect("chart");
            written.push(svg);
        }
    }
    println!("{md}");
    eprintln!("wrote {written:?}");
}
