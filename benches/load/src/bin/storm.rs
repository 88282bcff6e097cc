//! The login-storm client, and the argon2 timing, for `loadbench` (prints one JSON object).
//!
//! - `storm hash-time N`: N sequential `PasswordHasher::new().verify` of the benchmark
//!   password (the work of one login), median seconds.
//! - `storm probe URL COOKIE SECONDS SERVER_PID`: one connection asking for `/protected`
//!   with COOKIE every millisecond for SECONDS: its latency distribution (the idle baseline).
//! - `storm storm URL COOKIE SECONDS SERVER_PID LOGINS`: the same probe while LOGINS
//!   connections keep posting the login form (`POST /login`, argon2id at default cost), each
//!   sending its next login as soon as the last one is answered; also the logins completed,
//!   their latency, and the server's resident memory (sampled, and its high-water mark).
//! - `storm fixed URL COOKIE PATH N`: N sequential GETs of PATH on one connection (for
//!   instruction-count profiles: a fixed amount of work).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, client::conn::http1, header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use login_manager::PasswordHasher;
use login_manager_load::{PASSWORD, USER_AGENT};
use serde_json::json;
use tokio::net::TcpStream;

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: &str) -> Sender {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// Sends one request and reads the whole answer; its status.
async fn send(sender: &mut Sender, request: Request<Full<Bytes>>) -> StatusCode {
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    response.into_body().collect().await.expect("body");
    status
}

fn protected_request(host: &str, cookie: &str) -> Request<Full<Bytes>> {
    Request::get("/protected")
        .header(header::HOST, host)
        .header(header::COOKIE, cookie)
        .header(header::ACCEPT, "application/json")
        .header(header::USER_AGENT, USER_AGENT)
        .body(Full::default())
        .unwrap()
}

fn login_request(host: &str) -> Request<Full<Bytes>> {
    let body = format!("username=alice&password={}", PASSWORD.replace(' ', "+"));
    Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .header(header::USER_AGENT, USER_AGENT)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Percentiles of a latency sample, in microseconds.
fn stats(mut sample: Vec<f64>) -> serde_json::Value {
    sample.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if sample.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * sample.len() as f64).ceil() as usize).clamp(1, sample.len());
        sample[rank - 1]
    };
    json!({
        "count": sample.len(),
        "p50_us": at(0.50),
        "p90_us": at(0.90),
        "p99_us": at(0.99),
        "p999_us": at(0.999),
        "max_us": sample.last().copied().unwrap_or(f64::NAN),
    })
}

/// `VmRSS` and `VmHWM` of a process, KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Probes `/protected` every millisecond until `stop`; latencies in microseconds.
async fn probe(addr: String, cookie: String, stop: Arc<AtomicBool>) -> Vec<f64> {
    let mut sender = connect(&addr).await;
    let mut sample = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let status = send(&mut sender, protected_request(&addr, &cookie)).await;
        let elapsed = start.elapsed();
        assert_eq!(status, StatusCode::OK, "probe of /protected");
        sample.push(elapsed.as_secs_f64() * 1e6);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sample
}

async fn run_probe(addr: &str, cookie: &str, seconds: f64, pid: u32) -> serde_json::Value {
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(probe(addr.to_owned(), cookie.to_owned(), stop.clone()));
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let sample = task.await.unwrap();
    let (rss, hwm) = memory_kib(pid);
    json!({ "probe": stats(sample), "rss_kib": rss, "hwm_kib": hwm })
}

async fn run_storm(
    addr: &str,
    cookie: &str,
    seconds: f64,
    pid: u32,
    logins: usize,
) -> serde_json::Value {
    let (rss_before, _) = memory_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicU64::new(0));
    let login_latencies = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);

    let mut workers = Vec::new();
    for _ in 0..logins {
        let addr = addr.to_owned();
        let completed = completed.clone();
        let latencies = login_latencies.clone();
        workers.push(tokio::spawn(async move {
            let mut sender = connect(&addr).await;
            loop {
                let sent = Instant::now();
                let status = send(&mut sender, login_request(&addr)).await;
                let done = Instant::now();
                assert_eq!(status, StatusCode::OK, "login");
                if done > deadline {
                    break;
                }
                completed.fetch_add(1, Ordering::Relaxed);
                latencies
                    .lock()
                    .unwrap()
                    .push((done - sent).as_secs_f64() * 1e6);
            }
        }));
    }
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(memory_kib(pid).0);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let prober = tokio::spawn(probe(addr.to_owned(), cookie.to_owned(), stop.clone()));

    tokio::time::sleep_until(deadline.into()).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let probe_sample = prober.await.unwrap();
    let peak_sampled = sampler.await.unwrap();
    let (_, hwm) = memory_kib(pid);
    // Logins still queued at the deadline are not counted; drop their connections.
    for worker in &workers {
        worker.abort();
    }
    let completed = completed.load(Ordering::Relaxed);
    let login_sample = std::mem::take(&mut *login_latencies.lock().unwrap());
    json!({
        "concurrent_logins": logins,
        "seconds": elapsed,
        "logins_completed": completed,
        "logins_per_s": completed as f64 / elapsed,
        "login_latency": stats(login_sample),
        "probe": stats(probe_sample),
        "rss_before_kib": rss_before,
        "rss_peak_sampled_kib": peak_sampled,
        "hwm_kib": hwm,
    })
}

async fn fixed(addr: &str, cookie: &str, path: &str, n: usize) -> serde_json::Value {
    let mut sender = connect(addr).await;
    let start = Instant::now();
    for _ in 0..n {
        let mut request = protected_request(addr, cookie);
        *request.uri_mut() = path.parse().expect("path");
        let status = send(&mut sender, request).await;
        assert_eq!(status, StatusCode::OK, "GET {path}");
    }
    json!({ "requests": n, "seconds": start.elapsed().as_secs_f64() })
}

async fn hash_time(n: usize) -> serde_json::Value {
    let hasher = PasswordHasher::new();
    let phc = hasher.hash(PASSWORD).await.expect("hash");
    let mut times = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        let verified = hasher.verify(PASSWORD, &phc).await.expect("verify");
        times.push(start.elapsed().as_secs_f64());
        assert!(verified.valid);
    }
    times.sort_by(f64::total_cmp);
    json!({ "verifications": n, "median_s": times[n / 2], "min_s": times[0], "max_s": times[n - 1] })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str { args.get(i).map(String::as_str).expect("missing argument") };
    let result = match arg(0) {
        "hash-time" => hash_time(arg(1).parse().unwrap()).await,
        "fixed" => fixed(arg(1), arg(2), arg(3), arg(4).parse().unwrap()).await,
        "probe" => {
            run_probe(
                arg(1),
                arg(2),
                arg(3).parse().unwrap(),
                arg(4).parse().unwrap(),
            )
            .await
        }
        "storm" => {
            run_storm(
                arg(1),
                arg(2),
                arg(3).parse().unwrap(),
                arg(4).parse().unwrap(),
                arg(5).parse().unwrap(),
            )
            .await
        }
        other => panic!("unknown mode {other}"),
    };
    println!("{result}");
}
