//! TLS with libpq's `sslmode` meanings, built on rustls with the *ring* provider of
//! `crate::crypto` (the same one the AWS HTTPS client uses, so the tree has one).
//!
//! | mode        | encrypts             | verifies chain            | checks host name |
//! |-------------|----------------------|---------------------------|------------------|
//! | disable     | no                   | no                        | no               |
//! | prefer      | if the server can    | only with `--sslrootcert` | no               |
//! | require     | yes                  | only with `--sslrootcert` | no               |
//! | verify-ca   | yes                  | yes                       | no               |
//! | verify-full | yes                  | yes                       | yes (DNS or IP)  |
//!
//! As in libpq, `require`/`prefer` with a root certificate configured verify the chain
//! (libpq: "if a root CA file exists, the behavior of sslmode=require will be the same as
//! that of verify-ca"). The root store is the given bundle only, never the system store.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::ChannelBinding;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::endpoint::{self, Endpoint};
use crate::modes::SslMode;
use crate::render::LoginTls;

/// What tokio-postgres itself understands; verification is the connector's job.
pub fn wire_mode(mode: SslMode) -> tokio_postgres::config::SslMode {
    match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read --sslrootcert {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("--sslrootcert {} holds no usable CA certificate", path.display())]
    Empty { path: PathBuf },
    #[error("building the TLS configuration")]
    Rustls(#[source] rustls::Error),
}

/// A CA bundle, read once: the same bytes build the TLS verifier and are copied into the
/// out-dir as `rds-ca.pem`.
#[derive(Debug)]
pub struct CaBundle {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

/// The connector for one run: mode plus a rustls config shared by every attempt, the CA
/// bundle it verifies with, and how the password may travel.
#[derive(Clone)]
pub struct Tls {
    pub mode: SslMode,
    /// What the verifier trusts (and the app gets a copy of); `None` without one.
    pub ca: Option<Arc<CaBundle>>,
    connector: MakeRustlsConnect,
    /// The same rustls configuration, for `doctor`'s own handshake.
    config: Arc<ClientConfig>,
    /// SCRAM channel binding: `Require` under verify-full with a password, so a
    /// TLS-terminating man in the middle cannot relay the exchange.
    pub channel_binding: ChannelBinding,
    /// `--allow-insecure-auth`: a clear-text or MD5 password request is answered even
    /// without TLS (`db::guard`).
    pub allow_insecure_auth: bool,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// `ca` is the bundle, read once by the caller; the renderers copy it into the out-dir.
    pub fn new(mode: SslMode, ca: Option<Arc<CaBundle>>) -> Result<Self, TlsConfigError> {
        let provider = crate::crypto::provider();
        let verifier: Arc<dyn ServerCertVerifier> = match &ca {
            Some(ca) if mode != SslMode::Disable => {
                let roots = Arc::new(load_roots(&ca.path, &ca.pem)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| TlsConfigError::Rustls(rustls::Error::General(e.to_string())))?;
                if mode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
            // No roots: encrypt without verifying, as libpq's require does. Config
            // validation keeps verify-* from getting here without a bundle.
            _ => Arc::new(EncryptOnly(provider.signature_verification_algorithms)),
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsConfigError::Rustls)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self {
            mode,
            ca,
            connector: MakeRustlsConnect::new(config.clone()),
            config: Arc::new(config),
            channel_binding: ChannelBinding::Prefer,
            allow_insecure_auth: false,
        })
    }

    /// This TLS as the app's files repeat it (`render::set`).
    pub fn login_tls(&self) -> LoginTls<'_> {
        LoginTls {
            mode: self.mode,
            ca: self.ca.as_ref().map(|c| c.pem.as_slice()),
            channel_binding: self.channel_binding == ChannelBinding::Require,
        }
    }

    pub fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }

    /// The rustls configuration every login's TLS uses (`doctor` shakes hands with it).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

/// The TLS of a run, per server: `--sslmode`'s for every host, or, when the mode was left
/// to its default and the image's RDS bundle is there, verify-full against that bundle
/// for an RDS/Aurora endpoint (`rds`), the default elsewhere.
#[derive(Debug, Clone)]
pub struct TlsChoice {
    pub given: Tls,
    pub rds: Option<Tls>,
}

impl TlsChoice {
    pub fn for_host(&self, host: &str) -> &Tls {
        match &self.rds {
            Some(rds) if endpoint::kind(host) == Endpoint::Rds => rds,
            _ => &self.given,
        }
    }

    /// The TLS a login to `host` uses, as the app's files repeat it.
    pub fn login_tls(&self, host: &str) -> LoginTls<'_> {
        self.for_host(host).login_tls()
    }
}

fn load_roots(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsConfigError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

/// verify-ca: the full webpki chain check, but a name mismatch is accepted. webpki checks
/// the chain before the name, so a name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// require/prefer without roots: any certificate is accepted, but the handshake signatures
/// are still checked so the session keys really belong to the presented certificate.
#[derive(Debug)]
struct EncryptOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rds_host_gets_the_rds_connector_and_any_other_host_the_given_one() {
        let choice = TlsChoice {
            given: Tls::new(SslMode::Prefer, None).expect("prefer"),
            rds: Some(Tls::new(SslMode::Require, None).expect("stands in for verify-full")),
        };
        let host = "app.cluster-c9abcdefghij.eu-west-1.rds.amazonaws.com";
        assert_eq!(choice.for_host(host).mode, SslMode::Require);
        assert_eq!(choice.for_host("postgres").mode, SslMode::Prefer);
        let given_only = TlsChoice {
            rds: None,
            ..choice
        };
        assert_eq!(given_only.for_host(host).mode, SslMode::Prefer);
    }
}
