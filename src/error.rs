//! The one error type the binary sees, and the one place that maps errors to exit codes.
//!
//! Every module keeps its own error enum with the context a reader needs (secret id,
//! host:port, path) and says what *class* of failure it is ([`ErrorClass`]); this module
//! only wraps them and decides the process exit code (sysexits, as documented in the
//! README) in [`Error::exit_code`]. No message built here or below may contain a password
//! or the secret JSON: errors carry names, ids and classes, never values.

use crate::class::ErrorClass;
use crate::config::ConfigError;
use crate::db::WaitError;
use crate::exit;
use crate::iam::IamError;
use crate::outdir::WriteError;
use crate::privileges::PrivilegeError;
use crate::secret::SecretError;
use crate::signal::Signal;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error(transparent)]
    Wait(#[from] WaitError),
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A stop signal arrived before the flow finished; the out-dir holds no `ready` marker.
    #[error("interrupted by {0} before the database was ready; no ready marker was written")]
    Interrupted(Signal),
    /// `exec` could not run its command; the source's kind picks a shell's code.
    #[error("cannot run {program:?}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("installing signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Config(ConfigError::Secret(e)) | Error::Secret(e) => e.class(),
            Error::Config(_) => ErrorClass::Config,
            Error::Iam(e) => e.class(),
            Error::Wait(e) => e.class(),
            Error::Write(_) => ErrorClass::OutDir,
            Error::Interrupted(_) => ErrorClass::Interrupted,
            Error::Exec { .. } => ErrorClass::Exec,
            Error::Signals(_) | Error::Runtime(_) => ErrorClass::Internal,
            // Not root, or the container forbids setuid/capset: the deployment must change.
            Error::Privileges(_) => ErrorClass::Config,
        }
    }

    /// What to do next, for the failures `doctor` diagnoses step by step (the database or
    /// the credentials could not be reached or used).
    pub fn next_step(&self) -> Option<&'static str> {
        matches!(self, Error::Wait(_) | Error::Secret(_) | Error::Iam(_)).then_some(
            "run `aurora-sidecar doctor` with the same flags for a step-by-step diagnosis",
        )
    }

    /// The process exit code: the only place it is decided. Mostly by class; the wait's
    /// deadline, signals and `exec` carry their own.
    pub fn exit_code(&self) -> u8 {
        match (self, self.class()) {
            // Whatever the last error was, the deadline says "still unavailable".
            (Error::Wait(WaitError::Deadline { .. }), _) => exit::UNAVAILABLE,
            (Error::Interrupted(Signal::Interrupt), _) => exit::SIGINT,
            (Error::Interrupted(Signal::Terminate), _) => exit::SIGTERM,
            (Error::Exec { source, .. }, _) if source.kind() == std::io::ErrorKind::NotFound => {
                exit::NOT_FOUND
            }
            (Error::Exec { .. }, _) => exit::NOT_EXECUTABLE,
            (_, class) => exit_code_of(class),
        }
    }
}

/// The exit code for a class of failure (sysexits): what `doctor` exits with for its
/// first failed step, and what every error without a code of its own gets.
pub fn exit_code_of(class: ErrorClass) -> u8 {
    use ErrorClass as C;
    match class {
        C::SecretMalformed => exit::DATA_ERR,
        C::Transient | C::Timeout | C::SecretUnavailable | C::TokenUnavailable | C::Other => {
            exit::UNAVAILABLE
        }
        C::PasswordRejected
        | C::AuthorizationRejected
        | C::TokenRejected
        | C::NoPrivilege
        | C::SecretDenied => exit::NO_PERM,
        C::MissingDatabase
        | C::TlsRequired
        | C::TlsVerification
        | C::TlsUnsupported
        | C::SecretNotFound
        | C::SecretRejected
        | C::Config => exit::CONFIG,
        C::OutDir => exit::CANT_CREATE,
        C::Interrupted | C::Exec | C::Internal => exit::SOFTWARE,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::db::retry::AttemptError;
    use crate::secret::aws::AwsError;

    fn secret(e: SecretError) -> u8 {
        Error::from(e).exit_code()
    }

    #[test]
    fn secret_errors_map_to_the_documented_codes() {
        let malformed = SecretError::Malformed {
            origin: "t".into(),
            reason: "r".into(),
        };
        assert_eq!(secret(malformed), exit::DATA_ERR);
        let engine = SecretError::UnsupportedEngine {
            origin: "t".into(),
            engine: "mysql".into(),
        };
        assert_eq!(secret(engine), exit::CONFIG);
        let denied = AwsError::AccessDenied {
            secret_id: "s".into(),
            code: "AccessDeniedException".into(),
            message: String::new(),
        };
        assert_eq!(secret(denied.into()), exit::NO_PERM);
        let missing = AwsError::NotFound {
            secret_id: "s".into(),
        };
        assert_eq!(secret(missing.into()), exit::CONFIG);
        let binary = AwsError::NotAString {
            secret_id: "s".into(),
        };
        assert_eq!(secret(binary.into()), exit::DATA_ERR);
        let throttled = AwsError::Unavailable {
            secret_id: "s".into(),
            source: "throttled".into(),
        };
        assert_eq!(secret(throttled.into()), exit::UNAVAILABLE);
    }

    #[test]
    fn the_deadline_is_69_whatever_the_last_error() {
        let e = Error::Wait(WaitError::Deadline {
            attempts: 3,
            elapsed: Duration::from_secs(30),
            last: AttemptError::Timeout(Duration::from_secs(1)),
        });
        assert_eq!(e.exit_code(), exit::UNAVAILABLE);
        let fatal = Error::Wait(WaitError::Fatal(AttemptError::Secret(
            SecretError::EnvMissing { name: "X".into() },
        )));
        assert_eq!(fatal.exit_code(), exit::CONFIG);
    }

    #[test]
    fn signals_and_exec_use_a_shells_codes() {
        assert_eq!(
            Error::Interrupted(Signal::Terminate).exit_code(),
            exit::SIGTERM
        );
        assert_eq!(
            Error::Interrupted(Signal::Interrupt).exit_code(),
            exit::SIGINT
        );
        let exec = |kind| Error::Exec {
            program: "x".into(),
            source: std::io::Error::new(kind, "x"),
        };
        assert_eq!(
            exec(std::io::ErrorKind::NotFound).exit_code(),
            exit::NOT_FOUND
        );
        assert_eq!(
            exec(std::io::ErrorKind::PermissionDenied).exit_code(),
            exit::NOT_EXECUTABLE
        );
    }
}
