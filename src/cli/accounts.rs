//! The commands that change an account: each parses, calls one use case with the CLI as
//! its origin, and prints one line — the same change, revocations and audit event as the
//! HTTP endpoint for it.
use super::{CliError, Command, input::Input};
use crate::{
    service::{FieldErrors, ServiceError, identity::Origin, users::NewUser},
    state::AppState,
};

/// Whether `command` is one of this module's.
pub fn handles(command: &Command) -> bool {
    matches!(
        command,
        Command::Createsuperuser { .. }
            | Command::Changepassword { .. }
            | Command::DrfCreateToken { .. }
            | Command::Logoutall { .. }
            | Command::Activate { .. }
            | Command::Deactivate { .. }
            | Command::DisableMfa { .. }
            | Command::Grant { .. }
            | Command::Revoke { .. }
            | Command::Addtogroup { .. }
    )
}

pub async fn run(state: &AppState, command: Command) -> Result<(), CliError> {
    let accounts = &state.accounts;
    let cli = &Origin::cli();
    let line = match command {
        Command::Createsuperuser { username, email, noinput } => {
            let new = superuser(username, email, noinput)?;
            accounts.register(new, FieldErrors::default(), cli).await?;
            "Superuser created successfully.".to_owned()
        }
        Command::Changepassword { username } => {
            let user = accounts.user(&username).await?;
            println!("Changing password for user '{}'", user.username);
            let password = Input::new().new_password()?;
            accounts.set_password(&username, password, cli).await?;
            format!("Password changed successfully for user '{username}'")
        }
        Command::DrfCreateToken { username, reset } => {
            let user = accounts.user(&username).await.map_err(|_| {
                ServiceError::NotFound(format!("Cannot create the Token for user {username}: user does not exist"))
            })?;
            if reset {
                accounts.revoke_tokens(&user, cli).await?;
            }
            let key = accounts.create_token(&user, "cli", cli).await?;
            format!("Generated token {key} for user {username}")
        }
        Command::Logoutall { username } => {
            accounts.logout_everywhere(&accounts.user(&username).await?, cli).await?;
            format!("Every session, token and JWT of '{username}' is revoked.")
        }
        Command::Activate { username } => {
            accounts.set_active(&username, true, cli).await?;
            format!("User '{username}' is active.")
        }
        Command::Deactivate { username } => {
            accounts.set_active(&username, false, cli).await?;
            format!("User '{username}' is inactive: their sessions, tokens and JWTs no longer work.")
        }
        Command::DisableMfa { username } => match accounts.disable_mfa(&username, cli).await? {
            true => format!("The second factor of '{username}' is removed: a password alone logs them in."),
            false => format!("'{username}' had no second factor."),
        },
        Command::Grant { name, permission, group: true } => {
            match accounts.grant_group(&name, &permission, cli).await? {
                true => format!("Granted {permission} to group '{name}'."),
                false => format!("Group '{name}' already had {permission}."),
            }
        }
        Command::Grant { name, permission, group: false } => match accounts.grant(&name, &permission, cli).await? {
            true => format!("Granted {permission} to '{name}'."),
            false => format!("'{name}' already had {permission}."),
        },
        Command::Revoke { username, permission } => {
            match accounts.revoke_permission(&username, &permission, cli).await? {
                true => format!("Revoked {permission} from '{username}'."),
                false => format!("'{username}' did not have {permission}."),
            }
        }
        Command::Addtogroup { username, group } => match accounts.add_to_group(&username, &group, cli).await? {
            true => format!("Added '{username}' to group '{group}'."),
            false => format!("'{username}' was already in group '{group}'."),
        },
        other => return Err(CliError::Usage(format!("{other:?} is not an account command"))),
    };
    println!("{line}");
    Ok(())
}

/// `createsuperuser`'s answers: from the options and PORTCULLIS_SUPERUSER_PASSWORD with
/// `--noinput`, else prompted (Django's prompts; validators run when the user is saved).
fn superuser(username: Option<String>, email: Option<String>, noinput: bool) -> Result<NewUser, CliError> {
    let (username, email, password) = if noinput {
        let username = username.ok_or_else(|| CliError::Usage("You must use --username with --noinput.".into()))?;
        let password = std::env::var("PORTCULLIS_SUPERUSER_PASSWORD")
            .map_err(|_| CliError::Usage("Set PORTCULLIS_SUPERUSER_PASSWORD with --noinput.".into()))?;
        (username, email.unwrap_or_default(), password)
    } else {
        let mut input = Input::new();
        let username = match username {
            Some(u) => u,
            None => input.line("Username: ")?,
        };
        let email = match email {
            Some(e) => e,
            None => input.line("Email address: ")?,
        };
        (username, email, input.new_password()?)
    };
    // The operator vouches for the address: under `account.email_verification = "mandatory"`
    // the superuser can log in without a verification mail.
    Ok(NewUser {
        username,
        email,
        password,
        is_staff: true,
        is_superuser: true,
        email_verified: true,
        ..NewUser::default()
    })
}
