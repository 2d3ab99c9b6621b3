//! Plain value types that several layers share: libpq's `sslmode` and the `DATABASE_URL`
//! flavour. A leaf: it imports nothing of the crate and knows nothing of clap (the CLI
//! converts its own enums into these) or of connections (`db::tls` maps `SslMode` onto
//! the wire).

use std::fmt;

/// libpq's `sslmode`, less `allow` (which only ever made sense for servers that refuse
/// TLS, and Aurora is not one). Ordered by strength, so `mode >= Require` reads as "TLS
/// is mandatory".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server certificate must be checked against a CA bundle.
    pub fn verifies(self) -> bool {
        self >= SslMode::VerifyCa
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `DATABASE_URL` flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlScheme {
    /// `ecto://…` with `ssl=true` when TLS is required (Phoenix/Ecto's default form).
    Ecto,
    /// `postgres://…` with `sslmode`/`sslrootcert` (libpq, most drivers).
    Postgres,
    /// `postgresql://…` with `sslmode`/`sslrootcert`.
    Postgresql,
}

impl UrlScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            UrlScheme::Ecto => "ecto",
            UrlScheme::Postgres => "postgres",
            UrlScheme::Postgresql => "postgresql",
        }
    }
}
