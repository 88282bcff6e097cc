//! Mail for account recovery (feature `mail`): the [`Outbox`] an app chooses (SMTP in
//! production, one `.eml` file per message in development, as Django's file-based mail
//! backend) and the messages the library defines ([`password_reset_mail`]).

use std::{path::PathBuf, time::Duration};

use lettre::{
    message::{header::ContentType, Mailbox},
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};

use crate::{Error, Result};

/// Where mail goes: an SMTP server or a directory of `.eml` files.
///
/// ```
/// # fn run() -> login_manager::Result<()> {
/// use login_manager::Outbox;
///
/// let development = Outbox::files("mail/");
/// let production = Outbox::smtp("smtps://user:password@smtp.example.com")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Outbox {
    transport: Transport,
}

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the SMTP URL: it may hold a password.
        match &self.transport {
            Transport::Smtp(_) => f.write_str("Outbox::Smtp"),
            Transport::Files(_, dir) => write!(f, "Outbox::Files({})", dir.display()),
        }
    }
}

impl Outbox {
    /// Mail over SMTP, from a URL (`smtp://host:25`, `smtp://host:587?tls=required`,
    /// `smtps://user:password@host`: lettre's URL format, TLS through rustls).
    pub fn smtp(url: &str) -> Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            // The error names the problem, never the URL (it may hold a password).
            .map_err(|e| Error::Config(format!("invalid SMTP URL: {e}")))?
            .build();
        Ok(Self {
            transport: Transport::Smtp(transport),
        })
    }

    /// Mail written as one `<uuid>.eml` file per message into `dir` (created when missing),
    /// for development and tests: open the file, follow the link.
    pub fn files(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            transport: Transport::Files(AsyncFileTransport::new(&dir), dir),
        }
    }

    /// Hands `message` to the transport: [`Error::Mail`] (503) when it cannot.
    pub async fn send(&self, message: Message) -> Result<()> {
        let sent = match &self.transport {
            Transport::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(Box::from),
            Transport::Files(files, dir) => match tokio::fs::create_dir_all(dir).await {
                Ok(()) => files.send(message).await.map(drop).map_err(Box::from),
                Err(err) => Err(Box::from(err)),
            },
        };
        sent.map_err(Error::Mail)
    }
}

/// The password-reset message: `to` (a mailbox, `alice@example.com` or
/// `Alice <alice@example.com>`) gets `link` (the app's reset page with the token from
/// [`OneTimeTokens::issue`](crate::OneTimeTokens::issue)), valid for `valid_for`. Plain text:
/// nothing in it is rendered, so nothing in it can be injected. A link longer than a mail
/// line (76 characters) makes the body quoted-printable: mail programs decode it; a test
/// reading the `.eml` must too (`=` at a line end joins lines, `=3D` is `=`).
///
/// ```
/// # fn run() -> login_manager::Result<()> {
/// let mail = login_manager::password_reset_mail(
///     "Example <no-reply@example.com>",
///     "alice@example.com",
///     "https://example.com/password/reset?token=...",
///     std::time::Duration::from_secs(30 * 60),
/// )?;
/// # Ok(()) }
/// ```
pub fn password_reset_mail(
    from: &str,
    to: &str,
    link: &str,
    valid_for: Duration,
) -> Result<Message> {
    let mailbox = |address: &str| {
        address
            .parse::<Mailbox>()
            .map_err(|e| Error::Config(format!("invalid mail address {address:?}: {e}")))
    };
    let body = format!(
        "Someone asked to reset the password of your account.\n\n\
         To choose a new password, open this link within {}:\n\n\
         {link}\n\n\
         The link works once. If you did not ask for it, ignore this mail:\n\
         your password stays as it is.\n",
        spelled_out(valid_for)
    );
    Message::builder()
        .from(mailbox(from)?)
        .to(mailbox(to)?)
        .subject("Reset your password")
        .message_id(None)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| Error::Config(format!("the reset mail could not be built: {e}")))
}

/// `30 minutes`, `1 minute`, `45 seconds`, `2 hours`: how long a link is valid, in words.
fn spelled_out(duration: Duration) -> String {
    let secs = duration.as_secs().max(1);
    let (count, unit) = match secs {
        s if s % 3600 == 0 => (s / 3600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}
