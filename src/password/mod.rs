//! Password hashing and verification: argon2id, off the async executor, bounded. Documented on
//! [`PasswordHasher`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::{self, Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;

use pool::{Full, Job, Pool};

use crate::{Error, Result};

/// OWASP's first argon2id recommendation: 19 MiB, 2 passes, 1 lane. The explicit output length
/// makes it compare equal to the parameters parsed from a hash it produced.
const OWASP_PARAMS: Params = match Params::new(19 * 1024, 2, 1, Some(Params::DEFAULT_OUTPUT_LEN)) {
    Ok(params) => params,
    Err(_) => panic!("the OWASP argon2id parameters are valid"),
};
/// Default maximum password length, in bytes.
const DEFAULT_MAX_PASSWORD_LEN: usize = 1024;
/// The default of [`PasswordHasher::max_queued`] per hashing thread: about two seconds of work
/// at the default parameters.
const QUEUED_PER_THREAD: usize = 64;
/// A bound on [`PasswordHasher::max_concurrent`]: threads are real OS threads.
const MAX_THREADS: usize = 1024;
/// How long a caller waits for its computation before [`Error::Overloaded`].
const MAX_WAIT: Duration = Duration::from_secs(30);
/// The `Retry-After` of [`Error::Overloaded`]: the queue drains in about that time.
const RETRY_WHEN_OVERLOADED: Duration = Duration::from_secs(1);

/// Largest argon2 memory cost accepted from a stored hash, in KiB (2 GiB, RFC 9106's first
/// recommendation), unless the configured cost is larger. A corrupted or planted row must not
/// make a login allocate without limit.
const MAX_STORED_ARGON2_M_KIB: u64 = 2 * 1024 * 1024;
/// Largest argon2 memory × passes accepted from a stored hash, in KiB (8 GiB of block writes,
/// a few seconds), unless the configured product is larger.
const MAX_STORED_ARGON2_WORK: u64 = 8 * 1024 * 1024;

/// The result of checking a password against a stored hash.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> login_manager::Result<()> {
/// use login_manager::PasswordHasher;
///
/// // A hash stored before the parameters were raised.
/// let stored = PasswordHasher::new().with_params(12_288, 3, 1)?.hash("hunter2").await?;
///
/// let hasher = PasswordHasher::new();
/// let verified = hasher.verify("hunter2", &stored).await?;
/// # assert!(verified.valid && verified.needs_rehash);
/// if verified.valid && verified.needs_rehash {
///     let upgraded = hasher.hash("hunter2").await?;
///     // ... store `upgraded` in place of `stored`
/// #   assert!(!hasher.verify("hunter2", &upgraded).await?.needs_rehash);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The password matches the stored hash.
    pub valid: bool,
    /// The password is valid but the stored hash uses another algorithm, version or parameters
    /// than the hasher's configuration: hash the password again and store the new hash.
    /// Always false when `valid` is false.
    pub needs_rehash: bool,
}

impl Verified {
    const INVALID: Verified = Verified {
        valid: false,
        needs_rehash: false,
    };
}

/// Hashes and verifies passwords with argon2id, on a few low-priority threads of its own.
///
/// `PasswordHasher` exists so that the safe way to check a password is also the easy way:
///
/// - **No executor stalls, calm under a login storm.** An argon2id computation with the
///   default parameters takes tens of milliseconds of CPU. Run inline in a handler it would
///   block a Tokio worker thread and every request queued behind it. Here it runs on
///   [`max_concurrent`](Self::max_concurrent) threads of the hasher's own at the lowest
///   priority (`SCHED_IDLE` on Linux), so that the OS runs request threads first: during a
///   storm of logins, other pages stay fast and the logins share what is left.
/// - **Bounded memory, bounded waits.** Each thread keeps one argon2 memory (about 19 MiB by
///   default) and reuses it, so memory is `max_concurrent × m_cost`, however many logins
///   arrive. At most [`max_queued`](Self::max_queued) computations wait for a thread; past
///   that, the answer is an immediate [`Error::Overloaded`] (503 with `Retry-After`), never an
///   ever longer wait (nor one past 30 seconds, when the machine is saturated by work of
///   higher priority). A computation whose caller gave up before a thread was free (a
///   dropped request) is skipped; one that started runs to its end on its thread, so it
///   cannot overrun the bound.
/// - **Bounded input.** argon2 accepts passwords of up to 4 GiB, and axum's default body limit
///   is 2 MB. Passwords longer than [`max_password_len`](Self::max_password_len) are never
///   hashed: [`hash`](Self::hash) refuses a new one with [`Error::PasswordTooLong`], and
///   verification answers an over-long one as an invalid [`Verified`] — the one answer every
///   wrong password gets, never an `Err` that an app's `?` would turn into a status of its own
///   (DESIGN.md invariant 10).
/// - **Enumeration resistance.** [`verify_user`](Self::verify_user) takes the stored hash as an
///   `Option`: for an unknown user it performs the same argon2id computation against a dummy,
///   so the response time and the answer are the same as for a wrong password. An unusable
///   stored hash (malformed, unsupported, absurd parameters) costs the same too.
/// - **Rehash on login.** [`Verified::needs_rehash`] says when a correct password was stored
///   under another algorithm or other parameters than the configured ones: hash it again and
///   store the new hash while the plaintext is at hand. Raising the parameters later thus
///   upgrades every active account without a forced reset.
/// - **Flask migration.** With the `werkzeug` feature, [`verify`](Self::verify) also accepts
///   the hashes of Werkzeug's `generate_password_hash` (`pbkdf2:…` and `scrypt:…`), the ones a
///   Flask-Login app usually stores. They always report `needs_rehash`, so users move to
///   argon2id as they log in.
///
/// Hashes are stored as [PHC strings](https://github.com/P-H-C/phc-string-format), e.g.
/// `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
///
/// Cloning is cheap and clones share the same permits and counters: build one hasher at start-up
/// and put it in the application state. Its methods must be called from within a Tokio runtime.
///
/// Each builder method returns a new hasher with its own permits and counters.
///
/// # Examples
///
/// ```
/// use login_manager::PasswordHasher;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> login_manager::Result<()> {
/// let hasher = PasswordHasher::new();
/// let phc = hasher.hash("correct horse battery staple").await?;
/// assert!(hasher.verify("correct horse battery staple", &phc).await?.valid);
/// assert!(!hasher.verify("Tr0ub4dor&3", &phc).await?.valid);
/// # Ok(())
/// # }
/// ```
///
/// With other parameters and limits:
///
/// ```
/// use login_manager::PasswordHasher;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> login_manager::Result<()> {
/// let hasher = PasswordHasher::new()
///     .with_params(47_104, 1, 1)? // another OWASP setting: 46 MiB, one pass
///     .max_password_len(256)
///     .max_concurrent(4);
/// let phc = hasher.hash("s3cret passphrase").await?;
/// assert!(phc.starts_with("$argon2id$v=19$m=47104,t=1,p=1$"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Config {
    /// Always with an explicit output length, so that it compares equal to the parameters
    /// parsed from a hash this configuration produced.
    params: Params,
    max_password_len: usize,
    max_concurrent: usize,
    /// `None`: [`QUEUED_PER_THREAD`] per thread, however many threads are set.
    max_queued: Option<usize>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    /// Started at the first computation, with the final configuration: a hasher that is only
    /// configured (or never used) costs no threads.
    pool: OnceLock<Pool>,
    // Counted always (two relaxed atomics next to an argon2 run); read only by the
    // `__private` hooks.
    #[cfg_attr(not(feature = "__private"), allow(dead_code))]
    computations: AtomicU64,
    running: AtomicUsize,
    #[cfg_attr(not(feature = "__private"), allow(dead_code))]
    peak: AtomicUsize,
    /// Salt of the dummy verification; any value gives the same cost.
    dummy_salt: [u8; 16],
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl PasswordHasher {
    /// A hasher with OWASP's argon2id parameters (m = 19456 KiB, t = 2, p = 1), a maximum
    /// password length of 1024 bytes and as many concurrent computations as the machine has
    /// CPUs ([`std::thread::available_parallelism`]).
    ///
    /// ```
    /// let hasher = login_manager::PasswordHasher::new();
    /// ```
    pub fn new() -> Self {
        let max_concurrent = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::from_config(Config {
            params: OWASP_PARAMS,
            max_password_len: DEFAULT_MAX_PASSWORD_LEN,
            max_concurrent,
            max_queued: None,
        })
    }

    fn from_config(config: Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool: OnceLock::new(),
                config,
                computations: AtomicU64::new(0),
                running: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                dummy_salt: rand::random(),
            }),
        }
    }

    fn reconfigure(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.inner.config.clone();
        change(&mut config);
        Self::from_config(config)
    }

    /// Sets the argon2id parameters: memory cost in KiB, number of passes and degree of
    /// parallelism.
    ///
    /// New hashes use them; stored hashes made with other parameters still verify, and report
    /// [`Verified::needs_rehash`].
    ///
    /// # Errors
    ///
    /// [`Error::PasswordHash`] if argon2 rejects the parameters (for example `m_kib < 8 * p` or
    /// `t == 0`).
    ///
    /// ```
    /// # fn main() -> login_manager::Result<()> {
    /// let hasher = login_manager::PasswordHasher::new().with_params(12_288, 3, 1)?;
    /// assert!(login_manager::PasswordHasher::new().with_params(8, 0, 1).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_params(self, m_kib: u32, t: u32, p: u32) -> Result<Self> {
        let params = Params::new(m_kib, t, p, Some(Params::DEFAULT_OUTPUT_LEN))
            .map_err(|e| Error::PasswordHash(format!("invalid argon2 parameters: {e}")))?;
        Ok(self.reconfigure(|config| config.params = params))
    }

    /// Sets the maximum password length in bytes (UTF-8), 1024 by default. Longer passwords are
    /// never hashed: [`hash`](Self::hash) refuses them with [`Error::PasswordTooLong`], and
    /// [`verify`](Self::verify) / [`verify_user`](Self::verify_user) answer them as not valid.
    ///
    /// ```
    /// let hasher = login_manager::PasswordHasher::new().max_password_len(128);
    /// ```
    pub fn max_password_len(self, bytes: usize) -> Self {
        self.reconfigure(|config| config.max_password_len = bytes)
    }

    /// Sets how many hash computations may run at once; the others wait for a permit. Memory
    /// use is bounded by this number times the memory cost. Defaults to the number of CPUs;
    /// 0 is taken as 1.
    ///
    /// ```
    /// let hasher = login_manager::PasswordHasher::new().max_concurrent(2);
    /// ```
    pub fn max_concurrent(self, threads: usize) -> Self {
        self.reconfigure(|config| config.max_concurrent = threads.clamp(1, MAX_THREADS))
    }

    /// Sets how many computations may wait for a hashing thread (default 64 per thread, about
    /// two seconds of work at the default parameters). Past it, [`hash`](Self::hash),
    /// [`verify`](Self::verify) and [`verify_user`](Self::verify_user) answer at once with
    /// [`Error::Overloaded`] (a 503 with `Retry-After`) instead of making the request wait
    /// longer and longer during a login storm. 0 is taken as 1.
    ///
    /// ```
    /// let hasher = login_manager::PasswordHasher::new().max_queued(16);
    /// ```
    pub fn max_queued(self, jobs: usize) -> Self {
        self.reconfigure(|config| config.max_queued = Some(jobs.max(1)))
    }

    /// Hashes a password with argon2id and a random salt, returning a PHC string to store.
    ///
    /// # Errors
    ///
    /// [`Error::PasswordTooLong`] if the password exceeds the maximum length;
    /// [`Error::PasswordHash`] if hashing fails.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> login_manager::Result<()> {
    /// let hasher = login_manager::PasswordHasher::new();
    /// let phc = hasher.hash("hunter2").await?;
    /// assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn hash(&self, password: &str) -> Result<String> {
        self.check_len(password)?;
        let password = password.to_owned();
        self.compute(move |inner, memory| inner.hash(password.as_bytes(), memory))
            .await?
    }

    /// Checks a password against a stored hash.
    ///
    /// Accepts argon2id, argon2i and argon2d PHC strings and, with the `werkzeug` feature,
    /// Werkzeug's `pbkdf2:…` and `scrypt:…` hashes. A stored hash that cannot be used
    /// (malformed, unsupported, or with parameters too costly to be genuine) is logged with
    /// `tracing::warn!` and treated as not matching, after the same work as a real check.
    ///
    /// A wrong password is not an error: it is `Ok` with `valid: false`, and so is a password
    /// over [`max_password_len`](Self::max_password_len), answered without hashing.
    ///
    /// # Errors
    ///
    /// [`Error::PasswordHash`] if the blocking task fails.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> login_manager::Result<()> {
    /// let hasher = login_manager::PasswordHasher::new();
    /// let phc = hasher.hash("hunter2").await?;
    /// let verified = hasher.verify("hunter2", &phc).await?;
    /// assert!(verified.valid && !verified.needs_rehash);
    /// assert!(!hasher.verify("hunter3", &phc).await?.valid);
    /// assert!(!hasher.verify("hunter2", "not a hash").await?.valid);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn verify(&self, password: &str, phc: &str) -> Result<Verified> {
        if self.is_too_long(password) {
            return Ok(Verified::INVALID);
        }
        let (password, stored) = (password.to_owned(), phc.to_owned());
        self.compute(move |inner, memory| inner.verify(password.as_bytes(), &stored, memory))
            .await
    }

    /// Checks a login attempt whose account may not exist, without revealing whether it does.
    ///
    /// Pass the stored hash of the user found by the login form's identifier, or `None` when
    /// there is no such user or it has no password. With `None`, the hasher performs the same
    /// argon2id computation as for a wrong password and answers `valid: false`, so that
    /// neither the response nor its timing tells an attacker which accounts exist.
    ///
    /// # Errors
    ///
    /// As for [`verify`](Self::verify).
    ///
    /// ```
    /// # struct User { password_hash: String }
    /// # async fn find_user(_: &str) -> Option<User> { None }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> login_manager::Result<()> {
    /// # let hasher = login_manager::PasswordHasher::new();
    /// let user = find_user("nobody@example.com").await;
    /// let stored = user.as_ref().map(|u| u.password_hash.as_str());
    /// let verified = hasher.verify_user("hunter2", stored).await?;
    /// if !verified.valid {
    ///     // The same answer, after the same work, whether the account exists or not:
    ///     // "Invalid email or password."
    /// }
    /// # assert!(!verified.valid);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn verify_user(&self, password: &str, stored: Option<&str>) -> Result<Verified> {
        match stored {
            Some(phc) => self.verify(password, phc).await,
            None if self.is_too_long(password) => Ok(Verified::INVALID),
            None => {
                let password = password.to_owned();
                self.compute(move |inner, memory| {
                    inner.dummy_verify(password.as_bytes(), memory);
                    Verified::INVALID
                })
                .await
            }
        }
    }

    /// How many hash computations this hasher (and its clones) has run: hashes, verifications,
    /// and the dummy verifications for unknown users and unusable stored hashes. Every
    /// [`hash`](Self::hash), [`verify`](Self::verify) or [`verify_user`](Self::verify_user)
    /// that does not fail early adds exactly one, which lets tests check the enumeration
    /// resistance by counting rather than timing.
    #[cfg(feature = "__private")]
    #[doc(hidden)] // a hook for this repository's tests and benchmarks
    pub fn hash_count(&self) -> u64 {
        self.inner.computations.load(Ordering::Relaxed)
    }

    /// The largest number of hash computations seen running at the same time, which never
    /// exceeds [`max_concurrent`](Self::max_concurrent).
    #[cfg(feature = "__private")]
    #[doc(hidden)] // a hook for this repository's tests and benchmarks
    pub fn peak_concurrency(&self) -> usize {
        self.inner.peak.load(Ordering::SeqCst)
    }

    fn is_too_long(&self, password: &str) -> bool {
        password.len() > self.inner.config.max_password_len
    }

    fn check_len(&self, password: &str) -> Result<()> {
        if self.is_too_long(password) {
            let max = self.inner.config.max_password_len;
            return Err(Error::PasswordTooLong { max });
        }
        Ok(())
    }

    /// Runs one hash computation on the hasher's threads, or refuses it at once when the
    /// queue is full.
    async fn compute<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner, &mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let inner = Arc::clone(&self.inner);
        let job: Job = Box::new(move |memory| {
            if done.is_closed() {
                return; // the caller gave up before a thread was free: no one needs it
            }
            inner.computations.fetch_add(1, Ordering::Relaxed);
            let now = inner.running.fetch_add(1, Ordering::SeqCst) + 1;
            inner.peak.fetch_max(now, Ordering::SeqCst);
            let _running = Running(&inner.running);
            // The caller may have stopped waiting (request cancelled): nothing to tell then.
            let _ = done.send(work(&inner, memory));
        });
        self.inner
            .pool()
            .submit(job)
            .map_err(|Full| Error::Overloaded {
                retry_after: RETRY_WHEN_OVERLOADED,
            })?;
        match tokio::time::timeout(MAX_WAIT, result).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(Error::PasswordHash("the hashing task failed".to_owned())),
            // The hashing threads only get the CPU the rest of the machine leaves: when it is
            // saturated for this long, refuse like a full queue.
            Err(_) => Err(Error::Overloaded {
                retry_after: RETRY_WHEN_OVERLOADED,
            }),
        }
    }
}

/// Decrements the running count even if the computation panics.
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Inner {
    fn pool(&self) -> &Pool {
        self.pool.get_or_init(|| {
            let threads = self.config.max_concurrent;
            let queued = self.config.max_queued;
            Pool::start(threads, queued.unwrap_or(QUEUED_PER_THREAD * threads))
        })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            self.config.params.clone(),
        )
    }

    /// A new argon2id PHC string for `password`, computed in `memory`.
    fn hash(&self, password: &[u8], memory: &mut Vec<Block>) -> Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let argon2 = self.argon2();
        let hash = salt
            .as_salt()
            .decode_b64(&mut salt_bytes)
            .and_then(|salt_bytes| {
                Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
                    Ok(hash_into(&argon2, password, salt_bytes, out, memory)?)
                })
            })
            .and_then(|output| {
                Ok(PasswordHash {
                    algorithm: Algorithm::Argon2id.ident(),
                    version: Some(Version::V0x13.into()),
                    params: (&self.config.params).try_into()?,
                    salt: Some(salt.as_salt()),
                    hash: Some(output),
                })
            })
            .map_err(|e| Error::PasswordHash(e.to_string()))?;
        Ok(hash.to_string())
    }

    fn verify(&self, password: &[u8], stored: &str, memory: &mut Vec<Block>) -> Verified {
        let verified = self.verify_in(password, stored, memory);
        // A stored hash with a larger memory cost than the configured one grew the thread's
        // memory: give the excess back rather than keep it for every later computation.
        let configured = self.config.params.block_count();
        if memory.len() > configured {
            memory.truncate(configured);
            memory.shrink_to_fit();
        }
        verified
    }

    fn verify_in(&self, password: &[u8], stored: &str, memory: &mut Vec<Block>) -> Verified {
        match self.parse(stored) {
            Ok(Stored::Argon2 {
                argon2,
                hash,
                needs_rehash,
            }) => match verify_argon2(&argon2, password, &hash, memory) {
                Ok(true) => Verified {
                    valid: true,
                    needs_rehash,
                },
                Ok(false) => Verified::INVALID,
                // Every argon2 error is raised before any hashing: do the work anyway.
                Err(e) => self.reject(password, &format!("unusable argon2 hash: {e}"), memory),
            },
            #[cfg(feature = "werkzeug")]
            Ok(Stored::Werkzeug(hash)) => match hash.matches(password) {
                Ok(valid) => Verified {
                    valid,
                    needs_rehash: valid,
                },
                Err(reason) => self.reject(password, reason, memory),
            },
            Err(reason) => self.reject(password, &reason, memory),
        }
    }

    /// Answers "invalid" for an unusable stored hash, after the cost of a real verification so
    /// that such accounts cannot be told apart by timing.
    fn reject(&self, password: &[u8], reason: &str, memory: &mut Vec<Block>) -> Verified {
        tracing::warn!(reason, "unusable stored password hash; treated as wrong");
        self.dummy_verify(password, memory);
        Verified::INVALID
    }

    /// One argon2id computation with the configured parameters whose result is thrown away.
    fn dummy_verify(&self, password: &[u8], memory: &mut Vec<Block>) {
        let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
        if let Err(e) = hash_into(
            &self.argon2(),
            password,
            &self.dummy_salt,
            &mut output,
            memory,
        ) {
            tracing::warn!(error = %e, "dummy password verification failed");
        }
        std::hint::black_box(output);
    }

    fn parse<'a>(&self, stored: &'a str) -> Result<Stored<'a>, String> {
        if let Some(kdf) = werkzeug_kdf(stored) {
            return parse_werkzeug(stored, kdf);
        }
        let hash = PasswordHash::new(stored).map_err(|e| format!("not a PHC string: {e}"))?;
        let algorithm = Algorithm::try_from(hash.algorithm)
            .map_err(|_| format!("unsupported algorithm `{}`", hash.algorithm))?;
        let version = hash
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(|e| format!("unsupported argon2 version: {e}"))?
            .unwrap_or_default();
        let params =
            Params::try_from(&hash).map_err(|e| format!("invalid argon2 parameters: {e}"))?;
        self.check_cost(&params)?;
        let needs_rehash = algorithm != Algorithm::Argon2id
            || version != Version::V0x13
            || params != self.config.params;
        Ok(Stored::Argon2 {
            argon2: Box::new(Argon2::new(algorithm, version, params)),
            hash,
            needs_rehash,
        })
    }

    fn check_cost(&self, stored: &Params) -> Result<(), String> {
        let configured = &self.config.params;
        let max_m = MAX_STORED_ARGON2_M_KIB.max(configured.m_cost().into());
        let max_work = MAX_STORED_ARGON2_WORK
            .max(u64::from(configured.m_cost()) * u64::from(configured.t_cost()));
        let m = u64::from(stored.m_cost());
        if m > max_m || m * u64::from(stored.t_cost()) > max_work {
            return Err(format!(
                "argon2 parameters m={},t={} exceed the limits for stored hashes",
                stored.m_cost(),
                stored.t_cost()
            ));
        }
        Ok(())
    }
}

/// Computes argon2 into `out` with `memory`, grown to the parameters' size if needed.
fn hash_into(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> argon2::Result<()> {
    let blocks = argon2.params().block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
}

/// Whether `password` matches the argon2 PHC `hash`: recomputed in `memory` with the hash's own
/// salt and length, compared in constant time (`Output`'s equality).
fn verify_argon2(
    argon2: &Argon2<'_>,
    password: &[u8],
    hash: &PasswordHash<'_>,
    memory: &mut Vec<Block>,
) -> password_hash::Result<bool> {
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return Err(password_hash::Error::PhcStringField);
    };
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes)?;
    let computed = Output::init_with(expected.len(), |out| {
        Ok(hash_into(argon2, password, salt, out, memory)?)
    })?;
    Ok(computed == expected)
}

enum Stored<'a> {
    Argon2 {
        /// Set up with the stored algorithm, version and parameters.
        argon2: Box<Argon2<'static>>,
        hash: PasswordHash<'a>,
        needs_rehash: bool,
    },
    #[cfg(feature = "werkzeug")]
    Werkzeug(werkzeug::Hash<'a>),
}

/// The key derivation function (`pbkdf2` or `scrypt`) of what looks like a Werkzeug
/// `generate_password_hash` result: `pbkdf2:sha256:600000$salt$hexdigest`.
fn werkzeug_kdf(stored: &str) -> Option<&str> {
    let (method, _) = stored.split_once('$')?;
    let kdf = method.split(':').next().unwrap_or(method);
    matches!(kdf, "pbkdf2" | "scrypt").then_some(kdf)
}

#[cfg(feature = "werkzeug")]
fn parse_werkzeug<'a>(stored: &'a str, _kdf: &str) -> Result<Stored<'a>, String> {
    werkzeug::Hash::parse(stored)
        .map(Stored::Werkzeug)
        .map_err(str::to_owned)
}

#[cfg(not(feature = "werkzeug"))]
fn parse_werkzeug<'a>(_stored: &'a str, kdf: &str) -> Result<Stored<'a>, String> {
    Err(format!(
        "a Werkzeug (Flask) `{kdf}` hash: enable the `werkzeug` feature of login-manager to \
         verify and migrate it"
    ))
}

mod pool;
#[cfg(feature = "werkzeug")]
pub(crate) mod werkzeug;
