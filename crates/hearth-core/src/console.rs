//! The console's accounts: people who sign in to `/console` (not API keys), their roles, their
//! browser sessions and the sign-in rate limit, in the one store.
//!
//! Passwords are kept only as Argon2id hashes (memory-hard, a salt of their own). A browser
//! session is a random token in an `HttpOnly` cookie; the database keeps its SHA-256 and a
//! CSRF token of its own, which every state-changing request must echo in a header. Failed
//! sign-ins are counted in the database per account and per client address, so every replica
//! refuses the same guesses.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hearth_store::{params, Database, StoreError};
use hearth_types::ErrorCode;
use serde::Serialize;
use sha2::{Digest, Sha256};

const MIGRATIONS: &[&str] = &["
CREATE TABLE console_accounts (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX console_sessions_name ON console_sessions(name);
CREATE TABLE console_login_failures (
    subject TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX console_login_failures_subject ON console_login_failures(subject, at);
CREATE INDEX console_login_failures_at ON console_login_failures(at);
"];

/// What an account may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: keys, every page, the playground, the inbox.
    Admin,
    /// The support inbox (reply, notes, assign, hand back, resolve) and every read-only page.
    Support,
    /// Read-only pages: spend, models and routes, recommendations, the knowledge base.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Support, Role::Viewer];

    pub fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "admin" => Role::Admin,
            "support" | "agent" | "support-agent" | "support_agent" => Role::Support,
            "viewer" => Role::Viewer,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Support => "support",
            Role::Viewer => "viewer",
        }
    }

    /// Whether this role answers customers (the inbox).
    pub fn answers_customers(self) -> bool {
        matches!(self, Role::Admin | Role::Support)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A console account (never its password).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    /// Unix seconds.
    pub created: f64,
}

/// A signed-in browser session.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedIn {
    pub name: String,
    pub role: Role,
    /// What state-changing requests of this session send in `X-CSRF-Token`.
    pub csrf: String,
    /// Unix seconds.
    pub expires: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{message}")]
    InvalidParameter { param: String, message: String },
    #[error("wrong account name or password")]
    InvalidCredentials,
    #[error("too many failed sign-ins: retry in {retry_after} s")]
    TooManyAttempts { retry_after: u64 },
    #[error("no console account named '{0}'")]
    UnknownAccount(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("hashing the password: {0}")]
    Hash(String),
}

impl ConsoleError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ConsoleError::InvalidParameter { .. } => ErrorCode::InvalidRequest,
            ConsoleError::InvalidCredentials => ErrorCode::InvalidCredentials,
            ConsoleError::TooManyAttempts { .. } => ErrorCode::TooManyLoginAttempts,
            ConsoleError::UnknownAccount(_) => ErrorCode::AccountNotFound,
            ConsoleError::Store(e) => e.code(),
            ConsoleError::Hash(_) => ErrorCode::InternalError,
        }
    }

    fn invalid(param: &str, message: impl Into<String>) -> Self {
        ConsoleError::InvalidParameter {
            param: param.into(),
            message: message.into(),
        }
    }
}

/// How failed sign-ins are limited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoginLimits {
    /// Failed sign-ins one account may take within `window_seconds` before every attempt on
    /// it (right password or not) is refused with 429 until the oldest leaves the window.
    pub per_account: u32,
    /// The same for one client address, over all accounts.
    pub per_address: u32,
    pub window_seconds: f64,
    /// How long a browser session lives (seconds).
    pub session_seconds: f64,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_account: 5,
            per_address: 20,
            window_seconds: 900.0,
            session_seconds: 12.0 * 3600.0,
        }
    }
}

/// The console's accounts and sessions in the one store.
#[derive(Clone)]
pub struct Accounts {
    db: Database,
    limits: LoginLimits,
}

/// A random token: 244 bits from the operating system's generator (two v4 UUIDs).
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The shortest and longest password accepted.
pub const PASSWORD_CHARS: (usize, usize) = (8, 1024);

fn check_name(name: &str) -> Result<(), ConsoleError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ConsoleError::invalid(
            "name",
            "an account name is 1–64 letters, digits and . _ - @",
        ))
    }
}

fn check_password(password: &str) -> Result<(), ConsoleError> {
    let n = password.chars().count();
    if n < PASSWORD_CHARS.0 || password.len() > PASSWORD_CHARS.1 {
        return Err(ConsoleError::invalid(
            "password",
            format!(
                "a password is {} to {} characters",
                PASSWORD_CHARS.0, PASSWORD_CHARS.1
            ),
        ));
    }
    Ok(())
}

fn hash_password(password: &str) -> Result<String, ConsoleError> {
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| ConsoleError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ConsoleError::Hash(e.to_string()))
}

fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash no password matches, verified for unknown accounts so that their answer takes as
/// long as a wrong password's.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&random_token()).expect("hashing a random password"))
}

impl Accounts {
    pub fn open(db: Database, limits: LoginLimits) -> Result<Accounts, ConsoleError> {
        db.migrate("console", MIGRATIONS)?;
        Ok(Accounts { db, limits })
    }

    pub fn limits(&self) -> LoginLimits {
        self.limits
    }

    /// Creates an account. Hashing takes tens of milliseconds: async callers use a blocking
    /// thread.
    pub fn create(&self, name: &str, role: Role, password: &str) -> Result<Account, ConsoleError> {
        check_name(name)?;
        check_password(password)?;
        let account = Account {
            name: name.to_owned(),
            role,
            created: hearth_types::clock::unix_now_f64(),
        };
        let inserted = self.db.execute(
            "INSERT INTO console_accounts (name, role, password_hash, created) VALUES ($1, $2, $3, $4)",
            params![name, role.as_str(), hash_password(password)?, account.created],
        );
        match inserted {
            Ok(_) => Ok(account),
            Err(e) if e.is_unique_violation() => Err(ConsoleError::invalid(
                "name",
                format!("an account named '{name}' exists already"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Every account, by name.
    pub fn list(&self) -> Result<Vec<Account>, ConsoleError> {
        let rows = self.db.query(
            "SELECT name, role, created FROM console_accounts ORDER BY name",
            params![],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<f64>(2)?)),
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, role, created)| {
                Some(Account {
                    name,
                    role: Role::parse(&role)?,
                    created,
                })
            })
            .collect())
    }

    pub fn get(&self, name: &str) -> Result<Option<Account>, ConsoleError> {
        Ok(self.list()?.into_iter().find(|a| a.name == name))
    }

    /// Sets a new password and signs the account out everywhere.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), ConsoleError> {
        check_password(password)?;
        let hash = hash_password(password)?;
        let changed = self.db.write(|tx| {
            let n = tx.execute(
                "UPDATE console_accounts SET password_hash = $2 WHERE name = $1",
                params![name, &hash],
            )?;
            tx.execute(
                "DELETE FROM console_sessions WHERE name = $1",
                params![name],
            )?;
            Ok(n)
        })?;
        if changed == 0 {
            return Err(ConsoleError::UnknownAccount(name.to_owned()));
        }
        Ok(())
    }

    /// Changes an account's role; its open sessions take the new role on their next request.
    pub fn set_role(&self, name: &str, role: Role) -> Result<(), ConsoleError> {
        let changed = self.db.execute(
            "UPDATE console_accounts SET role = $2 WHERE name = $1",
            params![name, role.as_str()],
        )?;
        if changed == 0 {
            return Err(ConsoleError::UnknownAccount(name.to_owned()));
        }
        Ok(())
    }

    /// Deletes an account and its sessions; false if there was none.
    pub fn delete(&self, name: &str) -> Result<bool, ConsoleError> {
        Ok(self.db.write(|tx| {
            tx.execute(
                "DELETE FROM console_sessions WHERE name = $1",
                params![name],
            )?;
            tx.execute(
                "DELETE FROM console_accounts WHERE name = $1",
                params![name],
            )
        })? > 0)
    }

    /// Signs in: checks the rate limit for the account and for `address`, then the password.
    /// Returns the session's cookie token (kept only as its hash) and the session. Blocks for
    /// the password hash's tens of milliseconds.
    pub fn sign_in(
        &self,
        name: &str,
        password: &str,
        address: &str,
    ) -> Result<(String, SignedIn), ConsoleError> {
        let now = hearth_types::clock::unix_now_f64();
        let since = now - self.limits.window_seconds;
        let account_subject = format!("account:{name}");
        let address_subject = format!("address:{address}");
        for (subject, limit) in [
            (&account_subject, self.limits.per_account),
            (&address_subject, self.limits.per_address),
        ] {
            let (count, oldest): (i64, Option<f64>) = self
                .db
                .query_one(
                    "SELECT COUNT(*), MIN(at) FROM console_login_failures
                     WHERE subject = $1 AND at > $2",
                    params![subject, since],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .unwrap_or((0, None));
            if count >= i64::from(limit) {
                let ends = oldest.unwrap_or(now) + self.limits.window_seconds;
                return Err(ConsoleError::TooManyAttempts {
                    retry_after: (ends - now).ceil().max(1.0) as u64,
                });
            }
        }
        let stored: Option<(String, String)> = self.db.query_one(
            "SELECT role, password_hash FROM console_accounts WHERE name = $1",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let matched = match &stored {
            Some((_, hash)) => verify_password(password, hash),
            None => {
                verify_password(password, decoy_hash());
                false
            }
        };
        let role = stored.as_ref().and_then(|(role, _)| Role::parse(role));
        let (true, Some(role)) = (matched, role) else {
            self.db.write(|tx| {
                tx.execute(
                    "DELETE FROM console_login_failures WHERE at <= $1",
                    params![since],
                )?;
                for subject in [&account_subject, &address_subject] {
                    tx.execute(
                        "INSERT INTO console_login_failures (subject, at) VALUES ($1, $2)",
                        params![subject, now],
                    )?;
                }
                Ok(())
            })?;
            return Err(ConsoleError::InvalidCredentials);
        };
        let token = random_token();
        let session = SignedIn {
            name: name.to_owned(),
            role,
            csrf: random_token(),
            expires: now + self.limits.session_seconds,
        };
        self.db.write(|tx| {
            tx.execute(
                "DELETE FROM console_sessions WHERE expires <= $1",
                params![now],
            )?;
            tx.execute(
                "DELETE FROM console_login_failures WHERE subject = $1",
                params![&account_subject],
            )?;
            tx.execute(
                "INSERT INTO console_sessions (token_hash, name, csrf, created, expires)
                 VALUES ($1, $2, $3, $4, $5)",
                params![sha256(&token), name, &session.csrf, now, session.expires],
            )
        })?;
        Ok((token, session))
    }

    /// The live session a cookie token opens: unexpired, its account still there, with the
    /// account's role now.
    pub fn session(&self, token: &str) -> Result<Option<SignedIn>, ConsoleError> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let now = hearth_types::clock::unix_now_f64();
        let row: Option<(String, String, String, f64)> = self.db.query_one(
            "SELECT s.name, a.role, s.csrf, s.expires FROM console_sessions s
             JOIN console_accounts a ON a.name = s.name
             WHERE s.token_hash = $1 AND s.expires > $2",
            params![sha256(token), now],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        Ok(row.and_then(|(name, role, csrf, expires)| {
            Some(SignedIn {
                name,
                role: Role::parse(&role)?,
                csrf,
                expires,
            })
        }))
    }

    /// Ends the session of this cookie token.
    pub fn sign_out(&self, token: &str) -> Result<(), ConsoleError> {
        self.db.execute(
            "DELETE FROM console_sessions WHERE token_hash = $1",
            params![sha256(token)],
        )?;
        Ok(())
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(limits: LoginLimits) -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("hearth.db")).unwrap();
        (dir, Accounts::open(db, limits).unwrap())
    }

    #[test]
    fn passwords_are_hashed_and_sessions_follow_the_account() {
        let (_dir, accounts) = accounts(LoginLimits::default());
        accounts
            .create("ana", Role::Support, "correct horse")
            .unwrap();
        let stored: String = accounts
            .db
            .query_one(
                "SELECT password_hash FROM console_accounts WHERE name = 'ana'",
                params![],
                |r| r.get(0),
            )
            .unwrap()
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        assert!(matches!(
            accounts.sign_in("ana", "wrong horse", "127.0.0.1"),
            Err(ConsoleError::InvalidCredentials)
        ));
        assert!(matches!(
            accounts.sign_in("nobody", "correct horse", "127.0.0.1"),
            Err(ConsoleError::InvalidCredentials)
        ));
        let (token, session) = accounts
            .sign_in("ana", "correct horse", "127.0.0.1")
            .unwrap();
        assert_eq!(session.role, Role::Support);
        assert_eq!(accounts.session(&token).unwrap(), Some(session.clone()));
        assert_eq!(accounts.session("forged").unwrap(), None);
        // A role change applies to the open session; a new password ends it.
        accounts.set_role("ana", Role::Viewer).unwrap();
        assert_eq!(
            accounts.session(&token).unwrap().unwrap().role,
            Role::Viewer
        );
        accounts.set_password("ana", "battery staple").unwrap();
        assert_eq!(accounts.session(&token).unwrap(), None);
        let (token, _) = accounts
            .sign_in("ana", "battery staple", "127.0.0.1")
            .unwrap();
        assert!(accounts.delete("ana").unwrap());
        assert_eq!(accounts.session(&token).unwrap(), None);
        assert!(matches!(
            accounts.create("ana", Role::Admin, "short"),
            Err(ConsoleError::InvalidParameter { param, .. }) if param == "password"
        ));
        assert!(matches!(
            accounts.create("a b", Role::Admin, "long enough"),
            Err(ConsoleError::InvalidParameter { param, .. }) if param == "name"
        ));
    }

    #[test]
    fn failed_sign_ins_are_limited_per_account_and_per_address() {
        let limits = LoginLimits {
            per_account: 3,
            per_address: 5,
            ..LoginLimits::default()
        };
        let (_dir, accounts) = accounts(limits);
        accounts
            .create("ana", Role::Admin, "right password")
            .unwrap();
        accounts
            .create("ben", Role::Admin, "right password")
            .unwrap();
        for _ in 0..3 {
            assert!(matches!(
                accounts.sign_in("ana", "guess", "10.0.0.1"),
                Err(ConsoleError::InvalidCredentials)
            ));
        }
        // Over the limit even the right password is refused, from any address.
        match accounts.sign_in("ana", "right password", "10.0.0.2") {
            Err(ConsoleError::TooManyAttempts { retry_after }) => {
                assert!((1..=900).contains(&retry_after), "{retry_after}")
            }
            other => panic!("{other:?}"),
        }
        // Another account from the first address: two more failures reach its limit of 5.
        for _ in 0..2 {
            assert!(matches!(
                accounts.sign_in("ben", "guess", "10.0.0.1"),
                Err(ConsoleError::InvalidCredentials)
            ));
        }
        assert!(matches!(
            accounts.sign_in("ben", "right password", "10.0.0.1"),
            Err(ConsoleError::TooManyAttempts { .. })
        ));
        accounts
            .sign_in("ben", "right password", "10.0.0.3")
            .unwrap();
    }
}
