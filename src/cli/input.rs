//! Prompts on a terminal (passwords hidden), or lines read from piped standard input.
use std::io::{BufRead, IsTerminal, Write};

use super::CliError;

pub struct Input {
    tty: bool,
}

impl Input {
    pub fn new() -> Self {
        Self { tty: std::io::stdin().is_terminal() }
    }

    pub fn line(&mut self, prompt: &str) -> Result<String, CliError> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line).map_err(|e| CliError::Usage(e.to_string()))?;
        if read == 0 {
            return Err(CliError::Usage("input ended before a value was given".into()));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn secret(&mut self, prompt: &str) -> Result<String, CliError> {
        if self.tty {
            rpassword::prompt_password(prompt).map_err(|e| CliError::Usage(e.to_string()))
        } else {
            self.line(prompt)
        }
    }

    /// Django's double prompt; validators run when the account is saved.
    pub fn new_password(&mut self) -> Result<String, CliError> {
        for _ in 0..3 {
            let first = self.secret("Password: ")?;
            let again = self.secret("Password (again): ")?;
            if first != again {
                eprintln!("Error: Your passwords didn't match.");
            } else if first.is_empty() {
                eprintln!("Error: Blank passwords aren't allowed.");
            } else {
                return Ok(first);
            }
        }
        Err(CliError::Usage("Aborting after 3 attempts".into()))
    }
}
