//! The login-manager demo: a small web app using every feature of the library.
//!
//! ```text
//! cargo run -p demo
//! ```
//!
//! Then open the printed URL and log in as `alice` / `wonderland-rabbit-hole` (or `admin` /
//! `queen-of-hearts-croquet`). Settings come from the environment; see `config.rs`. The HTTP
//! contract this app follows is DEMO.md.

mod app;
mod config;
mod db;
mod routes;
mod stores;
mod web;

use std::{io::IsTerminal, net::SocketAddr, process::ExitCode};

use login_manager::PasswordHasher;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::{config::Config, stores::Stores};

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr: stdout carries only the start-up lines, which scripts and the tests
    // read.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("demo: {message}");
            return ExitCode::from(2);
        }
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    web::init_templates()?;
    // The URL may carry a password: errors name the scheme only.
    let scheme = config.database_url.split(':').next().unwrap_or_default();
    let db = db::connect(&config.database_url)
        .await
        .map_err(|e| format!("cannot open the {scheme} database of DATABASE_URL: {e}"))?;
    let hasher = PasswordHasher::new();
    // Seeding and the stores' tables, one instance at a time.
    let stores = db::exclusively(&db, async {
        db::seed(&db, &hasher).await?;
        Stores::new(&config, &db).await
    })
    .await?;
    // A bad session setting (e.g. a short cookie key) stops the demo here, before serving.
    let sessions = stores
        .sessions
        .clone()
        .into_layer(stores::session_config(&config)?)?;

    let listener = TcpListener::bind(&config.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.addr))?;
    let local_addr = listener.local_addr()?;
    // Links in mail point here: the configured public URL, else the real port.
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| default_public_url(local_addr));
    let app = app::build(&config, db, hasher, stores, sessions, &public_url);

    // The tests parse this line for the real port (`DEMO_ADDR=127.0.0.1:0`).
    println!("Listening on http://{local_addr}");
    println!("Demo accounts (created on first start):");
    for (username, password, permissions) in db::SEED_ACCOUNTS {
        let extra = if permissions.is_empty() {
            String::new()
        } else {
            format!("  (permissions: {})", permissions.join(", "))
        };
        println!("  {username} / {password}{extra}");
    }
    match &config.smtp_url {
        Some(_) => println!("Mail (password-reset links) goes out over SMTP (DEMO_SMTP_URL)."),
        None => println!(
            "Mail (password-reset links) is written to {} as .eml files.",
            config.mail_dir.display()
        ),
    }

    // The peer address feeds the login throttle and session protection.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    Ok(())
}

/// `http://` and the listening address; an unspecified one (`0.0.0.0`, `[::]`) as `localhost`,
/// which a browser on this machine can open.
fn default_public_url(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// Ctrl-C, or SIGTERM (`docker stop`, systemd).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
