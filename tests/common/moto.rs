//! moto's Secrets Manager: `MOTO_SERVER` (set by scripts/test, which creates the venv) or
//! `moto_server` on PATH. A missing moto is a test failure with instructions, never a skip.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};

use super::{Pki, free_port, watchdog};

/// The moto server one test binary shares (each test its own secret names).
pub fn shared_moto() -> &'static Moto {
    static MOTO: std::sync::OnceLock<Moto> = std::sync::OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

/// moto's Secrets Manager on a free port.
pub struct Moto {
    pub endpoint: String,
    pub port: u16,
    /// Over HTTPS: the CA (PEM) that signed its certificate.
    ca: Option<Vec<u8>>,
    child: std::process::Child,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_on(free_port())
    }

    /// On a given port: a moto "restarted" where the old one was (its state is gone).
    pub fn start_on(port: u16) -> Moto {
        Moto::spawn(port, None)
    }

    /// Over HTTPS, at `https://localhost:PORT`, with a certificate signed by the CA
    /// `ca` of `pki` (for `DNS:localhost`).
    pub fn start_tls(pki: &Pki, ca: &str) -> Moto {
        let (crt, key) = pki.server("moto", ca, "DNS:localhost");
        Moto::spawn(
            free_port(),
            Some((crt, key, pki.dir.join(format!("{ca}.crt")))),
        )
    }

    fn spawn(port: u16, tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Moto {
        let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((crt, key, _)) = &tls {
            cmd.arg("-c").arg(crt).arg("-k").arg(key);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin:?} ({e}): run the tests through scripts/test, which installs moto[server] in a venv and sets MOTO_SERVER")
            });
        watchdog(&format!("kill {}", child.id()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (endpoint, ca) = match tls {
            Some((_, _, ca)) => (
                format!("https://localhost:{port}"),
                Some(std::fs::read(ca).expect("read the CA")),
            ),
            None => (format!("http://127.0.0.1:{port}"), None),
        };
        Moto {
            endpoint,
            port,
            ca,
            child,
        }
    }

    pub async fn client(&self) -> aws_sdk_secretsmanager::Client {
        let creds = aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        );
        let conf = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(creds)
            .http_client(match &self.ca {
                // The same hyper client on ring as the sidecar's, trusting this CA alone.
                Some(pem) => aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .tls_context(
                        TlsContext::builder()
                            .with_trust_store(
                                TrustStore::empty()
                                    .with_native_roots(false)
                                    .with_pem_certificate(pem.clone()),
                            )
                            .build()
                            .expect("TLS context"),
                    )
                    .build_https(),
                None => aurora_sidecar::crypto::https_client(),
            })
            .build();
        aws_sdk_secretsmanager::Client::from_conf(conf)
    }

    /// The environment the sidecar needs to reach this moto.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            // No shared config files or IMDS lookups from the test machine.
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
