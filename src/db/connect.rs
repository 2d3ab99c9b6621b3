//! One login, and what its failure means.
//!
//! A login is the whole of TCP + TLS + authentication; the caller bounds it with the
//! per-attempt timeout. A [`Session`] is closed explicitly so the server sees a clean
//! Terminate and no connection outlives its purpose (an idle connection would keep Aurora
//! Serverless v2 from pausing).

use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::tls::{SslMode, Tls};
use crate::secret::Target;

/// Shown in `pg_stat_activity.application_name`, so operators can tell our logins apart.
pub const APPLICATION_NAME: &str = "aurora-sidecar";

pub struct Session {
    pub client: Client,
    connection: JoinHandle<()>,
}

impl Session {
    /// Drops the client (which sends Terminate) and waits briefly for the socket to close.
    pub async fn close(self) {
        drop(self.client);
        // The connection task ends as soon as the server acknowledges; a second is plenty
        // and keeps a wedged socket from holding up the flow.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.connection).await;
    }
}

/// Logs in to `database` on the target's server.
pub async fn login(
    target: &Target,
    database: &str,
    tls: &Tls,
) -> Result<Session, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(&target.user)
        .password(target.password.expose_secret())
        .dbname(database)
        .application_name(APPLICATION_NAME)
        .ssl_mode(tls.mode.wire_mode());
    let (client, connection) = config.connect(tls.connector()).await?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection closed with an error");
        }
    });
    Ok(Session { client, connection })
}

/// What a failed login or statement means for the wait loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Network trouble, server starting/resuming/shutting down, too many connections.
    Transient,
    /// 28P01: the password was rejected (a rotation race, or a wrong secret).
    PasswordRejected,
    /// 28000: not allowed in (Aurora reports this briefly while resuming from 0 ACU).
    AuthorizationRejected,
    /// 28000 because pg_hba only allows TLS and sslmode is disable.
    TlsRequiredByServer,
    /// 3D000: the database does not exist.
    MissingDatabase,
    /// 42501: insufficient privilege (no CREATEDB).
    NoPrivilege,
    /// The server certificate failed verification.
    TlsVerification,
    /// sslmode require or stronger, but the server does not speak TLS.
    TlsUnsupportedByServer,
    /// Anything else: reported as is, not retried.
    Other,
}

impl ErrorKind {
    /// Short stable name for logs and `status.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::PasswordRejected => "password_rejected",
            ErrorKind::AuthorizationRejected => "authorization_rejected",
            ErrorKind::TlsRequiredByServer => "tls_required",
            ErrorKind::MissingDatabase => "missing_database",
            ErrorKind::NoPrivilege => "no_privilege",
            ErrorKind::TlsVerification => "tls_verification",
            ErrorKind::TlsUnsupportedByServer => "tls_unsupported",
            ErrorKind::Other => "other",
        }
    }
}

/// Classifies a tokio-postgres error. `mode` disambiguates 28000.
pub fn classify(err: &tokio_postgres::Error, mode: SslMode) -> ErrorKind {
    if let Some(db) = err.as_db_error() {
        return classify_sqlstate(db.code(), db.message(), mode);
    }
    if let Some(kind) = tls_kind(err) {
        return kind;
    }
    // Everything else without a SQLSTATE is the transport: refused, reset, DNS, EOF in the
    // middle of a handshake while the server resumes, a closed connection.
    ErrorKind::Transient
}

pub fn classify_sqlstate(code: &SqlState, message: &str, mode: SslMode) -> ErrorKind {
    let c = code.code();
    match c {
        "28P01" => ErrorKind::PasswordRejected,
        "28000"
            if mode == SslMode::Disable
                && (message.contains("no encryption") || message.contains("SSL off")) =>
        {
            ErrorKind::TlsRequiredByServer
        }
        "28000" => ErrorKind::AuthorizationRejected,
        "3D000" => ErrorKind::MissingDatabase,
        "42501" => ErrorKind::NoPrivilege,
        // 57P03 cannot_connect_now (starting up, resuming), 57P01/57P02 admin/crash
        // shutdown (failover), 53xxx insufficient resources (too many connections),
        // 08xxx connection exceptions, 55006 object in use (template busy during a
        // concurrent CREATE DATABASE).
        "57P03" | "57P01" | "57P02" | "55006" => ErrorKind::Transient,
        _ if c.starts_with("08") || c.starts_with("53") => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

fn tls_kind(err: &tokio_postgres::Error) -> Option<ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = rustls_error(e) {
            return Some(match r {
                rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::InvalidCertRevocationList(_) => ErrorKind::TlsVerification,
                _ => ErrorKind::Other,
            });
        }
        // tokio-postgres reports sslmode=require against a non-TLS server as a plain
        // message; there is no typed error to match.
        if e.to_string() == "server does not support TLS" {
            return Some(ErrorKind::TlsUnsupportedByServer);
        }
        cur = e.source();
    }
    None
}

/// rustls errors arrive wrapped in `io::Error`, whose `source()` skips the wrapped error
/// itself, so it has to be unwrapped by hand.
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(code: &str, msg: &str, mode: SslMode) -> ErrorKind {
        classify_sqlstate(&SqlState::from_code(code), msg, mode)
    }

    #[test]
    fn resume_and_failover_states_are_transient() {
        for code in [
            "57P03", "57P01", "57P02", "53300", "53400", "08006", "08001", "55006",
        ] {
            assert_eq!(
                kind(code, "", SslMode::Require),
                ErrorKind::Transient,
                "{code}"
            );
        }
    }

    #[test]
    fn auth_and_privilege_states_are_distinguished() {
        assert_eq!(
            kind("28P01", "", SslMode::Require),
            ErrorKind::PasswordRejected
        );
        assert_eq!(
            kind("28000", "no pg_hba.conf entry", SslMode::Require),
            ErrorKind::AuthorizationRejected
        );
        assert_eq!(
            kind("3D000", "", SslMode::Require),
            ErrorKind::MissingDatabase
        );
        assert_eq!(kind("42501", "", SslMode::Require), ErrorKind::NoPrivilege);
        assert_eq!(kind("42601", "", SslMode::Require), ErrorKind::Other);
    }

    #[test]
    fn hostssl_only_rejection_of_a_plaintext_login_is_a_tls_requirement() {
        let pg15 = "no pg_hba.conf entry for host \"127.0.0.1\", user \"u\", database \"d\", no encryption";
        assert_eq!(
            kind("28000", pg15, SslMode::Disable),
            ErrorKind::TlsRequiredByServer
        );
        // With TLS on, the same SQLSTATE is the Aurora-resume case and stays retryable.
        assert_eq!(
            kind("28000", pg15, SslMode::Require),
            ErrorKind::AuthorizationRejected
        );
    }

    #[test]
    fn rustls_certificate_errors_are_found_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, inner);
        assert!(matches!(
            rustls_error(&io),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ));
    }
}
