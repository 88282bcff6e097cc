//! Werkzeug's `check_password_hash`, for the methods its current versions write.
//!
//! The salt is used as its UTF-8 bytes (Werkzeug never decodes it) and the digest is compared
//! as lowercase hex, as Werkzeug does, so an uppercase digest does not match there or here.

use subtle::ConstantTimeEq;

/// Werkzeug ≥ 3.1 uses this when `pbkdf2` comes without an iteration count (it always
/// writes one, so only hand-made hashes omit it).
const DEFAULT_PBKDF2_ITERATIONS: u32 = 1_000_000;
/// More than ten times Werkzeug's current default: only a corrupted or planted hash asks
/// for this, and honouring it would hold a blocking thread for seconds.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Werkzeug's default scrypt parameters, used for a bare `scrypt`.
const DEFAULT_SCRYPT: (u64, u32, u32) = (1 << 15, 8, 1);
/// Largest scrypt buffer (`128 · n · r` or `128 · r · p` bytes) accepted: 8 × the default.
const MAX_SCRYPT_MEMORY: u64 = 256 * 1024 * 1024;
/// Largest scrypt work (`n · r · p`) accepted: 64 × the default.
const MAX_SCRYPT_WORK: u64 = 1 << 24;
/// `hashlib.scrypt`'s default output length, which Werkzeug keeps.
const SCRYPT_LEN: usize = 64;

#[derive(Clone, Copy)]
pub(crate) enum Digest {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    /// hashlib names, which it matches case-insensitively.
    fn from_name(name: &str) -> Option<Self> {
        [
            ("sha1", Self::Sha1),
            ("sha224", Self::Sha224),
            ("sha256", Self::Sha256),
            ("sha384", Self::Sha384),
            ("sha512", Self::Sha512),
        ]
        .into_iter()
        .find_map(|(known, digest)| name.eq_ignore_ascii_case(known).then_some(digest))
    }

    pub(crate) fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha224 => 28,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// PBKDF2-HMAC with hashlib's default output length, the digest size.
    fn pbkdf2(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        use pbkdf2::pbkdf2_hmac;
        let mut out = vec![0; self.output_len()];
        match self {
            Self::Sha1 => pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut out),
            Self::Sha224 => pbkdf2_hmac::<sha2::Sha224>(password, salt, iterations, &mut out),
            Self::Sha256 => pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out),
            Self::Sha384 => pbkdf2_hmac::<sha2::Sha384>(password, salt, iterations, &mut out),
            Self::Sha512 => pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, &mut out),
        }
        out
    }
}

pub(crate) enum Kdf {
    Pbkdf2 { digest: Digest, iterations: u32 },
    Scrypt(scrypt::Params),
}

/// A parsed `method$salt$hexdigest`.
pub(crate) struct Hash<'a> {
    pub(crate) kdf: Kdf,
    pub(crate) salt: &'a str,
    pub(crate) hex_digest: &'a str,
}

impl<'a> Hash<'a> {
    /// Parses a stored hash, refusing parameters that would hang or exhaust memory.
    pub(crate) fn parse(stored: &'a str) -> Result<Self, &'static str> {
        let mut parts = stored.splitn(3, '$');
        let (Some(method), Some(salt), Some(hex_digest)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err("Werkzeug hash without `$salt$digest`");
        };
        let mut args = method.split(':');
        let kdf = match args.next() {
            Some("pbkdf2") => parse_pbkdf2(&args.collect::<Vec<_>>())?,
            Some("scrypt") => parse_scrypt(&args.collect::<Vec<_>>())?,
            _ => return Err("unknown Werkzeug method"),
        };
        Ok(Self {
            kdf,
            salt,
            hex_digest,
        })
    }

    /// Runs the key derivation and compares the digests in constant time.
    pub(super) fn matches(&self, password: &[u8]) -> Result<bool, &'static str> {
        let salt = self.salt.as_bytes();
        let digest = match &self.kdf {
            Kdf::Pbkdf2 { digest, iterations } => digest.pbkdf2(password, salt, *iterations),
            Kdf::Scrypt(params) => {
                let mut out = vec![0; SCRYPT_LEN];
                scrypt::scrypt(password, salt, params, &mut out)
                    .map_err(|_| "scrypt refused the output length")?;
                out
            }
        };
        Ok(hex::encode(digest)
            .as_bytes()
            .ct_eq(self.hex_digest.as_bytes())
            .into())
    }
}

fn parse_pbkdf2(args: &[&str]) -> Result<Kdf, &'static str> {
    let (name, iterations) = match args {
        [] => ("sha256", DEFAULT_PBKDF2_ITERATIONS),
        [name] => (*name, DEFAULT_PBKDF2_ITERATIONS),
        [name, iterations] => (*name, parse_number(iterations)?),
        _ => return Err("pbkdf2 takes at most 2 arguments"),
    };
    let digest = Digest::from_name(name).ok_or("unsupported pbkdf2 digest")?;
    if !(1..=MAX_PBKDF2_ITERATIONS).contains(&iterations) {
        return Err("pbkdf2 iteration count out of range");
    }
    Ok(Kdf::Pbkdf2 { digest, iterations })
}

fn parse_scrypt(args: &[&str]) -> Result<Kdf, &'static str> {
    let (n, r, p) = match args {
        [] => DEFAULT_SCRYPT,
        [n, r, p] => (parse_number(n)?, parse_number(r)?, parse_number(p)?),
        _ => return Err("scrypt takes 3 arguments"),
    };
    if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 {
        return Err("scrypt n must be a power of two above 1, r and p positive");
    }
    let (r64, p64) = (u64::from(r), u64::from(p));
    let too_big = |product: Option<u64>, max: u64| product.is_none_or(|v| v > max);
    if too_big(
        n.checked_mul(r64).and_then(|v| v.checked_mul(128)),
        MAX_SCRYPT_MEMORY,
    ) || too_big(
        r64.checked_mul(p64).and_then(|v| v.checked_mul(128)),
        MAX_SCRYPT_MEMORY,
    ) || too_big(
        n.checked_mul(r64).and_then(|v| v.checked_mul(p64)),
        MAX_SCRYPT_WORK,
    ) {
        return Err("scrypt parameters exceed the limits for stored hashes");
    }
    // n is a power of two below 2^24 here, so its log fits a u8.
    let log_n = n.trailing_zeros() as u8;
    scrypt::Params::new(log_n, r, p, SCRYPT_LEN)
        .map(Kdf::Scrypt)
        .map_err(|_| "invalid scrypt parameters")
}

/// A plain decimal, as Werkzeug writes them.
fn parse_number<T: std::str::FromStr>(text: &str) -> Result<T, &'static str> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Werkzeug parameter is not a decimal number");
    }
    text.parse().map_err(|_| "Werkzeug parameter out of range")
}
