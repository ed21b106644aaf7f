//! Housekeeping commands: expired rows, the audit trail, the signing key, the Django import,
//! the mail settings.
use super::{CliError, Command};
use crate::{
    django_import,
    service::{ServiceError, audit_log, identity::Origin, jwt, jwt::RotateError, sessions, tokens},
    state::AppState,
};

pub async fn run(state: &AppState, command: Command) -> Result<(), CliError> {
    let db = &state.db;
    match command {
        Command::Clearsessions => {
            let count = sessions::clear_expired(db).await.map_err(ServiceError::from)?;
            let pending =
                crate::service::mfa::records::clear_expired_challenges(db).await.map_err(ServiceError::from)?;
            println!("Deleted {count} expired sessions and {pending} expired logins waiting for a second factor.");
        }
        Command::Flushexpiredtokens => {
            let tokens = tokens::flush_expired(db).await.map_err(ServiceError::from)?;
            let jwts = jwt::flush_expired(db).await.map_err(ServiceError::from)?;
            println!("Deleted {tokens} expired tokens and {jwts} expired refresh-token records.");
        }
        Command::Audit { user, event, since, limit } => print_audit(state, user, event, since, limit).await?,
        Command::Clearaudit => {
            let days = state.settings.audit.retention_days;
            let count = crate::audit::purge(db, days).await.map_err(ServiceError::from)?;
            println!("Deleted {count} audit events older than {days} days.");
        }
        Command::Sendtestemail { addresses } => send_test_email(state, &addresses).await?,
        Command::Rotatekeys => rotate_keys(state).await?,
        other => return Err(CliError::Usage(format!("{other:?} is not a maintenance command"))),
    }
    Ok(())
}

/// Django's `sendtestemail`: one message per address, sent now (not queued), so a wrong
/// setting is this command's error and exit status.
async fn send_test_email(state: &AppState, addresses: &[String]) -> Result<(), CliError> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned());
    let letter = |to: &String| crate::mail::Letter {
        to: to.clone(),
        subject: format!("Test email from {} on {}", host.as_deref().unwrap_or("portcullis"), chrono::Utc::now()),
        body: "If you're reading this, it was successful.\n".into(),
    };
    for to in addresses {
        state.accounts.mailer().send(&letter(to)).await.map_err(|e| CliError::Mail(to.clone(), e))?;
        println!("Sent a test email to {to}.");
    }
    Ok(())
}

async fn rotate_keys(state: &AppState) -> Result<(), CliError> {
    let rotated = state.accounts.rotate_signing_key(&Origin::cli()).await.map_err(|e| match e {
        RotateError::Configured(why) => CliError::Usage(why),
        RotateError::Key(e) => e.into(),
    })?;
    let algorithm = format!("{:?}", rotated.algorithm);
    println!("New JWT signing key {} ({algorithm}): it signs from now on, on every instance.", rotated.kid);
    if let Some((kid, until)) = &rotated.previous {
        let until = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        println!("The previous key {kid} verifies the tokens it signed until {until}, then leaves the JWKS.");
    }
    println!("Published next: {} (it signs after the next rotation).", rotated.next);
    // Verifiers that cached the JWKS before the new key was published meet an unknown kid;
    // most fetch the set again at once, some only after a cooldown (PyJWT: 30 s).
    let max_age = i64::try_from(state.settings.jwt.jwks_max_age).unwrap_or(i64::MAX);
    let published = rotated.published_for.map_or(0, |d| d.num_seconds());
    if published < max_age {
        eprintln!(
            "warning: the new key was published {published} s ago, less than jwt.jwks_max_age ({max_age} s): \
             verifiers that cached the JWKS before then and throttle refetches may refuse its tokens for a \
             while. Rotate at most once per jwt.jwks_max_age to avoid this."
        );
    }
    Ok(())
}

async fn print_audit(
    state: &AppState,
    user: Option<String>,
    event: Option<String>,
    since: Option<String>,
    limit: u64,
) -> Result<(), CliError> {
    let since = match since {
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(&s)
                .map_err(|_| CliError::Usage(format!("--since {s:?} is not an RFC 3339 time")))?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    let filter = audit_log::Filter { username: user, event, since, ..Default::default() };
    let (rows, count) =
        audit_log::page(&state.db, &filter, 0, limit.clamp(1, 10_000)).await.map_err(ServiceError::from)?;
    for e in &rows {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        println!(
            "{}  {:<24} user={} ip={} credential={} {}",
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.event,
            show(&e.username),
            show(&e.ip),
            show(&e.credential),
            e.detail
        );
    }
    println!("({} of {count} events)", rows.len());
    Ok(())
}

/// Problems on stderr, the summary line on stdout.
pub async fn import_django(state: &AppState, options: &django_import::Options) -> Result<(), CliError> {
    let summary = django_import::run(state, options).await?;
    for skipped in &summary.skipped {
        eprintln!("skipped {skipped}");
    }
    for user in &summary.unreadable_hashes {
        eprintln!("warning: {user}");
    }
    let dropped = [
        (summary.sessions_expired, "expired"),
        (summary.sessions_anonymous, "anonymous (no user)"),
        (summary.sessions_stale, "stale (password changed since login)"),
    ];
    for (n, why) in dropped.iter().filter(|(n, _)| *n > 0) {
        eprintln!("not imported: {n} {why} sessions");
    }
    println!("{}", summary.line());
    Ok(())
}
