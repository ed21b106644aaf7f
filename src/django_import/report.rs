//! What an import tells its user: the rows it could not take, the counts, and the summary line.
use std::fmt;

/// A row that cannot be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub row: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.row, self.reason)
    }
}

/// New, already-present and (users only) updated rows of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub new: u64,
    pub present: u64,
    pub updated: u64,
}

impl Count {
    /// Of `total` rows meant for a table, the `new` ones written: the rest were already there.
    pub(super) fn of(total: usize, new: u64) -> Self {
        Self { new, present: total as u64 - new, updated: 0 }
    }

    pub(super) fn add(&mut self, other: Count) {
        self.new += other.new;
        self.present += other.present;
    }
}

#[derive(Debug, Default)]
pub struct Summary {
    pub users: Count,
    pub groups: Count,
    pub permissions: Count,
    /// Group memberships and permission grants (the three joins).
    pub joins: Count,
    pub tokens: Count,
    pub sessions: Count,
    /// Session rows not imported because Django itself no longer honours them.
    pub sessions_expired: u64,
    pub sessions_anonymous: u64,
    /// Sessions whose `_auth_user_hash` no longer matches (password changed since login).
    pub sessions_stale: u64,
    /// Rows left out (`--skip-bad-rows`), with the rows that depended on them.
    pub skipped: Vec<Problem>,
    /// Users imported with a password hash no hasher here reads: they cannot log in until
    /// given a new password (`portcullis changepassword`).
    pub unreadable_hashes: Vec<Problem>,
    /// Users already here whose row changed (id, username): their cached credentials go.
    pub updated_users: Vec<(i64, String)>,
    pub dry_run: bool,
}

impl Summary {
    /// `imported 12,408 users, 31 groups, 212 permissions, 9,930 tokens; 0 skipped`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} {} users, {} groups, {} permissions, {} tokens",
            if self.dry_run { "would import" } else { "imported" },
            thousands(self.users.new),
            thousands(self.groups.new),
            thousands(self.permissions.new),
            thousands(self.tokens.new),
        );
        if self.sessions != Count::default()
            || self.sessions_expired + self.sessions_anonymous + self.sessions_stale > 0
        {
            line.push_str(&format!(", {} sessions", thousands(self.sessions.new)));
        }
        line.push_str(&format!("; {} skipped", thousands(self.skipped.len() as u64)));
        let present = [
            (self.users.present, "users"),
            (self.groups.present, "groups"),
            (self.permissions.present, "permissions"),
            (self.tokens.present, "tokens"),
            (self.sessions.present, "sessions"),
        ];
        let present: Vec<String> =
            present.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{} {what}", thousands(*n))).collect();
        if !present.is_empty() {
            line.push_str(&format!(
                " ({} already here, {} users updated)",
                present.join(", "),
                thousands(self.users.updated)
            ));
        }
        line
    }
}

pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        for (n, s) in [(0, "0"), (999, "999"), (1000, "1,000"), (12408, "12,408"), (1_234_567, "1,234,567")] {
            assert_eq!(thousands(n), s);
        }
    }

    #[test]
    fn the_summary_line() {
        let mut s = Summary::default();
        s.users.new = 12408;
        s.groups.new = 31;
        s.permissions.new = 212;
        s.tokens.new = 9930;
        assert_eq!(s.line(), "imported 12,408 users, 31 groups, 212 permissions, 9,930 tokens; 0 skipped");
        s.users = Count { new: 0, present: 12408, updated: 2 };
        s.dry_run = true;
        assert_eq!(
            s.line(),
            "would import 0 users, 31 groups, 212 permissions, 9,930 tokens; 0 skipped \
             (12,408 users already here, 2 users updated)"
        );
    }
}
