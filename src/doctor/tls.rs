//! doctor's TLS step: the SSLRequest, the handshake with the sidecar's own verifier, and
//! what the certificate says.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::class::ErrorClass;
use crate::db::classify::{CertFault, Stage, cert_fault};
use crate::db::guard::{Guarded, SSL_REQUEST};
use crate::db::hint;
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
    if let Some(answer) = no_tls(offers_tls(&mut stream).await, tls.mode) {
        return answer;
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

/// What an SSLRequest answered with anything but `S` means (`None` for `S`: go on to the
/// handshake).
fn no_tls(offered: std::io::Result<bool>, mode: SslMode) -> Option<(Outcome, Option<()>)> {
    Some(match offered {
        // The guard refused the answer (neither S nor N): what a tampered connection
        // looks like; nothing more is sent to it.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => (
            Outcome::fail(ErrorClass::TlsRequired, e.to_string(), hint::TAMPERED),
            None,
        ),
        Err(e) => {
            let detail = format!("the server closed the connection: {e}");
            let hint = "the port may not be PostgreSQL's";
            (Outcome::fail(ErrorClass::Transient, detail, hint), None)
        }
        Ok(false) if mode == SslMode::Prefer => {
            let hint =
                "passwords then rely on SCRAM alone; enable ssl on the server, and use verify-full";
            let detail = "the server does not offer TLS".into();
            (Outcome::Warn(detail, hint.into()), Some(()))
        }
        Ok(false) => {
            let detail = format!("the server does not offer TLS (sslmode {mode})");
            let class = ErrorClass::TlsUnsupported;
            let hint = hint::for_class(class, Stage::Login).unwrap_or_default();
            (Outcome::fail(class, detail, hint), None)
        }
        Ok(true) => return None,
    })
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
        return Outcome::Warn(detail, hint::EXPIRING.into());
    }
    Outcome::Ok(detail)
}

/// A failed handshake, with the usual cause: the name, the expiry, or the CA bundle.
pub(super) fn handshake_failed(host: &str, e: &std::io::Error) -> Outcome {
    // The same typed reading of rustls's verdict as every login's (`classify`).
    let fault = cert_fault(e).unwrap_or(CertFault::Other);
    let hint = hint::certificate(fault, host);
    Outcome::Fail(
        ErrorClass::TlsVerification,
        format!("handshake with {host} failed: {e}"),
        Some(hint),
    )
}
