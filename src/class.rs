//! [`ErrorClass`]: the one vocabulary for "what kind of failure was this", shared by the
//! wait loop, the refresh loop, the logs (`error_class`), `status.json` and the exit-code
//! map in `error`. A leaf: it imports nothing of the crate.
//!
//! The names are stable: operators grep for them and `status.json` carries them.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Network trouble, server starting/resuming/shutting down, too many connections.
    Transient,
    /// No answer within the attempt timeout.
    Timeout,
    /// 28P01: the password was rejected (a rotation race, or a wrong secret).
    PasswordRejected,
    /// 28000: not allowed in (Aurora reports this briefly while resuming from 0 ACU).
    AuthorizationRejected,
    /// 28000 because pg_hba only allows TLS and sslmode is disable.
    TlsRequired,
    /// 3D000: the database does not exist.
    MissingDatabase,
    /// 42501: insufficient privilege (no CREATEDB).
    NoPrivilege,
    /// The server certificate failed verification.
    TlsVerification,
    /// sslmode require or stronger, but the server does not speak TLS.
    TlsUnsupported,
    /// 28000 "PAM authentication failed": the server checks IAM tokens for this user and
    /// rejected the one given (or a password, for a user granted `rds_iam`).
    TokenRejected,
    /// AWS credentials for signing an IAM token could not be had right now (the ECS
    /// credential endpoint not answering yet): retried.
    TokenUnavailable,
    /// A database error with no better class: reported as is, not retried.
    Other,
    /// Secrets Manager throttling, 5xx, timeouts, network.
    SecretUnavailable,
    /// Secrets Manager said no: access denied, bad credentials, KMS decrypt denied.
    SecretDenied,
    /// Secrets Manager has no such secret.
    SecretNotFound,
    /// Secrets Manager rejected the request for another reason (a 4xx).
    SecretRejected,
    /// The secret's content is not what RDS writes.
    SecretMalformed,
    /// Flags, environment or secret fields that cannot work.
    Config,
    /// The out-dir cannot be written.
    OutDir,
    /// A stop signal arrived before the flow finished.
    Interrupted,
    /// `exec` cannot run its command.
    Exec,
    /// A bug or an environment the process cannot run in.
    Internal,
}

impl ErrorClass {
    /// Every class, for tables that must cover them all.
    pub const ALL: [ErrorClass; 22] = [
        ErrorClass::Transient,
        ErrorClass::Timeout,
        ErrorClass::PasswordRejected,
        ErrorClass::AuthorizationRejected,
        ErrorClass::TlsRequired,
        ErrorClass::MissingDatabase,
        ErrorClass::NoPrivilege,
        ErrorClass::TlsVerification,
        ErrorClass::TlsUnsupported,
        ErrorClass::TokenRejected,
        ErrorClass::TokenUnavailable,
        ErrorClass::Other,
        ErrorClass::SecretUnavailable,
        ErrorClass::SecretDenied,
        ErrorClass::SecretNotFound,
        ErrorClass::SecretRejected,
        ErrorClass::SecretMalformed,
        ErrorClass::Config,
        ErrorClass::OutDir,
        ErrorClass::Interrupted,
        ErrorClass::Exec,
        ErrorClass::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Timeout => "timeout",
            ErrorClass::TokenRejected => "token_rejected",
            ErrorClass::TokenUnavailable => "token_unavailable",
            ErrorClass::PasswordRejected => "password_rejected",
            ErrorClass::AuthorizationRejected => "authorization_rejected",
            ErrorClass::TlsRequired => "tls_required",
            ErrorClass::MissingDatabase => "missing_database",
            ErrorClass::NoPrivilege => "no_privilege",
            ErrorClass::TlsVerification => "tls_verification",
            ErrorClass::TlsUnsupported => "tls_unsupported",
            ErrorClass::Other => "other",
            ErrorClass::SecretUnavailable => "secret_unavailable",
            ErrorClass::SecretDenied => "secret_denied",
            ErrorClass::SecretNotFound => "secret_not_found",
            ErrorClass::SecretRejected => "secret_rejected",
            ErrorClass::SecretMalformed => "secret_malformed",
            ErrorClass::Config => "config",
            ErrorClass::OutDir => "out_dir",
            ErrorClass::Interrupted => "interrupted",
            ErrorClass::Exec => "exec",
            ErrorClass::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logs use `as_str`, status.json uses serde: both must say the same name.
    #[test]
    fn serde_name_and_log_name_agree() {
        for c in ErrorClass::ALL {
            let json = serde_json::to_string(&c).expect("serialises");
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(
                serde_json::from_str::<ErrorClass>(&json).expect("parses"),
                c
            );
        }
    }
}
