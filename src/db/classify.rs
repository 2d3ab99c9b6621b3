//! What a failure is, from the error alone: its class (SQLSTATE, I/O, typed rustls
//! errors), whether the server took part, what a failed certificate check found. Typed
//! and decided once: the wait, the refresh check and doctor all read a failure through
//! here (their advice is in `hint`, what each run does about it in `remedy`).

use tokio_postgres::error::SqlState;

use super::guard::{InsecureAuth, Unparsed};
use crate::class::ErrorClass;
use crate::display::causes;
use crate::modes::SslMode;

/// Which step of the job a database error came from; it changes what some SQLSTATEs
/// mean (3D000 on the maintenance database is fatal) and what the message advises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Logging in to the app database.
    Login,
    /// Creating the app database through the maintenance database.
    Provision,
    /// Setting the app role up with the admin credentials (`bootstrap`).
    Bootstrap,
}

/// Whether the server took part in a failed attempt: what a retry would cost it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// Nothing listened (connection refused, host or network unreachable): a retry costs
    /// the server nothing, so it may come soon.
    Refused,
    /// The server answered (an error response, or it closed the connection): every retry
    /// costs it a backend.
    Answered,
    /// Unknown: name resolution failed, or no answer at all.
    Unknown,
}

/// How far an attempt got: an error response means the server answered; refused or
/// unreachable means nothing listened; everything else (DNS, a dropped connection
/// mid-handshake counts as answered) is judged from the I/O error's kind.
pub fn contact(err: &tokio_postgres::Error) -> Contact {
    if err.as_db_error().is_some() {
        return Contact::Answered;
    }
    let io = causes(err).find_map(|e| e.downcast_ref::<std::io::Error>());
    if let Some(io) = io {
        use std::io::ErrorKind as K;
        return match io.kind() {
            K::ConnectionRefused
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::AddrNotAvailable => Contact::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof | K::BrokenPipe => {
                Contact::Answered
            }
            _ => Contact::Unknown,
        };
    }
    // tokio-postgres reports a connection the server closed as a plain "closed" error.
    if err.is_closed() {
        Contact::Answered
    } else {
        Contact::Unknown
    }
}

/// Classifies a tokio-postgres error. `mode` disambiguates 28000.
pub fn classify(err: &tokio_postgres::Error, mode: SslMode) -> ErrorClass {
    if let Some(db) = err.as_db_error() {
        return classify_sqlstate(db.code(), db.message(), mode);
    }
    if let Some(class) = tls_class(err) {
        return class;
    }
    // A result the server sent in a type or nullness the query cannot have: not a
    // passing failure of the transport.
    if causes(err).any(|e| {
        e.is::<tokio_postgres::types::WrongType>() || e.is::<tokio_postgres::types::WasNull>()
    }) {
        return ErrorClass::Other;
    }
    // Everything else without a SQLSTATE is the transport: refused, reset, DNS, EOF in the
    // middle of a handshake while the server resumes, a closed connection.
    ErrorClass::Transient
}

pub fn classify_sqlstate(code: &SqlState, message: &str, mode: SslMode) -> ErrorClass {
    let c = code.code();
    match c {
        "28P01" => ErrorClass::PasswordRejected,
        "28000"
            if mode == SslMode::Disable
                && (message.contains("no encryption") || message.contains("SSL off")) =>
        {
            ErrorClass::TlsRequired
        }
        // What Aurora (and any PAM-authenticated user) answers to a rejected IAM token, or
        // to a password for a user granted rds_iam.
        "28000" if message.starts_with("PAM authentication failed") => ErrorClass::TokenRejected,
        "28000" => ErrorClass::AuthorizationRejected,
        "3D000" => ErrorClass::MissingDatabase,
        "42501" => ErrorClass::NoPrivilege,
        // 57P03 cannot_connect_now (starting up, resuming), 57P01/57P02 admin/crash
        // shutdown (failover), 53xxx insufficient resources (too many connections),
        // 08xxx connection exceptions, 55006 object in use (template busy during a
        // concurrent CREATE DATABASE).
        "57P03" | "57P01" | "57P02" | "55006" => ErrorClass::Transient,
        // Two sessions changing one catalog row at once (concurrent ALTER ROLE or ALTER
        // DATABASE OWNER from tasks starting together): the loser may simply try again.
        "XX000" if message == "tuple concurrently updated" => ErrorClass::Transient,
        _ if c.starts_with("08") || c.starts_with("53") => ErrorClass::Transient,
        _ => ErrorClass::Other,
    }
}

/// Required channel binding that the server did not do (an MD5 or clear-text password,
/// or a proxy that terminates TLS): tokio-postgres says so only in words.
pub fn unbound(err: &tokio_postgres::Error) -> bool {
    causes(err).any(|e| e.to_string() == "server did not use channel binding")
}

fn tls_class(err: &tokio_postgres::Error) -> Option<ErrorClass> {
    if unbound(err) {
        return Some(ErrorClass::Config);
    }
    for e in causes(err) {
        // A password asked for in clear text without TLS: only TLS (or SCRAM) fixes it.
        if io_inner::<InsecureAuth>(e).is_some() {
            return Some(ErrorClass::TlsRequired);
        }
        // An answer to the TLS request that is neither yes nor no is a tampered
        // connection, like a refused one; a message the guard cannot frame is not the
        // PostgreSQL protocol: neither gets better by retrying.
        match io_inner::<Unparsed>(e) {
            Some(Unparsed::SslAnswer(_)) => return Some(ErrorClass::TlsRequired),
            Some(_) => return Some(ErrorClass::Other),
            None => {}
        }
        if let Some(r) = rustls_error(e) {
            return Some(match r {
                rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::InvalidCertRevocationList(_) => ErrorClass::TlsVerification,
                _ => ErrorClass::Other,
            });
        }
        // tokio-postgres reports sslmode=require against a non-TLS server as a plain
        // message; there is no typed error to match.
        if e.to_string() == "server does not support TLS" {
            return Some(ErrorClass::TlsUnsupported);
        }
    }
    None
}

/// rustls errors arrive wrapped in `io::Error`, whose `source()` skips the wrapped error
/// itself, so it has to be unwrapped by hand.
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    e.downcast_ref::<rustls::Error>()
        .or_else(|| io_inner::<rustls::Error>(e))
}

/// The error of type `E` an `io::Error` wraps, if `e` is one that does.
fn io_inner<'a, E: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    e.downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<E>())
}

/// What a failed certificate check found, for the advice (`hint::certificate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertFault {
    /// The certificate does not name the host connected to (verify-full).
    NotForName,
    /// The certificate has expired (or is not valid yet).
    Expired,
    /// No CA in the bundle signed it.
    UnknownIssuer,
    /// Anything else rustls refused it for.
    Other,
}

/// The certificate fault inside `err`, if a certificate check failed there.
pub fn cert_fault(err: &(dyn std::error::Error + 'static)) -> Option<CertFault> {
    use rustls::CertificateError as C;
    causes(err).find_map(|e| match rustls_error(e)? {
        rustls::Error::InvalidCertificate(c) => Some(match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => CertFault::NotForName,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => CertFault::Expired,
            C::UnknownIssuer => CertFault::UnknownIssuer,
            _ => CertFault::Other,
        }),
        _ => None,
    })
}

/// The guard refused the conversation itself (a clear-text password without TLS, or an
/// answer that is not PostgreSQL's); its own message says what happened and what to do.
pub fn guarded(err: &tokio_postgres::Error) -> bool {
    causes(err).any(|e| io_inner::<InsecureAuth>(e).is_some() || io_inner::<Unparsed>(e).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(code: &str, msg: &str, mode: SslMode) -> ErrorClass {
        classify_sqlstate(&SqlState::from_code(code), msg, mode)
    }

    #[test]
    fn resume_and_failover_states_are_transient() {
        for code in [
            "57P03", "57P01", "57P02", "53300", "53400", "08006", "08001", "55006",
        ] {
            assert_eq!(
                kind(code, "", SslMode::Require),
                ErrorClass::Transient,
                "{code}"
            );
        }
    }

    #[test]
    fn auth_and_privilege_states_are_distinguished() {
        assert_eq!(
            kind("28P01", "", SslMode::Require),
            ErrorClass::PasswordRejected
        );
        assert_eq!(
            kind("28000", "no pg_hba.conf entry", SslMode::Require),
            ErrorClass::AuthorizationRejected
        );
        assert_eq!(
            kind("3D000", "", SslMode::Require),
            ErrorClass::MissingDatabase
        );
        assert_eq!(kind("42501", "", SslMode::Require), ErrorClass::NoPrivilege);
        assert_eq!(kind("42601", "", SslMode::Require), ErrorClass::Other);
    }

    #[test]
    fn hostssl_only_rejection_of_a_plaintext_login_is_a_tls_requirement() {
        let pg15 = "no pg_hba.conf entry for host \"127.0.0.1\", user \"u\", database \"d\", no encryption";
        assert_eq!(
            kind("28000", pg15, SslMode::Disable),
            ErrorClass::TlsRequired
        );
        // With TLS on, the same SQLSTATE is the Aurora-resume case and stays retryable.
        assert_eq!(
            kind("28000", pg15, SslMode::Require),
            ErrorClass::AuthorizationRejected
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
