//! Mail for account recovery (#18, feature `mail`): the library's reset message through the
//! app's choice of transport.
#![cfg(feature = "mail")]

use std::time::Duration;

use login_manager::{password_reset_mail, Error, Outbox};

/// A real link is longer than a mail line: the body becomes quoted-printable.
const LINK: &str = "http://127.0.0.1:3000/password/reset?token=\
    q1w2e3r4t5y6u7i8o9p0aa.ASDFGHJKLqwertyuiopzxcvbnmQWERTYUIOPasdfghjkl1234567";

#[tokio::test]
async fn a_reset_mail_lands_as_one_eml_file_with_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::files(dir.path());
    let mail = password_reset_mail(
        "Demo <no-reply@example.com>",
        "alice@example.com",
        LINK,
        Duration::from_secs(30 * 60),
    )
    .unwrap();
    outbox.send(mail).await.unwrap();

    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].extension().unwrap(), "eml");
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        raw.contains("Content-Transfer-Encoding: quoted-printable"),
        "{raw}"
    );
    let eml = decode_quoted_printable(&raw);
    assert!(eml.contains("To: alice@example.com"), "{eml}");
    assert!(eml.contains("Subject: Reset your password"), "{eml}");
    assert!(eml.contains("within 30 minutes"), "{eml}");
    assert!(eml.contains("Message-ID: <"), "{eml}");
    assert!(
        eml.contains(LINK),
        "the link is in the mail verbatim: {eml}"
    );
}

#[tokio::test]
async fn the_mail_spells_out_how_long_the_link_lives_and_the_outbox_makes_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::files(dir.path().join("new").join("mail"));
    for (valid_for, words) in [
        (60, "within 1 minute:"),
        (45, "within 45 seconds:"),
        (7200, "within 2 hours:"),
        (90, "within 90 seconds:"),
    ] {
        let mail = password_reset_mail(
            "a@example.com",
            "b@example.com",
            "/r",
            Duration::from_secs(valid_for),
        )
        .unwrap();
        let text = String::from_utf8(mail.formatted()).unwrap();
        assert!(text.contains(words), "{valid_for}: {text}");
        outbox.send(mail).await.unwrap();
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("new").join("mail"))
            .unwrap()
            .count(),
        4
    );
}

#[tokio::test]
async fn bad_addresses_and_urls_are_configuration_errors() {
    for (from, to) in [
        ("no-reply@example.com", "not an address"),
        ("", "alice@example.com"),
        ("a@example.com", "alice@example.com\r\nBcc: eve@example.com"),
    ] {
        let err = password_reset_mail(from, to, LINK, Duration::from_secs(60)).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{from:?} {to:?}: {err}");
    }
    let err = Outbox::smtp("http://not-smtp").unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(
        !err.to_string().contains("not-smtp"),
        "the URL is not echoed"
    );
}

#[tokio::test]
async fn an_unreachable_transport_is_a_503_not_a_panic() {
    let mail = || {
        password_reset_mail(
            "a@example.com",
            "b@example.com",
            LINK,
            Duration::from_secs(90),
        )
        .unwrap()
    };
    // A directory that cannot be created (under a file).
    let file = tempfile::NamedTempFile::new().unwrap();
    let missing = Outbox::files(file.path().join("mail"));
    let err = missing.send(mail()).await.unwrap_err();
    assert!(matches!(err, Error::Mail(_)), "{err}");
    assert_eq!(err.status(), 503);

    // Port 9 (discard) is closed on this machine: the connection is refused at once.
    let closed = Outbox::smtp("smtp://127.0.0.1:9").unwrap();
    let err = closed.send(mail()).await.unwrap_err();
    assert!(matches!(err, Error::Mail(_)), "{err}");
}

/// Enough of RFC 2045 quoted-printable for ASCII mail: soft line breaks and `=XX` escapes.
fn decode_quoted_printable(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::new();
    let mut rest = joined.as_str();
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let hex = rest.get(at + 1..at + 3).unwrap_or("");
        match u8::from_str_radix(hex, 16) {
            Ok(byte) => {
                out.push(byte as char);
                rest = &rest[at + 3..];
            }
            Err(_) => {
                out.push('=');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}
