//! The one error type the binary sees, and the one place that maps errors to exit codes.
//!
//! Every module keeps its own error enum with the context a reader needs (secret id,
//! host:port, path); this module only wraps them and decides the process exit code
//! (sysexits, as documented in the README). No message built here or below may contain a
//! password or the secret JSON: errors carry names, ids and classes, never values.

use crate::config::ConfigError;
use crate::db::WaitError;
use crate::render::write::WriteError;
use crate::secret::SecretError;

/// sysexits(3) codes used by the binary. Kept together so the README table and the code
/// cannot drift apart silently (`exit_codes_are_the_documented_ones` pins them).
pub mod exit {
    pub const OK: u8 = 0;
    pub const USAGE: u8 = 64;
    pub const DATA_ERR: u8 = 65;
    pub const UNAVAILABLE: u8 = 69;
    pub const SOFTWARE: u8 = 70;
    pub const CANT_CREATE: u8 = 73;
    pub const NO_PERM: u8 = 77;
    pub const CONFIG: u8 = 78;
    /// A shell's convention for "killed by signal N": 128 + N.
    pub const SIGINT: u8 = 130;
    pub const SIGTERM: u8 = 143;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Wait(#[from] WaitError),
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A stop signal arrived before the flow finished; the out-dir holds no `ready` marker.
    #[error("interrupted by {0} before the database was ready; no ready marker was written")]
    Interrupted(crate::sidecar::Signal),
    /// `exec` could not run its command; the code is a shell's (126, 127).
    #[error("cannot run {program:?}: {reason}")]
    Exec {
        program: String,
        reason: String,
        code: u8,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => exit::CONFIG,
            Error::Secret(e) => e.exit_code(),
            Error::Wait(e) => e.exit_code(),
            Error::Write(_) => exit::CANT_CREATE,
            Error::Interrupted(crate::sidecar::Signal::Interrupt) => exit::SIGINT,
            Error::Interrupted(crate::sidecar::Signal::Terminate) => exit::SIGTERM,
            Error::Exec { code, .. } => *code,
            Error::Internal(_) => exit::SOFTWARE,
        }
    }

    /// Short stable name for the final log line.
    pub fn class(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Secret(e) => e.class(),
            Error::Wait(e) => e.class(),
            Error::Write(_) => "out_dir",
            Error::Interrupted(_) => "interrupted",
            Error::Exec { .. } => "exec",
            Error::Internal(_) => "internal",
        }
    }
}

/// Formats an error with its whole `source()` chain on one line, the way `anyhow`'s `{:#}`
/// does, so the log line and stderr carry the root cause (e.g. "connection refused").
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        // Wrapper errors often repeat their source's text; saying it twice helps nobody.
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_documented_ones() {
        assert_eq!(
            [
                exit::OK,
                exit::USAGE,
                exit::DATA_ERR,
                exit::UNAVAILABLE,
                exit::SOFTWARE,
                exit::CANT_CREATE,
                exit::NO_PERM,
                exit::CONFIG
            ],
            [0, 64, 65, 69, 70, 73, 77, 78]
        );
    }

    #[test]
    fn chain_joins_sources_without_repeating_them() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("connecting to db:5432")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(
            chain(&Outer(io)),
            "connecting to db:5432: connection refused"
        );
    }
}
