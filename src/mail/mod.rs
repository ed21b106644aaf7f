//! Sending mail: plain-text messages with proper headers (`Date`, `Message-ID`, `From`, `To`,
//! `Subject`), through the backend `email.backend` names — the console (Django's default for
//! development), an SMTP server (lettre, async on tokio, rustls; STARTTLS or implicit TLS from
//! the URL; bounded by `email.timeout`), or memory (tests). Nothing here knows why a mail is
//! sent; [`outbox`] sends them off the request path.
pub mod outbox;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Body, Mailbox,
        header::{ContentTransferEncoding, ContentType},
    },
};

use crate::config::{self, EmailBackend};

/// One message, before it gets its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Why a mail was not sent. Never holds the message (it may carry a reset link).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid address: {0}")]
    Address(String),
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("the SMTP server refused or failed: {0}")]
    Smtp(String),
    #[error("the SMTP server did not finish within {0:?}")]
    Timeout(Duration),
    #[error("cannot print the message: {0}")]
    Console(String),
}

/// Where mails go. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    backend: Arc<Backend>,
}

enum Backend {
    Console,
    Smtp { transport: AsyncSmtpTransport<Tokio1Executor>, deadline: Duration },
    Memory(Mutex<Vec<Letter>>),
}

/// Messages the memory backend keeps (the newest).
const MEMORY_KEEPS: usize = 1000;

/// Separates messages on the console, as Django's console backend does.
const CONSOLE_RULE: &str = "-------------------------------------------------------------------------------";

impl Mailer {
    /// The configured backend. Connecting waits for the first mail (a server that is down at
    /// start-up is a failed send then, not a failed start).
    pub fn new(settings: &config::Email) -> Result<Self, MailError> {
        let from = settings.from.parse::<Mailbox>().map_err(|e| MailError::Address(e.to_string()))?;
        let backend = match settings.backend {
            EmailBackend::Console => Backend::Console,
            EmailBackend::Memory => Backend::Memory(Mutex::new(Vec::new())),
            EmailBackend::Smtp => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(settings.smtp_url.expose())
                    .map_err(|e| MailError::Smtp(without_url(&e.to_string())))?
                    .timeout(Some(settings.timeout()))
                    .build();
                Backend::Smtp { transport, deadline: settings.timeout() * 2 }
            }
        };
        Ok(Self { from, backend: Arc::new(backend) })
    }

    /// Builds and sends one message.
    pub async fn send(&self, letter: &Letter) -> Result<(), MailError> {
        let message = self.message(letter)?;
        match self.backend.as_ref() {
            Backend::Console => {
                // The message as a terminal shows it: line ends of the platform, not the wire's CRLF.
                let text = String::from_utf8_lossy(&message.formatted()).replace("\r\n", "\n");
                let bytes = format!("{text}\n{CONSOLE_RULE}\n").into_bytes();
                // Writing to a pipe nobody reads blocks: never on an async worker.
                tokio::task::spawn_blocking(move || {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes).and_then(|()| out.flush())
                })
                .await
                .map_err(|e| MailError::Console(e.to_string()))?
                .map_err(|e| MailError::Console(e.to_string()))
            }
            Backend::Smtp { transport, deadline } => {
                match tokio::time::timeout(*deadline, transport.send(message)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(MailError::Smtp(without_url(&e.to_string()))),
                    Err(_) => Err(MailError::Timeout(*deadline)),
                }
            }
            Backend::Memory(sent) => {
                let mut sent = sent.lock().unwrap_or_else(|e| e.into_inner());
                // Bounded, should it ever be configured outside tests.
                if sent.len() >= MEMORY_KEEPS {
                    sent.remove(0);
                }
                sent.push(letter.clone());
                Ok(())
            }
        }
    }

    /// The message as sent: a random `Message-ID` in the sender's domain, the date now,
    /// UTF-8 plain text.
    pub fn message(&self, letter: &Letter) -> Result<Message, MailError> {
        let to = letter.to.parse::<Mailbox>().map_err(|e| MailError::Address(e.to_string()))?;
        let id = format!("<{}@{}>", crate::crypto::random_hex(16), self.from.email.domain());
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(letter.subject.clone())
            .message_id(Some(id))
            .date_now()
            .header(ContentType::TEXT_PLAIN)
            .body(body(&letter.body))
            .map_err(|e| MailError::Build(e.to_string()))
    }

    /// What the memory backend holds (empty for the others).
    pub fn sent(&self) -> Vec<Letter> {
        match self.backend.as_ref() {
            Backend::Memory(sent) => sent.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            _ => Vec::new(),
        }
    }
}

/// 7bit, or 8bit beyond ASCII (as Django sends UTF-8 text): never quoted-printable, whose
/// soft line breaks cut a link in two for whoever reads the message raw (the console).
/// lettre would choose quoted-printable for any line over 76 characters; RFC 5322 allows 998
/// bytes. Longer lines (never ours) get lettre's choice.
fn body(text: &str) -> Body {
    let crlf = text.replace("\r\n", "\n").replace('\r', "\n").replace('\n', "\r\n");
    if crlf.contains('\0') || crlf.split("\r\n").any(|line| line.len() > 998) {
        return Body::new(text.to_owned());
    }
    let encoding = if crlf.is_ascii() { ContentTransferEncoding::SevenBit } else { ContentTransferEncoding::EightBit };
    Body::dangerous_pre_encoded(crlf.into_bytes(), encoding)
}

/// lettre's errors may quote the connection URL, which can hold a password.
fn without_url(message: &str) -> String {
    message.split_whitespace().filter(|w| !w.contains("://")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailer() -> Mailer {
        let mut settings = crate::config::Settings::defaults().unwrap().email;
        settings.from = "Portcullis <noreply@auth.example.com>".into();
        settings.backend = EmailBackend::Memory;
        Mailer::new(&settings).unwrap()
    }

    #[test]
    fn messages_have_the_headers_a_mail_server_expects() {
        let letter = Letter {
            to: "ann@example.com".into(),
            subject: "Password reset on portcullis".into(),
            body: format!("Hello Zoë,\n\nhttps://app.example.com/reset/MQ/{}/\n", "a".repeat(60)),
        };
        let text = String::from_utf8(mailer().message(&letter).unwrap().formatted()).unwrap();
        assert!(text.contains("Content-Transfer-Encoding: 8bit\r\n"), "{text}");
        assert!(text.contains(&format!("https://app.example.com/reset/MQ/{}/\r\n", "a".repeat(60))), "one line");
        for header in [
            "From: Portcullis <noreply@auth.example.com>\r\n",
            "To: ann@example.com\r\n",
            "Subject: Password reset on portcullis\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Date: ",
        ] {
            assert!(text.contains(header), "{header:?} in {text}");
        }
        assert!(regex::Regex::new(r"Message-ID: <[0-9a-f]{32}@auth\.example\.com>\r\n").unwrap().is_match(&text));
        assert!(mailer().message(&Letter { to: "not an address".into(), ..letter }).is_err());
    }

    #[tokio::test]
    async fn the_memory_backend_keeps_what_was_sent() {
        let mailer = mailer();
        let letter = Letter { to: "ann@example.com".into(), subject: "s".into(), body: "b".into() };
        mailer.send(&letter).await.unwrap();
        assert_eq!(mailer.sent(), [letter]);
        assert_eq!(without_url("cannot connect to smtps://u:p@host:465: refused"), "cannot connect to refused");
    }
}
