//! doctor's TLS step: the SSLRequest, the handshake with the sidecar's own verifier, and
//! what the certificate says.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::class::ErrorClass;
use crate::db::guard::{Guarded, SSL_REQUEST};
use crate::db::tls::Tls;
use crate::modes::SslMode;
use crate::secret::Target;

use super::report::Outcome;
use super::x509::certificate;

/// Asks for TLS as a PostgreSQL client does, and shakes hands with the configuration every
/// login uses; shows what the server presented.
pub(super) async fn tls_step(
    target: &Target,
    addr: SocketAddr,
    tls: &Tls,
) -> (Outcome, Option<()>) {
    if tls.mode == SslMode::Disable {
        let hint = "a server that asks for a clear-text password gets nothing (use verify-full in production)";
        return (
            Outcome::Warn("sslmode disable: no TLS".into(), hint.into()),
            Some(()),
        );
    }
    // The socket type every login uses (allowing any authentication: no login happens
    // here), so the TLS code is the logins' own, not a second copy of it.
    let mut stream = Guarded::new(&addr.ip().to_string(), addr.port(), true);
    match offers_tls(&mut stream).await {
        // The guard refused the answer (neither S nor N): what a tampered connection
        // looks like; nothing more is sent to it.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            let hint = "check what listens at this address; use --sslmode verify-full";
            return (
                Outcome::fail(ErrorClass::TlsRequired, e.to_string(), hint),
                None,
            );
        }
        Err(e) => {
            let detail = format!("the server closed the connection: {e}");
            return (
                Outcome::fail(
                    ErrorClass::Transient,
                    detail,
                    "the port may not be PostgreSQL's",
                ),
                None,
            );
        }
        Ok(false) if tls.mode == SslMode::Prefer => {
            let hint =
                "passwords then rely on SCRAM alone; enable ssl on the server, and use verify-full";
            return (
                Outcome::Warn("the server does not offer TLS".into(), hint.into()),
                Some(()),
            );
        }
        Ok(false) => {
            let detail = format!("the server does not offer TLS (sslmode {})", tls.mode);
            let hint = "enable ssl on the server, or use --sslmode prefer or disable";
            return (
                Outcome::fail(ErrorClass::TlsUnsupported, detail, hint),
                None,
            );
        }
        Ok(true) => {}
    }
    let Ok(name) = rustls::pki_types::ServerName::try_from(target.host.clone()) else {
        let detail = format!("{} is not a valid TLS server name", target.host);
        return (
            Outcome::fail(ErrorClass::Config, detail, "use the cluster's DNS name"),
            None,
        );
    };
    let connector = tokio_rustls::TlsConnector::from(tls.client_config());
    match connector.connect(name, stream).await {
        Ok(conn) => (shook_hands(conn.get_ref().1), Some(())),
        Err(e) => (handshake_failed(&target.host, &e), None),
    }
}

/// The SSLRequest, as a PostgreSQL client sends it; whether the server answered `S`.
pub(super) async fn offers_tls(stream: &mut Guarded) -> std::io::Result<bool> {
    stream.write_all(&SSL_REQUEST).await?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    Ok(answer[0] == b'S')
}

/// What the server presented: protocol, cipher, certificate; a warning near expiry.
pub(super) fn shook_hands(session: &rustls::ClientConnection) -> Outcome {
    let version = session
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    let suite = session
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let leaf = session.peer_certificates().and_then(|c| c.first());
    let (cert, expires) = leaf.map(|c| certificate(c.as_ref())).unwrap_or_default();
    let detail = format!("{version}, {suite}; {cert}");
    if expires.is_some_and(|t| t < SystemTime::now() + Duration::from_secs(30 * 86_400)) {
        let hint = "the server certificate expires within 30 days (or has): rotate the cluster's certificate authority (RDS: modify the instance's CA)";
        return Outcome::Warn(detail, hint.into());
    }
    Outcome::Ok(detail)
}

/// A failed handshake, with the usual cause: the name, the expiry, or the CA bundle.
pub(super) fn handshake_failed(host: &str, e: &std::io::Error) -> Outcome {
    let why = e.to_string().to_lowercase();
    let hint = if why.contains("not valid for name") {
        format!(
            "the certificate does not name {host}: connect by the name it carries (the cluster endpoint), or use verify-ca"
        )
    } else if why.contains("expired") {
        "the server certificate has expired: rotate the cluster's certificate".to_string()
    } else {
        "the certificate is not signed by a CA in the CA bundle (--sslrootcert, or the image's RDS bundle): give the RDS global bundle".to_string()
    };
    Outcome::Fail(
        ErrorClass::TlsVerification,
        format!("handshake with {host} failed: {e}"),
        Some(hint),
    )
}
