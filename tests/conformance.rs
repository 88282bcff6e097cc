//! One conformance suite for every `RememberStore` and `ThrottleStore`: the cases in
//! `store_support/cases.rs`, run against the memory stores and, with their features, SQLite,
//! Postgres and Redis (see `store_support` for how each test gets private storage, and when
//! a missing server is skipped or fails).

mod store_support;

/// One test per case for `$backend` (a function of `store_support::backends`).
macro_rules! conformance {
    ($backend:ident: $($case:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    crate::store_support::run(
                        crate::store_support::backends::$backend,
                        crate::store_support::cases::$case,
                    )
                    .await;
                }
            )+
        }
    };
    ($($backend:ident),+ $(,)?) => {
        $(conformance!($backend:
            create_then_find,
            rotate_needs_the_expected_hash,
            delete_removes_one_token,
            list_and_delete_for_user,
            expired_tokens_are_cleaned_up,
            concurrent_rotations_have_one_winner,
            throttle_counts_failures,
            throttle_window_is_fixed_and_restarts,
            throttle_reset,
            throttle_concurrent_increments,
            device_cookies_survive_other_clients_locks,
        );)+
    };
}

conformance!(memory);
#[cfg(feature = "sqlite")]
conformance!(sqlite);
#[cfg(feature = "postgres")]
conformance!(postgres);
#[cfg(feature = "redis")]
conformance!(redis);
