//! What the three benchmark servers share: the user, the one-user in-memory loader, the
//! handlers' common parts, and serving on an ephemeral port of 127.0.0.1.
//!
//! Every server prints `listening on 127.0.0.1:PORT` on its first line of standard output, so
//! the driver can find it.

use std::{collections::HashMap, sync::Arc};

use axum::Router;
use tokio::net::TcpListener;

/// The password of the benchmark user (`alice`).
pub const PASSWORD: &str = "correct horse battery staple";
/// The `User-Agent` every benchmark client sends (session protection compares it).
pub const USER_AGENT: &str = "login-manager-bench";

/// The benchmark user, the same struct in all three servers.
#[derive(Clone, Debug)]
pub struct User {
    pub id: u32,
    pub name: String,
    /// An argon2id PHC string, also used as the session auth hash.
    pub password_hash: String,
}

impl login_manager::AuthUser for User {
    type Id = u32;
    fn id(&self) -> u32 {
        self.id
    }
    fn session_auth_hash(&self) -> &[u8] {
        self.password_hash.as_bytes()
    }
}

impl axum_login::AuthUser for User {
    type Id = u32;
    fn id(&self) -> u32 {
        self.id
    }
    fn session_auth_hash(&self) -> &[u8] {
        self.password_hash.as_bytes()
    }
}

/// One user in a map; every server looks users up through [`Users::load`], which returns an
/// owned user as a database-backed loader would.
#[derive(Clone, Debug)]
pub struct Users(Arc<HashMap<u32, User>>);

impl Users {
    /// `alice` (id 1), with her password hashed at the library's default argon2id cost.
    pub async fn new() -> Self {
        let password_hash = login_manager::PasswordHasher::new()
            .hash(PASSWORD)
            .await
            .expect("hash the benchmark password");
        let alice = User {
            id: 1,
            name: "alice".to_owned(),
            password_hash,
        };
        Users(Arc::new(HashMap::from([(1, alice)])))
    }

    /// The user with this id.
    pub async fn load(&self, id: u32) -> Option<User> {
        self.0.get(&id).cloned()
    }

    /// The user with this name.
    pub fn by_name(&self, name: &str) -> Option<User> {
        self.0.values().find(|u| u.name == name).cloned()
    }

    /// Alice.
    pub fn alice(&self) -> User {
        self.0[&1].clone()
    }
}

/// The body of `/protected` in all three servers.
pub fn greeting(user: &User) -> String {
    format!("Hello, {}", user.name)
}

/// The `/public` handler of all three servers.
pub async fn public() -> &'static str {
    "public"
}

/// The login form of `/login`.
#[derive(serde::Deserialize)]
pub struct LoginForm {
    pub username: String,
    pub password: String,
}

/// Serves `app` on 127.0.0.1 (port from `$PORT`, or an ephemeral one) and announces the port.
pub async fn serve(app: Router) {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind 127.0.0.1");
    println!(
        "listening on {}",
        listener.local_addr().expect("local addr")
    );
    axum::serve(listener, app).await.expect("serve");
}
