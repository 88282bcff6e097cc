//! One conformance suite for every `RememberStore` and `ThrottleStore` (the cases in
//! `store_support/cases.rs`), `LoginStore` (`login_cases.rs`) and `TokenStore`
//! (`token_cases.rs`), run against the memory stores and, with their features, SQLite,
//! Postgres and Redis (see `store_support` for how each test gets private storage, and when
//! a missing server is skipped or fails).

mod store_support;

use store_support::conformance;

conformance!(memory);
#[cfg(feature = "sqlite")]
conformance!(sqlite);
#[cfg(feature = "postgres")]
conformance!(postgres);
#[cfg(feature = "redis")]
conformance!(redis);
