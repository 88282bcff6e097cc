//! `safe_next` and `next_from_query`: never panic, and whatever they accept is a
//! same-origin relative path that stays one at every decoding stage, is a valid `Location`
//! header value, and is accepted again unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use login_manager::__private::{next_from_query, MAX_DECODE_ROUNDS, MAX_NEXT_LEN};
use login_manager::login_url;
use login_manager::safe_next;
use url::Url;

const BASE: &str = "http://app.example/";

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(out) = safe_next(input) {
        check_accepted(&out);
    }
    // The same bytes as a query string, as the login handler reads them.
    if let Some(out) = next_from_query(Some(input)) {
        check_accepted(&out);
    }
});

fn check_accepted(out: &str) {
    assert!(out.len() <= MAX_NEXT_LEN, "{out:?} is too long");
    assert!(
        http::HeaderValue::from_str(out).is_ok(),
        "{out:?} is not a valid header value"
    );
    assert!(!out.contains('\\'), "{out:?} holds a backslash");
    assert!(
        out.starts_with('/') && !out.starts_with("//"),
        "{out:?} is not a single-slash path"
    );

    // Same origin for a browser, and for whatever decodes the value once more.
    let base = Url::parse(BASE).unwrap();
    let mut stage = out.as_bytes().to_vec();
    for _ in 0..=MAX_DECODE_ROUNDS {
        let text = String::from_utf8_lossy(&stage);
        let joined = base
            .join(&text)
            .unwrap_or_else(|e| panic!("{out:?} (stage {text:?}) does not join: {e}"));
        assert_eq!(
            joined.origin(),
            base.origin(),
            "{out:?} (stage {text:?}) leaves the origin: {joined}"
        );
        let decoded: Vec<u8> = percent_encoding::percent_decode(&stage).collect();
        if decoded == stage {
            break;
        }
        stage = decoded;
    }

    // Idempotent: an accepted value passes again, unchanged.
    assert_eq!(
        safe_next(out).as_deref(),
        Some(out),
        "{out:?} is not accepted again"
    );
    // And it survives the trip through the login URL.
    let url = login_url("/login", Some(out));
    let query = url.split_once('?').map(|(_, query)| query);
    assert_eq!(
        next_from_query(query).as_deref(),
        Some(out),
        "{out:?} does not survive {url:?}"
    );
}
