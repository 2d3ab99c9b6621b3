//! `doctor`: walks the path from the configuration to the out-dir once — credentials, the
//! secret's fields, DNS, TCP, TLS, authentication, the database, the out-dir, the admin —
//! with no retries and no waiting (each step bounded by `--step-timeout`), and says for
//! the first broken step what is wrong and its usual fix.
//!
//! Invariants: nothing durable is created or altered (the out-dir probe is a temporary
//! file, removed; no database is created, no role touched), every session is closed
//! before it ends, and no password, token or secret JSON appears in either output (the
//! details name fields, hosts and classes only).

use std::fmt::Write as _;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::class::ErrorClass;
use crate::config::{Config, ConfigError};
use crate::db::bootstrap::check_roles;
use crate::db::connect::{DbError, Stage, hint, login};
use crate::db::guard::{Guarded, SSL_REQUEST};
use crate::db::remedy::{Context, Remedy, remedy};
use crate::db::tls::{Tls, is_rds_host};
use crate::error::exit_code_of;
use crate::iam::Signer;
use crate::modes::SslMode;
use crate::report::{chain, millis, printable};
use crate::secret::{Credentials, Overrides, Resolver, Source, Target, build_target};

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skipped,
}

/// One step's line; `--format json` prints these as they are (a stable shape).
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub status: Status,
    pub ms: u64,
    pub detail: String,
    pub hint: Option<String>,
    pub error_class: Option<ErrorClass>,
}

/// Every step, in order.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub steps: Vec<Step>,
}

/// The steps, in the order they are walked.
pub const STEPS: [&str; 10] = [
    "configuration",
    "credentials",
    "secret fields",
    "dns",
    "tcp",
    "tls",
    "authentication",
    "database",
    "out-dir",
    "admin",
];

impl Report {
    /// 0 when nothing failed (warnings allowed); else the documented exit code of the
    /// first failed step's class.
    pub fn exit_code(&self) -> u8 {
        self.steps
            .iter()
            .find(|s| s.status == Status::Fail)
            .map_or(0, |s| {
                exit_code_of(s.error_class.unwrap_or(ErrorClass::Other))
            })
    }

    pub fn json(&self) -> String {
        #[derive(Serialize)]
        struct Shown<'a> {
            steps: &'a [Step],
            exit_code: u8,
        }
        let shown = Shown {
            steps: &self.steps,
            exit_code: self.exit_code(),
        };
        let mut out = serde_json::to_string_pretty(&shown).unwrap_or_default();
        out.push('\n');
        out
    }

    /// For people: a line a step, the hint under a failure; colour only on a terminal.
    pub fn text(&self, colour: bool) -> String {
        let mut out = String::new();
        for s in &self.steps {
            let (word, code) = match s.status {
                Status::Ok => ("ok", "32"),
                Status::Warn => ("warn", "33"),
                Status::Fail => ("FAIL", "31"),
                Status::Skipped => ("skip", "2"),
            };
            let word = if colour {
                format!("\x1b[{code}m{word:<4}\x1b[0m")
            } else {
                format!("{word:<4}")
            };
            let _ = writeln!(out, "{word} {:<14} {:>6} ms  {}", s.name, s.ms, s.detail);
            if let Some(hint) = &s.hint {
                let _ = writeln!(out, "{:>29}{hint}", "→ ");
            }
        }
        let _ = writeln!(out, "exit code {}", self.exit_code());
        out
    }

    fn push(&mut self, name: &'static str, started: Instant, outcome: Outcome) {
        let (status, detail, hint, error_class) = match outcome {
            Outcome::Ok(d) => (Status::Ok, d, None, None),
            Outcome::Warn(d, h) => (Status::Warn, d, Some(h), None),
            Outcome::Fail(class, d, h) => (Status::Fail, d, h, Some(class)),
        };
        self.steps.push(Step {
            name,
            status,
            ms: millis(started.elapsed()),
            // Text from servers and files is shown escaped.
            detail: printable(&detail),
            hint: hint.map(|h| printable(&h)),
            error_class,
        });
    }

    /// The steps not reached, after a failure.
    fn skip_rest(&mut self) {
        let done = self.steps.len();
        for name in &STEPS[done..] {
            self.steps.push(Step {
                name,
                status: Status::Skipped,
                ms: 0,
                detail: "not reached: an earlier step failed".into(),
                hint: None,
                error_class: None,
            });
        }
    }

    fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.status == Status::Fail)
    }
}

/// What one step found.
enum Outcome {
    Ok(String),
    Warn(String, String),
    Fail(ErrorClass, String, Option<String>),
}

impl Outcome {
    fn fail(class: ErrorClass, detail: impl Into<String>, hint: &str) -> Self {
        Outcome::Fail(class, detail.into(), Some(hint.to_string()))
    }
}

const TIMEOUT_HINT: &str = "nothing answered within --step-timeout: a security group or network ACL that drops the traffic (the cluster's must admit the task's on this port), a cluster in another VPC, or one still being created";

/// Walks every step once. `config` is what the flags gave, or why they are unusable.
pub async fn run(config: Result<Config, ConfigError>, step_timeout: Duration) -> Report {
    let mut report = Report::default();
    let started = Instant::now();
    let config = match config {
        Ok(c) => {
            report.push("configuration", started, Outcome::Ok(describe(&c)));
            c
        }
        Err(e) => {
            let e = crate::error::Error::from(e);
            let hint =
                "the message names the flag or variable; `aurora-sidecar doctor --help` lists them";
            report.push(
                "configuration",
                started,
                Outcome::fail(e.class(), chain(&e), hint),
            );
            report.skip_rest();
            return report;
        }
    };
    let _ = walk(&config, step_timeout, &mut report).await;
    report.skip_rest();
    report
}

/// The steps after the configuration; `None` as soon as one fails.
async fn walk(config: &Config, limit: Duration, report: &mut Report) -> Option<()> {
    let mut resolver = Resolver::new(config.source.clone(), config.overrides.clone());
    let creds = step(
        report,
        "credentials",
        limit,
        credentials(config, &mut resolver),
    )
    .await?;
    let target = step(report, "secret fields", limit, async {
        fields(config, creds)
    })
    .await?;
    let target = match &config.iam {
        None => target,
        Some(iam) => signed(report, limit, iam.region.clone(), target).await?,
    };
    let tls = config.tls.for_host(&target.host);
    let addrs = step(report, "dns", limit, dns(&target)).await?;
    step(report, "tcp", limit, tcp(&addrs)).await?;
    step(report, "tls", limit, tls_step(&target, addrs[0], tls)).await?;
    let found = step(
        report,
        "authentication",
        limit,
        authenticate(config, &target, tls),
    )
    .await?;
    step(
        report,
        "database",
        limit,
        database(config, &target, tls, found),
    )
    .await?;
    step(report, "out-dir", limit, out_dir(config)).await?;
    step(report, "admin", limit, admin(config, &target)).await?;
    Some(())
}

/// With IAM: the target with a token signed as its password, told on the fields' line.
async fn signed(
    report: &mut Report,
    limit: Duration,
    region: Option<String>,
    target: Target,
) -> Option<Target> {
    let started = Instant::now();
    let resolved = crate::secret::Resolved {
        target,
        version: None,
        token_expires_at: None,
    };
    let outcome = match bounded(limit, Signer::new(region).sign(resolved)).await {
        Ok(Ok(signed)) => {
            if let Some(s) = report.steps.last_mut() {
                s.detail.push_str("; an IAM token signed for it");
            }
            return Some(signed.target);
        }
        Ok(Err(e)) => {
            let hint = "IAM authentication signs a token with the task role's credentials: give the task a role (rds-db:connect), or set AWS_REGION";
            Outcome::fail(e.class(), chain(&e), hint)
        }
        Err(()) => Outcome::fail(
            ErrorClass::Timeout,
            "signing an IAM token took too long",
            TIMEOUT_HINT,
        ),
    };
    // The fields were fine; the token they need is not: one line for the step.
    report.steps.pop();
    report.push("secret fields", started, outcome);
    None
}

/// Runs one step bounded by `limit`, records it, and gives its value unless it failed.
async fn step<T>(
    report: &mut Report,
    name: &'static str,
    limit: Duration,
    work: impl Future<Output = (Outcome, Option<T>)>,
) -> Option<T> {
    let started = Instant::now();
    let (outcome, value) = match bounded(limit, work).await {
        Ok(done) => done,
        Err(()) => (
            Outcome::fail(
                ErrorClass::Timeout,
                format!("no answer within {limit:?}"),
                TIMEOUT_HINT,
            ),
            None,
        ),
    };
    report.push(name, started, outcome);
    if report.failed() { None } else { value }
}

async fn bounded<T>(limit: Duration, work: impl Future<Output = T>) -> Result<T, ()> {
    tokio::time::timeout(limit, work).await.map_err(|_| ())
}

fn describe(c: &Config) -> String {
    let mut d = format!("source: {}; sslmode {}", c.source, c.sslmode);
    if c.tls.rds.is_some() {
        d.push_str(" (verify-full for RDS/Aurora hosts: the image's bundle)");
    }
    if let Some(ca) = c.sslrootcert() {
        let _ = write!(d, "; CA bundle {}", ca.display());
    }
    if c.iam.is_some() {
        d.push_str("; IAM authentication");
    }
    if let Some(admin) = &c.admin {
        let _ = write!(d, "; admin credentials: {admin}");
    }
    let _ = write!(d, "; out-dir {}", c.out_dir.display());
    d
}

async fn credentials(config: &Config, resolver: &mut Resolver) -> (Outcome, Option<Credentials>) {
    // Secrets Manager: DescribeSecret first (what `run`'s refresh checks call), then
    // GetSecretValue; each names its own failure.
    let read = match resolver.current_version().await {
        Ok(_) => resolver.credentials().await,
        Err(e) => Err(e),
    };
    match read {
        Ok((creds, version)) => {
            let mut d = format!("read from {}", config.source);
            if let Source::SecretsManager { .. } = config.source {
                let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "from the ARN".into());
                let _ = write!(
                    d,
                    " (region {region}, version {})",
                    version.as_deref().unwrap_or("?")
                );
            }
            (Outcome::Ok(d), Some(creds))
        }
        Err(e) => {
            let hint = match e.class() {
                ErrorClass::SecretDenied => {
                    "the task role needs secretsmanager:GetSecretValue and DescribeSecret on this secret (and kms:Decrypt for its key); under Copilot only secrets tagged copilot-application and copilot-environment"
                }
                ErrorClass::SecretNotFound => {
                    "check the secret's name or ARN and the region (AWS_REGION, or the region in the ARN)"
                }
                ErrorClass::SecretUnavailable => {
                    "Secrets Manager did not answer: a VPC endpoint or NAT route for secretsmanager, or the credentials endpoint of the task"
                }
                _ => {
                    "the message says which field or variable; the README's Secret JSON section lists the shape"
                }
            };
            (Outcome::fail(e.class(), chain(&e), hint), None)
        }
    }
}

fn fields(config: &Config, creds: Credentials) -> (Outcome, Option<Target>) {
    let present = [
        ("host", creds.host.is_some()),
        ("port", creds.port.is_some()),
        ("username", creds.username.is_some()),
        ("password", creds.password.is_some()),
        ("dbname", creds.dbname.is_some()),
    ];
    let listed: Vec<String> = present
        .iter()
        .map(|(f, p)| format!("{f} {}", if *p { "present" } else { "absent" }))
        .collect();
    match build_target(creds, &config.overrides, &config.source) {
        Ok(t) => {
            let d = format!(
                "{}; logs in as {} to {}/{}",
                listed.join(", "),
                t.user,
                t.authority(),
                t.database
            );
            (Outcome::Ok(d), Some(t))
        }
        Err(e) => (
            Outcome::fail(
                e.class(),
                chain(&e),
                "give the missing value in the secret or with --host/--port/--user/--database",
            ),
            None,
        ),
    }
}

async fn dns(target: &Target) -> (Outcome, Option<Vec<SocketAddr>>) {
    match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
        Ok(found) => {
            let addrs: Vec<SocketAddr> = found.collect();
            if addrs.is_empty() {
                return (
                    Outcome::fail(
                        ErrorClass::Transient,
                        format!("{} resolves to no address", target.host),
                        "check the host name",
                    ),
                    None,
                );
            }
            let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
            let d = format!("{} → {}", target.host, list.join(", "));
            let public = addrs.iter().any(|a| is_public(a.ip()));
            let outcome = if public && is_rds_host(&target.host) {
                Outcome::Warn(d, "the cluster endpoint resolves to a public address: the task reaches it over the internet (publicly accessible instance, or a DNS lookup from outside the VPC); keep the cluster private".into())
            } else {
                Outcome::Ok(d)
            };
            (outcome, Some(addrs))
        }
        Err(e) => (
            Outcome::fail(
                ErrorClass::Transient,
                format!("{} does not resolve: {e}", target.host),
                "check the host name, and that the task uses the VPC's DNS (enableDnsHostnames/enableDnsSupport for private endpoints)",
            ),
            None,
        ),
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        // 100.64.0.0/10 (carrier-grade NAT) is not public either.
        IpAddr::V4(v4) => {
            let shared = v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]);
            !(v4.is_private() || v4.is_loopback() || v4.is_link_local() || shared)
        }
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local()),
    }
}

async fn tcp(addrs: &[SocketAddr]) -> (Outcome, Option<()>) {
    match TcpStream::connect(addrs[0]).await {
        Ok(_) => (Outcome::Ok(format!("connected to {}", addrs[0])), Some(())),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => (
            Outcome::fail(
                ErrorClass::Transient,
                format!("{}: connection refused", addrs[0]),
                "nothing listens on that port: the port in the secret, a cluster that is stopped or still starting",
            ),
            None,
        ),
        Err(e) => (
            Outcome::fail(
                ErrorClass::Transient,
                format!("{}: {e}", addrs[0]),
                TIMEOUT_HINT,
            ),
            None,
        ),
    }
}

/// Asks for TLS as a PostgreSQL client does, and shakes hands with the configuration every
/// login uses; shows what the server presented.
async fn tls_step(target: &Target, addr: SocketAddr, tls: &Tls) -> (Outcome, Option<()>) {
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
async fn offers_tls(stream: &mut Guarded) -> std::io::Result<bool> {
    stream.write_all(&SSL_REQUEST).await?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    Ok(answer[0] == b'S')
}

/// What the server presented: protocol, cipher, certificate; a warning near expiry.
fn shook_hands(session: &rustls::ClientConnection) -> Outcome {
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
fn handshake_failed(host: &str, e: &std::io::Error) -> Outcome {
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

/// Subject, names, issuer and expiry of a DER certificate, for the TLS line.
fn certificate(der: &[u8]) -> (String, Option<SystemTime>) {
    use x509_cert::der::Decode;
    let Ok(cert) = x509_cert::Certificate::from_der(der) else {
        return ("an unreadable certificate".into(), None);
    };
    let tbs = &cert.tbs_certificate;
    let expires = SystemTime::UNIX_EPOCH + tbs.validity.not_after.to_unix_duration();
    let names = tbs
        .extensions
        .iter()
        .flatten()
        // subjectAltName, 2.5.29.17
        .find(|ext| ext.extn_id.as_bytes() == [0x55, 0x1d, 0x11])
        .map(|ext| alt_names(ext.extn_value.as_bytes()))
        .unwrap_or_default();
    let text = format!(
        "certificate subject CN={}, names [{}], issuer CN={}, expires {}",
        common_name(&tbs.subject),
        names.join(", "),
        common_name(&tbs.issuer),
        crate::state::rfc3339(expires)
    );
    (text, Some(expires))
}

/// The DNS names and IP addresses of a subjectAltName extension's value (a DER SEQUENCE
/// of GeneralName: `[2]` dNSName, `[7]` iPAddress), read by hand: x509-cert's decoder
/// for every GeneralName choice would cost the binary more than this whole command.
fn alt_names(der: &[u8]) -> Vec<String> {
    /// One TLV: tag, value, rest; `None` when malformed.
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, b) = b.split_first()?;
        let (&first, mut b) = b.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || b.len() < n {
                return None;
            }
            let len = b[..n]
                .iter()
                .fold(0usize, |acc, &x| acc << 8 | usize::from(x));
            b = &b[n..];
            len
        };
        (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
    }
    let mut names = Vec::new();
    let Some((0x30, mut items, _)) = tlv(der) else {
        return names;
    };
    while let Some((tag, value, rest)) = tlv(items) {
        match (tag, value.len()) {
            (0x82, _) => names.push(String::from_utf8_lossy(value).into_owned()),
            (0x87, 4) => names.extend(
                <[u8; 4]>::try_from(value)
                    .ok()
                    .map(|v| IpAddr::from(v).to_string()),
            ),
            (0x87, 16) => names.extend(
                <[u8; 16]>::try_from(value)
                    .ok()
                    .map(|v| IpAddr::from(v).to_string()),
            ),
            _ => {}
        }
        items = rest;
    }
    names
}

/// The common name of an X.509 name (what a person recognises the certificate by). Not
/// x509-cert's `Display`, which carries a database of every attribute name (about 100 KB
/// of the binary).
fn common_name(name: &x509_cert::name::Name) -> String {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        // commonName, 2.5.4.3
        .find(|atv| atv.oid.as_bytes() == [0x55, 0x04, 0x03])
        .map(|atv| String::from_utf8_lossy(atv.value.value()).into_owned())
        .unwrap_or_else(|| "-".into())
}

/// What the login step found, for the database step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    LoggedIn,
    /// Authenticated, but the app database does not exist.
    NoDatabase,
    /// The login failed in a way a start puts right with the admin credentials first.
    WouldBootstrap,
}

/// One real login to the app database. A failure the admin credentials would put right
/// (`remedy`, as the wait decides it) is what a first start looks like: reported, not
/// failed, and nothing is set up.
async fn authenticate(config: &Config, target: &Target, tls: &Tls) -> (Outcome, Option<Found>) {
    match login(target, &target.database, tls).await {
        Ok(session) => {
            session.close().await;
            (
                Outcome::Ok(format!(
                    "logged in as {} (sslmode {})",
                    target.user, tls.mode
                )),
                Some(Found::LoggedIn),
            )
        }
        Err(e) => {
            let e = DbError::new(e, target, &target.database, Stage::Login, tls.mode);
            let context = Context {
                admin: config.admin.is_some(),
                bootstrapped: false,
                create: config.provisioning.create,
            };
            if remedy(e.class, e.stage, context) == Remedy::Bootstrap {
                let detail = format!(
                    "{} cannot log in yet ({}): a start would set the app role up with the admin credentials first (the admin step checks them); doctor sets nothing up",
                    target.user, e.class
                );
                return (Outcome::Ok(detail), Some(Found::WouldBootstrap));
            }
            if e.class == ErrorClass::MissingDatabase {
                return (
                    Outcome::Ok(format!("{} authenticated", target.user)),
                    Some(Found::NoDatabase),
                );
            }
            let hint = match e.class {
                ErrorClass::PasswordRejected => {
                    "the password in the secret is not the user's: a rotation the database has not seen, or the wrong secret"
                }
                ErrorClass::TokenRejected => crate::iam::REJECTED_HINT,
                ErrorClass::AuthorizationRejected => {
                    "pg_hba rejects this user, host or database, or the user lacks LOGIN/CONNECT"
                }
                class => hint(class, Stage::Login).unwrap_or("the server's message says why"),
            };
            (Outcome::fail(e.class, chain(&e), hint), None)
        }
    }
}

async fn database(
    config: &Config,
    target: &Target,
    tls: &Tls,
    found: Found,
) -> (Outcome, Option<()>) {
    match found {
        Found::LoggedIn => {}
        Found::NoDatabase => return missing_database(config, target, tls).await,
        Found::WouldBootstrap => {
            let detail = if config.provisioning.create {
                format!(
                    "the bootstrap would create database {} if it is missing, owned by the app role",
                    target.database
                )
            } else {
                format!(
                    "--no-create: the bootstrap would leave a missing database {} to someone else",
                    target.database
                )
            };
            return (Outcome::Ok(detail), Some(()));
        }
    }
    let Ok(session) = login(target, &target.database, tls).await else {
        let outcome = Outcome::fail(
            ErrorClass::Transient,
            "the second login failed",
            "run doctor again",
        );
        return (outcome, None);
    };
    let text = |sql: &'static str| {
        let client = &session.client;
        async move {
            client
                .query_one(sql, &[])
                .await
                .ok()
                .and_then(|r| r.try_get::<_, String>(0).ok())
        }
    };
    let version = text("SELECT version()").await.unwrap_or_default();
    let aurora = text("SELECT aurora_version()").await;
    let force_ssl = text("SHOW rds.force_ssl").await;
    session.close().await;
    let short = version.split(" on ").next().unwrap_or(&version);
    let mut d = format!("database {} exists; {short}", target.database);
    if let Some(a) = aurora {
        let _ = write!(d, "; Aurora {a}");
    }
    if let Some(f) = force_ssl {
        let _ = write!(d, "; rds.force_ssl {f}");
    }
    (Outcome::Ok(d), Some(()))
}

/// The app database is missing: whether the sidecar would create it.
async fn missing_database(config: &Config, target: &Target, tls: &Tls) -> (Outcome, Option<()>) {
    let maintenance = &config.provisioning.maintenance_database;
    let may = has_attribute(target, maintenance, tls, "rolcreatedb").await == Ok(true);
    let d = format!("database {} does not exist", target.database);
    match (config.provisioning.create, may) {
        (true, true) => {
            let hint = "it will be created on the first start (the user has CREATEDB)";
            (Outcome::Warn(d, hint.into()), Some(()))
        }
        (false, _) => {
            let hint = "--no-create: the sidecar waits for someone else to create it";
            (Outcome::Warn(d, hint.into()), Some(()))
        }
        (true, false) => {
            let hint = "the user may not create databases: create it beforehand, grant CREATEDB, give admin credentials (--admin-secret-*), or pass --no-create";
            (Outcome::fail(ErrorClass::NoPrivilege, d, hint), None)
        }
    }
}

/// Logs in to `database` as `target` and says whether it has `attribute` (a `pg_roles`
/// column) or is a superuser; the session is closed. A failure as its class and message.
async fn has_attribute(
    target: &Target,
    database: &str,
    tls: &Tls,
    attribute: &'static str,
) -> Result<bool, (ErrorClass, String)> {
    let session = login(target, database, tls).await.map_err(|e| {
        let e = DbError::new(e, target, database, Stage::Bootstrap, tls.mode);
        (e.class, chain(&e))
    })?;
    let sql = format!(
        "SELECT {attribute} OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
    );
    let row = session.client.query_one(&sql, &[]).await;
    session.close().await;
    // A NULL or another type from a hostile server is an answer of "no", never a panic.
    row.and_then(|r| r.try_get::<_, Option<bool>>(0))
        .map(|may| may == Some(true))
        .map_err(|e| (ErrorClass::Other, chain(&e)))
}

/// Whether the out-dir (or, when it does not exist yet, its nearest existing parent) can
/// be written: a temporary file is created and removed there.
async fn out_dir(config: &Config) -> (Outcome, Option<()>) {
    let dir = &config.out_dir;
    let probe_in = dir
        .ancestors()
        .find(|p| p.is_dir())
        .unwrap_or(Path::new("/"));
    if let Err(e) = tempfile::Builder::new()
        .prefix(".doctor.")
        .tempfile_in(probe_in)
    {
        return (
            Outcome::Fail(ErrorClass::OutDir, format!("cannot write in {}: {e}", probe_in.display()), Some("mount a writable volume at --out-dir (read-write in the sidecar, read-only in the app)".into())),
            None,
        );
    }
    let free = rustix::fs::statvfs(probe_in)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize) / 1024)
        .unwrap_or(0);
    let mut d = format!(
        "{} writable{}; {free} KiB free",
        dir.display(),
        if probe_in == dir {
            ""
        } else {
            " (its parent; it will be created)"
        }
    );
    let uid = rustix::process::geteuid().as_raw();
    let owner = match config.owner {
        Some(o) => format!("; pgpass will belong to uid {} (--owner)", o.uid),
        None => format!(
            "; pgpass will belong to uid {uid}: the app must run as it to read pgpass (0600)"
        ),
    };
    d.push_str(&owner);
    if config.owner.is_none() && uid == 0 {
        return (Outcome::Warn(d, "pgpass will belong to root: an app running as another uid cannot read it; pass --owner with the app's uid".into()), Some(()));
    }
    (Outcome::Ok(d), Some(()))
}

/// With admin credentials: whether they log in and may set the app role up.
async fn admin(config: &Config, app: &Target) -> (Outcome, Option<()>) {
    let Some(source) = &config.admin else {
        let detail = "no admin credentials given (none needed)";
        return (Outcome::Ok(detail.into()), Some(()));
    };
    let mut resolver = Resolver::new(source.clone(), Overrides::default());
    let maintenance = &config.provisioning.maintenance_database;
    let admin = match resolver.admin_target(app, maintenance).await {
        Ok(t) => t,
        Err(e) => {
            let hint =
                "the admin secret is the cluster's master secret: {\"username\", \"password\"}";
            return (Outcome::fail(e.class(), chain(&e), hint), None);
        }
    };
    // What every start with an admin secret checks first (the wait refuses to start).
    if let Err(e) = check_roles(&admin, app) {
        let hint = "the app secret must name the app's own role, not the admin or a reserved name";
        return (Outcome::fail(e.class(), chain(&e), hint), None);
    }
    let tls = config.tls.for_host(&admin.host);
    match has_attribute(&admin, maintenance, tls, "rolcreaterole").await {
        Ok(true) => {
            let detail = format!(
                "{} logs in and has CREATEROLE: it can set the app role up",
                admin.user
            );
            (Outcome::Ok(detail), Some(()))
        }
        Ok(false) => {
            let detail = format!("{} lacks CREATEROLE", admin.user);
            let hint =
                "the admin secret must be the master user's (RDS/Aurora grants it CREATEROLE)";
            (Outcome::fail(ErrorClass::NoPrivilege, detail, hint), None)
        }
        Err((class, message)) => {
            let hint = "the admin secret's password is not the admin user's: an RDS rotation the injected value predates?";
            (Outcome::fail(class, message, hint), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alt_names_reads_dns_names_and_addresses_and_survives_garbage() {
        let mut der = vec![0x30, 0x25, 0x82, 0x09];
        der.extend_from_slice(b"localhost");
        der.extend_from_slice(&[0x87, 0x04, 127, 0, 0, 1]);
        // An rfc822Name ([1]) is skipped; an IPv6 address is read.
        der.extend_from_slice(&[0x81, 0x00, 0x87, 0x10]);
        der.extend_from_slice(&[0; 15]);
        der.push(1);
        assert_eq!(alt_names(&der), ["localhost", "127.0.0.1", "::1"]);
        for cut in 0..der.len() {
            let _ = alt_names(&der[..cut]);
        }
        assert!(alt_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
    }

    #[test]
    fn a_private_address_is_not_public() {
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "100.64.1.1",
            "fd00::1",
            "::1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in ["52.95.110.1", "2600:1f18::1"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
    }

    #[test]
    fn the_exit_code_is_the_first_failures() {
        let line = |status, class| Step {
            name: "x",
            status,
            ms: 0,
            detail: String::new(),
            hint: None,
            error_class: class,
        };
        let mut report = Report::default();
        report.steps.push(line(Status::Warn, None));
        assert_eq!(report.exit_code(), 0);
        report
            .steps
            .push(line(Status::Fail, Some(ErrorClass::PasswordRejected)));
        report
            .steps
            .push(line(Status::Fail, Some(ErrorClass::OutDir)));
        assert_eq!(report.exit_code(), 77);
        assert!(report.json().contains("\"exit_code\": 77"));
    }
}
