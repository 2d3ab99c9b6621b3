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
use std::time::{Duration, Instant};

use crate::class::ErrorClass;
use crate::config::{Config, ConfigError, Iam};
use crate::display::chain;
use crate::iam::{DSQL_ADMIN, Signer};
use crate::secret::{Credentials, Resolver, Source, Target, build_target};

mod admin;
mod database;
mod network;
mod out_dir;
mod report;
mod tls;
mod x509;

use report::{Outcome, TIMEOUT_HINT};
pub use report::{Report, STEPS, Status, Step};

use admin::admin;
use database::{authenticate, database};
use network::{dns, tcp};
use out_dir::out_dir;
use tls::tls_step;

/// Walks every step once. `config` is what the flags gave, or why they are unusable.
pub async fn diagnose(config: Result<Config, ConfigError>, step_timeout: Duration) -> Report {
    let mut report = Report::default();
    let started = Instant::now();
    let config = match config {
        Ok(c) => {
            report.push(started, Outcome::Ok(describe(&c)));
            c
        }
        Err(e) => {
            let e = crate::error::Error::from(e);
            let hint =
                "the message names the flag or variable; `aurora-sidecar doctor --help` lists them";
            report.push(started, Outcome::fail(e.class(), chain(&e), hint));
            report.skip_rest();
            return report;
        }
    };
    let _ = walk(&config, step_timeout, &mut report).await;
    report.skip_rest();
    report
}

/// The steps after the configuration, in [`STEPS`]' order (a step is named by its place
/// there: credentials, secret fields, dns, tcp, tls, authentication, database, out-dir,
/// admin); `None` as soon as one fails.
async fn walk(config: &Config, limit: Duration, report: &mut Report) -> Option<()> {
    let mut resolver = Resolver::new(config.source.clone(), config.overrides.clone());
    let creds = step(report, limit, credentials(config, &mut resolver)).await?;
    let target = step(report, limit, async { fields(config, creds) }).await?;
    let target = match &config.iam {
        None => target,
        Some(iam) => signed(report, limit, iam, target).await?,
    };
    let tls = config.tls.for_host(&target.host);
    let addrs = step(report, limit, dns(&target)).await?;
    step(report, limit, tcp(&addrs)).await?;
    step(report, limit, tls_step(&target, addrs[0], tls)).await?;
    let found = step(report, limit, authenticate(config, &target, tls)).await?;
    step(report, limit, database(config, &target, tls, found)).await?;
    step(report, limit, out_dir(config)).await?;
    step(report, limit, admin(config, &target)).await?;
    Some(())
}

/// With IAM: the target with a token signed as its password, told on the fields' line.
async fn signed(report: &mut Report, limit: Duration, iam: &Iam, target: Target) -> Option<Target> {
    let started = Instant::now();
    let mut signer = Signer::new(iam.region.clone(), iam.dsql);
    let what = match signer.dsql_for(&target.host) {
        true if target.user == DSQL_ADMIN => "a DSQL token (DbConnectAdmin)",
        true => "a DSQL token (DbConnect)",
        false => "an IAM token",
    };
    let resolved = crate::secret::Resolved {
        target,
        version: None,
        token_expires_at: None,
    };
    let outcome = match bounded(limit, signer.sign(resolved)).await {
        Ok(Ok(signed)) => {
            if let Some(s) = report.steps.last_mut() {
                s.detail.push_str(&format!("; {what} signed for it"));
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
    report.push(started, outcome);
    None
}

/// Runs one step bounded by `limit`, records it, and gives its value unless it failed.
async fn step<T>(
    report: &mut Report,
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
    report.push(started, outcome);
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
                ErrorClass::SecretDenied => crate::secret::aws::IAM_HINT,
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
