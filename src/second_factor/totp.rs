//! TOTP (RFC 6238) through `totp-rs`: secrets, the enrolment page's QR code (SVG through
//! `qrcode`), and code checks that refuse a replayed time step.

use std::time::{SystemTime, UNIX_EPOCH};

use totp_rs::{Algorithm, Secret, TOTP};

use crate::{Error, Result};

/// Digits of a code.
const DIGITS: usize = 6;
/// Seconds per time step.
const STEP: u64 = 30;
/// Time steps accepted on either side of now (clock drift, a code typed at a step's end).
const SKEW: u8 = 1;

/// TOTP codes as authenticator apps make them: RFC 6238, SHA-1, 6 digits, 30 s steps, one
/// step of skew either way.
///
/// ```
/// use login_manager::Totp;
///
/// let totp = Totp::new("Example");
/// let secret = Totp::generate_secret();
/// let enrolment = totp.enrolment(&secret, "alice").unwrap();
/// assert!(enrolment.url.starts_with("otpauth://totp/Example:alice?"));
/// assert!(enrolment.qr_svg.starts_with("<svg"));
/// // Store `secret` once the user typed a valid code — and the step that code matched, so
/// // that it cannot log in a second time — then, at each login:
/// let accepted = totp.check(&secret, "123456", None).unwrap();
/// assert!(accepted.is_none() || accepted.is_some()); // Some(step) when the code is right
/// ```
#[derive(Debug, Clone)]
pub struct Totp {
    issuer: String,
}

/// What an enrolment page shows: the secret (base32, for typing into an app by hand), the
/// `otpauth://` URL, and that URL as a QR code (an inline SVG element).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// The secret in base32.
    pub secret: String,
    /// `otpauth://totp/<issuer>:<account>?secret=...&issuer=...`.
    pub url: String,
    /// The URL as a QR code: an `<svg>` element, ready to put inline in an HTML page (no
    /// `<?xml ...?>` declaration).
    pub qr_svg: String,
}

impl Totp {
    /// Codes for accounts of `issuer` (the name authenticator apps show).
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
        }
    }

    /// A new random secret (160 bits), base32.
    pub fn generate_secret() -> String {
        Secret::generate_secret().to_encoded().to_string()
    }

    /// The enrolment of `account` with `secret`.
    pub fn enrolment(&self, secret: &str, account: &str) -> Result<TotpEnrolment> {
        let url = self.totp(secret, account)?.get_url();
        let qr = qrcode::QrCode::new(url.as_bytes())
            .map_err(|e| Error::Config(format!("the TOTP URL does not fit a QR code: {e}")))?;
        let document = qr
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        // The element alone: an XML declaration has no place inside HTML.
        let qr_svg = match document.find("<svg") {
            Some(at) => document[at..].to_owned(),
            None => document,
        };
        Ok(TotpEnrolment {
            secret: secret.to_owned(),
            url,
            qr_svg,
        })
    }

    /// Checks `code` against `secret` now: the time step it matched, if it did and that step
    /// is later than `last_used` (store the returned step with the user, and pass it next
    /// time: a code is then accepted once, not for its whole minute; store the step of the
    /// enrolment's code too). Steps fit an `i64` column until the year 292 billion. A
    /// malformed secret is [`Error::Config`].
    pub fn check(&self, secret: &str, code: &str, last_used: Option<u64>) -> Result<Option<u64>> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.check_at(secret, code, last_used, now)
    }

    /// [`check`](Self::check) at `unix_time` (seconds).
    pub fn check_at(
        &self,
        secret: &str,
        code: &str,
        last_used: Option<u64>,
        unix_time: u64,
    ) -> Result<Option<u64>> {
        let totp = self.totp(secret, "")?;
        let code = code.trim();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(None);
        }
        let now_step = unix_time / STEP;
        let steps = now_step.saturating_sub(u64::from(SKEW))..=now_step + u64::from(SKEW);
        // Every candidate is computed and compared (in constant time by totp-rs), so that
        // the time taken does not tell which step matched.
        let mut matched = None;
        for step in steps {
            if totp.check(code, step * STEP) && last_used.is_none_or(|used| step > used) {
                matched = Some(step);
            }
        }
        Ok(matched)
    }

    fn totp(&self, secret: &str, account: &str) -> Result<TOTP> {
        let bytes = Secret::Encoded(secret.to_owned())
            .to_bytes()
            .map_err(|_| Error::Config("the TOTP secret is not base32".to_owned()))?;
        // Skew 0 here: `check_at` walks the steps itself, to know which one matched.
        TOTP::new(
            Algorithm::SHA1,
            DIGITS,
            0,
            STEP,
            bytes,
            Some(self.issuer.clone()),
            account.to_owned(),
        )
        .map_err(|e| Error::Config(format!("invalid TOTP settings: {e}")))
    }
}
