//! Security invariant 2: `next` is accepted only as a same-origin relative path.

use login_manager::__private::{next_from_query, MAX_NEXT_LEN};
use login_manager::login_url;
use login_manager::safe_next;
use proptest::prelude::*;

/// Open-redirect and header-injection attempts, from the OWASP cheat sheet, browser URL
/// parsing quirks, and the bugs of other login libraries.
const REFUSED: &[&str] = &[
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "\\\\evil.example",
    "https://evil.example",
    "https:evil.example",
    "http:/\\evil.example",
    "%2F%2Fevil.example",
    "/%2F/evil.example",
    "/%09/evil.example",
    "/%0A/evil.example",
    "%0D%0ASet-Cookie:x=1",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "java%0Ascript:alert(1)",
    "data:text/html,x",
    "https://app@evil.example/",
    " //evil.example",
    "http:999999999",
    // Our own.
    "",
    "evil.example",
    "/\t/evil.example",
    "\t//evil.example",
    "/\r\nSet-Cookie: x=1",
    "/\nLocation: //evil.example",
    "/x\rSet-Cookie: x=1",
    "/x\u{0}",
    "/x\u{7f}",
    "/x\u{85}",               // C1: NEXT LINE
    "/x%C2%85",               // C1, percent-encoded
    "/x y",                   // raw space
    "/x\u{a0}y",              // raw no-break space
    "/x%C2%A0y",              // encoded no-break space
    "/x%E2%80%A8y",           // encoded LINE SEPARATOR
    "/%5Cevil.example",       // `/\evil.example` once decoded
    "/%5C%5Cevil",            // `/\\evil` once decoded
    "/a%5Cb",                 // a backslash at any decoding stage
    "/a?b=\\",                // a backslash in the query too
    "/%252F%252Fevil",        // `//evil` after two rounds
    "/%25252F%25252Fevil",    // after three rounds
    "/%2525252525252F",       // still changing after the maximum number of rounds
    "/%2f/evil.example",      // lower-case escape
    "/%0d%0aSet-Cookie:x=1",  // lower-case CR LF
    "/\u{ff0f}evil.example",  // FULLWIDTH SOLIDUS: `//evil.example` after NFKC
    "/\u{ff3c}evil.example",  // FULLWIDTH REVERSE SOLIDUS
    "/%EF%BC%8Fevil.example", // FULLWIDTH SOLIDUS, percent-encoded
    "/\u{2215}evil.example",  // DIVISION SLASH
    "/.//evil.example",       // `//evil.example` once dot segments are removed
    "/a/..//evil.example",    // likewise
    "/%2E%2E//evil.example",  // likewise, encoded
    "/..",
    "/./",
];

/// Ordinary return paths: accepted unchanged.
const ACCEPTED: &[&str] = &[
    "/dashboard?a=1&b=2",
    "/url%20with%20spaces/",
    "/view?p=http://x",
    "/",
    "/a/b#frag",
    "/a//b",
    "/a.b/c..d/.e",
    "/search?q=a+b&r=%2F",
    "/discount-50%25",
    "/caf%C3%A9",
    "/user@home:8080",
];

#[test]
fn next_is_same_origin_relative_path_only() {
    for candidate in REFUSED {
        assert_eq!(safe_next(candidate), None, "{candidate:?} must be refused");
    }
    for candidate in ACCEPTED {
        assert_eq!(
            safe_next(candidate).as_deref(),
            Some(*candidate),
            "{candidate:?} must pass unchanged"
        );
    }
}

#[test]
fn non_ascii_is_percent_encoded() {
    assert_eq!(safe_next("/café").as_deref(), Some("/caf%C3%A9"));
    assert_eq!(
        safe_next("/文件?q=ü").as_deref(),
        Some("/%E6%96%87%E4%BB%B6?q=%C3%BC")
    );
    // Encoding is idempotent: an accepted value is accepted again, unchanged.
    assert_eq!(safe_next("/caf%C3%A9").as_deref(), Some("/caf%C3%A9"));
}

#[test]
fn length_is_capped() {
    let at_cap = format!("/{}", "a".repeat(MAX_NEXT_LEN - 1));
    assert_eq!(safe_next(&at_cap).as_deref(), Some(at_cap.as_str()));
    assert_eq!(safe_next(&format!("/{}", "a".repeat(MAX_NEXT_LEN))), None);
    assert_eq!(safe_next(&format!("/{}", "a".repeat(5000))), None);
    // The cap also holds after encoding: 700 × `é` is 1401 bytes raw, 4201 encoded.
    assert_eq!(safe_next(&format!("/{}", "é".repeat(700))), None);
}

#[test]
fn login_url_encodes_next() {
    assert_eq!(
        login_url("/login", Some("/dashboard")),
        "/login?next=%2Fdashboard"
    );
    assert_eq!(
        login_url("/admin/login", Some("/admin")),
        "/admin/login?next=%2Fadmin"
    );
    assert_eq!(
        login_url("/reauth", Some("/settings")),
        "/reauth?next=%2Fsettings"
    );
    assert_eq!(
        login_url("/login", Some("/a b?x=1&y=2+3#f%")),
        "/login?next=%2Fa%20b%3Fx%3D1%26y%3D2%2B3%23f%25"
    );
    assert_eq!(
        login_url("/login", Some("/café")),
        "/login?next=%2Fcaf%C3%A9"
    );
    assert_eq!(
        login_url("/login?lang=en", Some("/")),
        "/login?lang=en&next=%2F"
    );
    assert_eq!(login_url("/login?", Some("/")), "/login?next=%2F");
    assert_eq!(login_url("/login", None), "/login");
}

#[test]
fn next_from_query_decodes_and_validates() {
    assert_eq!(
        next_from_query(Some("next=%2Fdashboard")).as_deref(),
        Some("/dashboard")
    );
    assert_eq!(
        next_from_query(Some("a=1&next=%2Fx%3Fy%3D1%26z%3D2")).as_deref(),
        Some("/x?y=1&z=2")
    );
    assert_eq!(
        next_from_query(Some("next=/plain")).as_deref(),
        Some("/plain")
    );
    assert_eq!(next_from_query(Some("next=%2F%2Fevil.example")), None);
    assert_eq!(next_from_query(Some("next=%2F%5Cevil.example")), None);
    assert_eq!(
        next_from_query(Some("next=https%3A%2F%2Fevil.example")),
        None
    );
    // `+` is a space in form encoding, and a raw space is refused.
    assert_eq!(next_from_query(Some("next=/a+b")), None);
    // Only the first `next` counts.
    assert_eq!(next_from_query(Some("next=//evil.example&next=/ok")), None);
    assert_eq!(next_from_query(Some("next=")), None);
    assert_eq!(next_from_query(Some("other=/x")), None);
    assert_eq!(next_from_query(Some("")), None);
    assert_eq!(next_from_query(None), None);
}

#[test]
fn login_url_round_trips_through_next_from_query() {
    for path in [
        "/dashboard",
        "/a?b=1&c=2",
        "/url%20with%20spaces/",
        "/search?q=a+b",
    ] {
        let url = login_url("/login", Some(path));
        let query = url.split_once('?').map(|(_, query)| query);
        assert_eq!(next_from_query(query).as_deref(), Some(path), "{url}");
    }
}

/// Strings built from the pieces open-redirect payloads are made of, plus arbitrary text.
fn candidates() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        4 => Just("/".to_owned()),
        2 => Just("\\".to_owned()),
        2 => Just("%2F".to_owned()),
        1 => Just("%2f".to_owned()),
        2 => Just("%5C".to_owned()),
        1 => Just("%25".to_owned()),
        1 => Just("%09".to_owned()),
        1 => Just("%0A".to_owned()),
        1 => Just("%0D".to_owned()),
        1 => Just("%20".to_owned()),
        1 => Just("%2E".to_owned()),
        2 => Just(":".to_owned()),
        1 => Just("@".to_owned()),
        2 => Just(".".to_owned()),
        1 => Just("?".to_owned()),
        1 => Just("#".to_owned()),
        1 => Just("\t".to_owned()),
        1 => Just("http".to_owned()),
        2 => Just("evil.example".to_owned()),
        1 => Just("\u{ff0f}".to_owned()),
        3 => "[a-z0-9]{1,4}",
        3 => any::<char>().prop_map(String::from),
    ];
    (
        prop::bool::weighted(0.7),
        prop::collection::vec(fragment, 0..10),
    )
        .prop_map(|(lead_slash, parts)| {
            let body = parts.concat();
            if lead_slash {
                format!("/{body}")
            } else {
                body
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn accepted_next_stays_on_the_origin(candidate in candidates()) {
        if let Some(next) = safe_next(&candidate) {
            let base = url::Url::parse("http://app.example/").unwrap();
            let joined = base.join(&next);
            prop_assert!(joined.is_ok(), "{candidate:?} → {next:?} does not join");
            prop_assert_eq!(joined.unwrap().origin(), base.origin(), "{:?} → {:?}", candidate, next);
            prop_assert!(http::HeaderValue::from_str(&next).is_ok(), "{:?} → {:?}", candidate, next);
            prop_assert!(next.len() <= MAX_NEXT_LEN);
            prop_assert_eq!(safe_next(&next), Some(next.clone()), "not idempotent");
        }
    }
}

/// Guards the property test against passing vacuously: the strategy must reach both outcomes.
#[test]
fn candidate_strategy_reaches_both_outcomes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = candidates();
    let accepted = (0..2000)
        .filter(|_| {
            let candidate = strategy.new_tree(&mut runner).unwrap().current();
            safe_next(&candidate).is_some()
        })
        .count();
    assert!(
        (200..1800).contains(&accepted),
        "{accepted} of 2000 accepted"
    );
}
