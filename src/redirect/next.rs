//! The `next` validator and login-URL builder; the rules are documented on [`safe_next`].

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The longest `next` accepted, in bytes (before and after encoding).
///
/// Longer values are refused rather than truncated: a cut path is a different path.
pub const MAX_NEXT_LEN: usize = 2048;

/// How many rounds of percent-decoding are checked.
///
/// A value that still changes after this many rounds is refused: no real path is encoded four
/// times over, but an attack that hopes some layer decodes "one more time" is.
pub const MAX_DECODE_ROUNDS: usize = 4;

/// Characters that look like `/` or `\`, and that NFKC normalisation (IDNA, some frameworks)
/// may turn into one. A real return path never contains them.
const SLASH_LOOKALIKES: [char; 7] = [
    '\u{FF0F}', // FULLWIDTH SOLIDUS, NFKC → '/'
    '\u{FF3C}', // FULLWIDTH REVERSE SOLIDUS, NFKC → '\'
    '\u{FE68}', // SMALL REVERSE SOLIDUS, NFKC → '\'
    '\u{2215}', // DIVISION SLASH
    '\u{2044}', // FRACTION SLASH
    '\u{29F8}', // BIG SOLIDUS
    '\u{29F9}', // BIG REVERSE SOLIDUS
];

/// What [`login_url`] percent-encodes in the `next` value: everything but the RFC 3986
/// unreserved characters, so `/`, `?`, `&`, `=`, `#`, `%`, `+` and space are all encoded
/// and the value survives form-urlencoded decoding intact.
const NEXT_PARAM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What [`safe_next`] percent-encodes in an accepted value: only non-ASCII bytes (the checks
/// have already refused controls and whitespace), so visible ASCII is returned unchanged.
const NON_ASCII: &AsciiSet = percent_encoding::CONTROLS;

/// Validates a `next` candidate, the return address after a login: `Some` only for a
/// same-origin relative path.
///
/// A login page that redirects to a `next` taken from the query string or a form field is an
/// open redirect unless `next` is checked: `/login?next=//evil.example` would send a freshly
/// logged-in user to a phishing copy of the site (OWASP, *Unvalidated Redirects and Forwards
/// Cheat Sheet*; CWE-601). Blocklists of "bad hosts" do not work, because browsers accept many
/// spellings of an absolute URL: `//host`, `/\host`, `\\host`, `https:host`, `http:/\host`,
/// tabs and newlines inside the scheme (`java%0Ascript:`), and so on. So this function accepts
/// exactly one shape, a *same-origin relative path*, and refuses everything else.
///
/// # Rules
///
/// A candidate is accepted only when all of these hold:
///
/// - it is not empty and at most 2048 bytes long, before and after the encoding below (longer
///   values are refused rather than truncated: a cut path is a different path);
/// - it starts with exactly one `/`: the second character is neither `/` nor `\`, so the
///   browser cannot read it as a scheme-relative URL (`//host`); and since the first character
///   is `/`, it cannot carry a scheme (`https:`, `javascript:`) either;
/// - it contains no backslash anywhere (browsers treat `\` as `/` in http(s) URLs);
/// - it contains no control character (C0, DEL, C1) and no whitespace at all, raw;
/// - it contains none of the Unicode slash look-alikes (`／`, `＼`, `﹨`, `∕`, `⁄`, `⧸`, `⧹`),
///   which NFKC-normalising back ends turn into `/` or `\`;
/// - no `.` or `..` path segment, because removing dot segments can turn `/a/..//host` into
///   `//host` in whatever normalises the path next;
/// - the same checks hold after each round of percent-decoding (up to 4 rounds, until the
///   value is stable), so that `/%2F/evil.example`, `/%252F%252Fevil`, `/%5Cevil` and
///   `/%09/evil` are refused even if some proxy or framework decodes the value again. A value
///   that still changes after four rounds is refused: no real path is encoded four times over,
///   but an attack that hopes some layer decodes "one more time" is. One exception: a
///   percent-encoded space (`%20`) is fine, since it cannot change how a URL is parsed; raw
///   whitespace is never accepted.
///
/// The result is the candidate itself when it is visible ASCII, otherwise the candidate with
/// its non-ASCII characters percent-encoded (`/café` → `/caf%C3%A9`): it is always a valid
/// [`http::HeaderValue`] and can never inject a header line into a `Location` (axum's
/// `Redirect::to` panics on an invalid header value).
///
/// [`AuthSession::next_or`](crate::AuthSession::next_or) applies these rules to the `next`
/// parameter of the query string, read form-urlencoded (`+` is a space, `%XX` an escaped byte)
/// as browsers submit forms and as [`login_url`] writes it. Only the first `next` parameter
/// counts: if it is refused, the default is used even when a later one would pass, so that
/// duplicated parameters cannot be used to confuse this check and another reader. A `next`
/// posted in a form field is the app's to check with this function.
///
/// # Examples
///
/// ```
/// use login_manager::safe_next;
///
/// assert_eq!(safe_next("/dashboard?tab=2").as_deref(), Some("/dashboard?tab=2"));
/// assert_eq!(safe_next("/café").as_deref(), Some("/caf%C3%A9"));
///
/// assert_eq!(safe_next("//evil.example"), None);
/// assert_eq!(safe_next("/\\evil.example"), None);
/// assert_eq!(safe_next("/%2F/evil.example"), None);
/// assert_eq!(safe_next("https://evil.example"), None);
/// assert_eq!(safe_next("/x\r\nSet-Cookie: a=b"), None);
/// ```
pub fn safe_next(candidate: &str) -> Option<String> {
    if candidate.is_empty() || candidate.len() > MAX_NEXT_LEN {
        return None;
    }
    // Raw: no whitespace at all (a raw space is as suspicious as a tab here), and the same
    // structural checks as every decoded stage.
    if candidate.chars().any(char::is_whitespace) || !stage_is_safe(candidate.as_bytes()) {
        return None;
    }
    // Decoded stages: whatever decodes this value again (a proxy, a framework, the app) must
    // still see a same-origin path.
    let mut stage = candidate.as_bytes().to_vec();
    let mut stable = false;
    for _ in 0..MAX_DECODE_ROUNDS {
        let decoded: Vec<u8> = percent_decode(&stage).collect();
        if decoded == stage {
            stable = true;
            break;
        }
        if !stage_is_safe(&decoded) || has_decoded_whitespace(&decoded) {
            return None;
        }
        stage = decoded;
    }
    if !stable {
        return None;
    }

    let encoded = utf8_percent_encode(candidate, NON_ASCII).to_string();
    (encoded.len() <= MAX_NEXT_LEN).then_some(encoded)
}

/// Builds the URL of the login view carrying the return address: `login_view?next=<next>`.
///
/// `next` is the path and query of the page the user asked for (never a full URL: build it
/// from the request's path and query only). It is percent-encoded completely, so `/` becomes
/// `%2F` and a query inside it stays one parameter. If `login_view` already has a query, `next`
/// is appended with `&`. With `next` `None` the login view is returned alone.
///
/// This is how the guards send an anonymous visitor to the login view. The login handler reads
/// the value back with [`AuthSession::next_or`](crate::AuthSession::next_or), which validates
/// it with [`safe_next`]: a `next` that someone else wrote into a login link cannot lead to
/// another site.
///
/// # Examples
///
/// ```
/// use login_manager::login_url;
///
/// assert_eq!(login_url("/login", Some("/dashboard")), "/login?next=%2Fdashboard");
/// assert_eq!(login_url("/login", Some("/a?b=1&c=2")), "/login?next=%2Fa%3Fb%3D1%26c%3D2");
/// assert_eq!(login_url("/login?lang=en", Some("/")), "/login?lang=en&next=%2F");
/// assert_eq!(login_url("/login", None), "/login");
/// ```
pub fn login_url(login_view: &str, next: Option<&str>) -> String {
    let Some(next) = next else {
        return login_view.to_owned();
    };
    let separator = if !login_view.contains('?') {
        "?"
    } else if login_view.ends_with(['?', '&']) {
        // `/login?` or `/login?a=1&`: the view already ends where a parameter can start.
        ""
    } else {
        "&"
    };
    format!(
        "{login_view}{separator}next={}",
        utf8_percent_encode(next, NEXT_PARAM)
    )
}

/// Reads the `next` parameter from a raw query string and validates it with [`safe_next`].
///
/// The query is form-urlencoded (`+` is a space, `%XX` an escaped byte), the way browsers
/// submit forms and the way [`login_url`] writes it. Only the first `next` parameter is
/// considered: if it is refused, the result is `None` even if a later one would pass, so that
/// duplicated parameters cannot be used to confuse this check and another reader
/// (`tests/next.rs`). Apps read it through [`AuthSession::next_or`](crate::AuthSession::next_or).
pub fn next_from_query(query: Option<&str>) -> Option<String> {
    let (_, value) =
        form_urlencoded::parse(query?.as_bytes()).find(|(key, _)| key.as_ref() == "next")?;
    safe_next(&value)
}

/// The checks shared by the raw value and every decoded stage.
fn stage_is_safe(bytes: &[u8]) -> bool {
    // Exactly one leading slash: `//host` is scheme-relative. A backslash is refused below
    // anywhere, which also covers `/\host`.
    if bytes.first() != Some(&b'/') || bytes.get(1) == Some(&b'/') {
        return false;
    }
    // A decoded stage need not be UTF-8; invalid sequences become U+FFFD, which is harmless,
    // while C1 controls are only seen as such when decoded as UTF-8.
    let text = String::from_utf8_lossy(bytes);
    if text
        .chars()
        .any(|c| c == '\\' || c.is_control() || SLASH_LOOKALIKES.contains(&c))
    {
        return false;
    }
    let path = text.split(['?', '#']).next().unwrap_or_default();
    !path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// Whitespace in a decoded stage, except the plain space: `%20` is a normal part of paths and
/// cannot change how a URL is parsed, while tabs and newlines are stripped by URL parsers and
/// the other Unicode spaces have no business in a return path.
fn has_decoded_whitespace(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes)
        .chars()
        .any(|c| c.is_whitespace() && c != ' ')
}
