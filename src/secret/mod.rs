//! Credentials: where they come from, how the secret JSON is parsed, and the validated
//! connection target built from them.
//!
//! Invariants:
//! - the password and the raw secret JSON live in [`SecretString`] from the moment they are
//!   read; nothing here implements `Display` for them and `Debug` is redacted;
//! - parse errors name the *field* and the *source*, never a value: serde's own messages
//!   are not used for typed fields because they quote the offending value
//!   ("invalid type: integer `12345`"), which could be a password.

pub mod aws;
mod local;
mod names;
mod parse;
mod target;

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use crate::class::ErrorClass;
use local::local_credentials;
pub use local::{libpq_from, resolve_local};
pub use names::{MAX_IDENTIFIER_BYTES, check_identifier};
pub use parse::parse_secret_json;
pub use target::{Overrides, Target, authority, build_target};

/// Secrets Manager's own limit on a secret value. A local source larger than this is
/// refused without being read in full.
pub const MAX_SECRET_BYTES: usize = 65_536;

/// Where the secret comes from; exactly one per run (see `config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// AWS Secrets Manager, by ARN or name.
    SecretsManager { secret_id: String },
    /// An environment variable holding the secret JSON (ECS/Copilot `secrets:`).
    Env { name: String },
    /// A file holding the secret JSON (docker secrets, CSI mounts).
    File { path: PathBuf },
    /// `PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE` (local compose).
    Libpq,
}

impl Source {
    /// The environment variable that holds the secret (or its password) for this source:
    /// what `exec` keeps from its child.
    pub fn secret_variable(&self) -> Option<&str> {
        match self {
            Source::Env { name } => Some(name),
            Source::Libpq => Some("PGPASSWORD"),
            Source::SecretsManager { .. } | Source::File { .. } => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::SecretsManager { secret_id } => write!(f, "Secrets Manager secret {secret_id}"),
            Source::Env { name } => write!(f, "environment variable {name}"),
            Source::File { path } => write!(f, "secret file {}", path.display()),
            Source::Libpq => f.write_str("libpq environment (PG* variables)"),
        }
    }
}

/// What a secret says, before flags are applied. Every field but the password is optional
/// here because the RDS-managed master secret carries only `username` and `password`.
#[derive(Debug)]
pub struct Credentials {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub dbname: Option<String>,
}

/// The secret after resolution, with the version that produced it (Secrets Manager only)
/// and, once an IAM token is signed into the target, when that token expires.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub target: Target,
    pub version: Option<String>,
    pub token_expires_at: Option<std::time::SystemTime>,
}

/// What an admin secret holds (its error and doctor's advice).
pub const ADMIN_SHAPE: &str = "the admin secret is the cluster's master secret: {\"username\", \"password\"}, host and port optional";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{origin}: {reason}")]
    Malformed { origin: String, reason: String },
    #[error(
        "{origin}: engine {engine:?} is not PostgreSQL; aurora-sidecar supports engine \"postgres\" or \"aurora-postgresql\""
    )]
    UnsupportedEngine { origin: String, engine: String },
    #[error("{origin}: {field} is missing; {hint}")]
    MissingTarget {
        origin: String,
        field: &'static str,
        hint: &'static str,
    },
    #[error(
        "{what} {name:?} is {len} bytes; PostgreSQL silently truncates identifiers longer than {MAX_IDENTIFIER_BYTES} bytes"
    )]
    NameTooLong {
        what: &'static str,
        name: String,
        len: usize,
    },
    #[error("{origin}: {field} {value:?} {reason}")]
    Uncarriable {
        origin: String,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("environment variable {name} is not set; it should hold the secret JSON")]
    EnvMissing { name: String },
    #[error("cannot read secret file {}", path.display())]
    FileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no secret source given and {var} is not set: pass --secret-id, --secret-env or --secret-file (or set DB_SECRET), or set PGHOST, PGUSER and PGPASSWORD (--host and --user work too; --iam-auth needs no password)"
    )]
    LibpqMissing { var: &'static str },
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
}

impl SecretError {
    /// Whether waiting and asking again can help (throttling, timeouts, 5xx).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SecretError::Aws(e) if e.is_retryable())
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            SecretError::Aws(e) => e.class(),
            SecretError::Malformed { .. } => ErrorClass::SecretMalformed,
            SecretError::UnsupportedEngine { .. }
            | SecretError::MissingTarget { .. }
            | SecretError::NameTooLong { .. }
            | SecretError::Uncarriable { .. }
            | SecretError::EnvMissing { .. }
            | SecretError::FileRead { .. }
            | SecretError::LibpqMissing { .. } => ErrorClass::Config,
        }
    }
}

/// Resolves the configured source, keeping the Secrets Manager client between calls so
/// re-resolution (rotation races, refresh) does not rebuild it.
pub struct Resolver {
    source: Source,
    overrides: Overrides,
    client: Option<aws::SecretsManager>,
}

impl Resolver {
    pub fn new(source: Source, overrides: Overrides) -> Self {
        Self {
            source,
            overrides,
            client: None,
        }
    }

    /// Whether the source can change while the process runs (env and libpq cannot).
    pub fn can_change(&self) -> bool {
        matches!(
            self.source,
            Source::SecretsManager { .. } | Source::File { .. }
        )
    }

    async fn client(&mut self, secret_id: &str) -> Result<&aws::SecretsManager, SecretError> {
        Ok(match &mut self.client {
            Some(c) => c,
            slot => slot.insert(aws::SecretsManager::from_env(secret_id).await?),
        })
    }

    pub async fn resolve(&mut self) -> Result<Resolved, SecretError> {
        let (creds, version) = self.credentials().await?;
        Ok(Resolved {
            target: build_target(creds, &self.overrides, &self.source)?,
            version,
            token_expires_at: None,
        })
    }

    /// Secrets Manager's DescribeSecret: the `AWSCURRENT` version id (`None` for the other
    /// sources, and for a secret without one).
    pub async fn current_version(&mut self) -> Result<Option<String>, SecretError> {
        let Source::SecretsManager { secret_id } = &self.source else {
            return Ok(None);
        };
        let secret_id = secret_id.clone();
        Ok(self
            .client(&secret_id)
            .await?
            .current_version(&secret_id)
            .await?)
    }

    /// The source's credentials as parsed, and the Secrets Manager version they came from.
    pub async fn credentials(&mut self) -> Result<(Credentials, Option<String>), SecretError> {
        let Source::SecretsManager { secret_id } = &self.source else {
            return Ok((local_credentials(&self.source)?, None));
        };
        let secret_id = secret_id.clone();
        let value = self.client(&secret_id).await?.current(&secret_id).await?;
        let creds = parse_secret_json(value.text.expose_secret(), &self.source.to_string())?;
        Ok((creds, value.version_id))
    }

    /// The admin (bootstrap) login: `username` and `password` from this source (the
    /// master secret), host and port from it or else the app's, and `database` (the
    /// maintenance database).
    pub async fn admin_target(
        &mut self,
        app: &Target,
        database: &str,
    ) -> Result<Target, SecretError> {
        let (creds, _) = self.credentials().await?;
        target::admin_target(creds, app, database, &self.source.to_string())
    }

    /// Looks for credentials other than `published`. Secrets Manager: DescribeSecret, and
    /// GetSecretValue only when the `AWSCURRENT` version differs from the published one;
    /// a file is re-read and compared.
    pub async fn check(&mut self, published: &Resolved) -> Result<Rotation, SecretError> {
        match &self.source {
            Source::Env { .. } | Source::Libpq => Ok(Rotation::CannotChange),
            Source::SecretsManager { secret_id } => {
                let secret_id = secret_id.clone();
                let current = self
                    .client(&secret_id)
                    .await?
                    .current_version(&secret_id)
                    .await?;
                if current.is_some() && current == published.version {
                    return Ok(Rotation::Unchanged);
                }
                let fresh = self.resolve().await?;
                Ok(changed(fresh, published))
            }
            Source::File { .. } => {
                let fresh = self.resolve().await?;
                Ok(changed(fresh, published))
            }
        }
    }
}

fn changed(fresh: Resolved, published: &Resolved) -> Rotation {
    if fresh.version == published.version && fresh.target.same_login(&published.target) {
        Rotation::Unchanged
    } else {
        Rotation::Changed(fresh)
    }
}

/// The result of a refresh check.
#[derive(Debug)]
pub enum Rotation {
    Unchanged,
    /// New credentials, not yet validated.
    Changed(Resolved),
    /// The source is fixed for the life of the process (env, libpq).
    CannotChange,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Source {
        Source::Env { name: "t".into() }
    }

    fn creds(host: Option<&str>, db: Option<&str>) -> Credentials {
        Credentials {
            host: host.map(Into::into),
            port: None,
            username: Some("app".into()),
            password: Some(SecretString::from("pw")),
            dbname: db.map(Into::into),
        }
    }

    #[test]
    fn newline_in_password_is_rejected() {
        let creds =
            parse::parse_secret_json(r#"{"host":"h","username":"u","password":"a\nb"}"#, "t")
                .expect("parsed");
        let err = build_target(creds, &Overrides::default(), &src()).expect_err("newline");
        assert!(err.to_string().contains("newline"), "{err}");
    }

    #[test]
    fn pgpassword_with_a_newline_is_refused_like_the_json_one() {
        let env = |k: &str| match k {
            "PGHOST" => Some("h".to_string()),
            "PGUSER" => Some("u".to_string()),
            "PGPASSWORD" => Some("line1\nh:5432:*:u:other".to_string()),
            _ => None,
        };
        let creds = libpq_from(env).expect("read");
        let err = build_target(creds, &Overrides::default(), &Source::Libpq).expect_err("newline");
        assert_eq!(err.class(), ErrorClass::SecretMalformed);
        assert!(
            err.to_string().contains("PGPASSWORD contains a newline"),
            "{err}"
        );
        assert!(!err.to_string().contains("other"), "{err}");
    }

    #[test]
    fn a_password_is_required_unless_iam_signs_one() {
        let mut c = creds(Some("h"), None);
        c.password = None;
        let err = build_target(c, &Overrides::default(), &src()).expect_err("required");
        assert!(
            err.to_string().contains("field \"password\" is missing"),
            "{err}"
        );
        assert_eq!(err.class(), ErrorClass::SecretMalformed);
        let mut c = creds(Some("h"), None);
        c.password = None;
        let iam = Overrides {
            password_required: false,
            ..Overrides::default()
        };
        let t = build_target(c, &iam, &src()).expect("IAM needs no password");
        assert_eq!(t.password.expose_secret(), "");
    }

    #[test]
    fn overrides_win_over_the_secret() {
        let o = Overrides {
            host: Some("override".into()),
            port: Some(6543),
            database: Some("other".into()),
            user: Some("flag-user".into()),
            ..Overrides::default()
        };
        let t = build_target(creds(Some("secret-host"), Some("db")), &o, &src()).expect("valid");
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.database.as_str(),
                t.user.as_str()
            ),
            ("override", 6543, "other", "flag-user")
        );
    }

    #[test]
    fn master_secret_without_host_needs_the_host_flag() {
        let err =
            build_target(creds(None, None), &Overrides::default(), &src()).expect_err("no host");
        assert!(err.to_string().contains("host is missing"), "{err}");
        assert_eq!(err.class(), ErrorClass::Config);
    }

    #[test]
    fn database_defaults_to_the_user_name_like_libpq() {
        let t = build_target(creds(Some("h"), None), &Overrides::default(), &src()).expect("valid");
        assert_eq!((t.database.as_str(), t.port), ("app", 5432));
    }

    #[test]
    fn names_over_63_bytes_are_rejected() {
        let long = "d".repeat(64);
        let err = build_target(creds(Some("h"), Some(&long)), &Overrides::default(), &src())
            .expect_err("too long");
        assert!(
            matches!(err, SecretError::NameTooLong { len: 64, .. }),
            "{err}"
        );
        // 63 bytes of multi-byte characters is fine; 64 bytes is not.
        let ok = "é".repeat(31) + "x";
        assert!(check_identifier("database name", &ok).is_ok());
        assert!(check_identifier("database name", &(ok + "y")).is_err());
    }

    #[test]
    fn newline_in_a_name_is_rejected_without_quoting_the_value() {
        let err = build_target(
            creds(Some("h"), Some("a\nb")),
            &Overrides::default(),
            &src(),
        )
        .expect_err("control");
        assert!(err.to_string().contains("\"dbname\""), "{err}");
        assert_eq!(err.class(), ErrorClass::SecretMalformed);
    }

    #[test]
    fn libpq_variables_become_credentials() {
        let env = |k: &str| match k {
            "PGHOST" => Some("localhost".to_string()),
            "PGPORT" => Some("5433".to_string()),
            "PGUSER" => Some("u".to_string()),
            "PGPASSWORD" => Some("p".to_string()),
            _ => None,
        };
        let c = libpq_from(env).expect("complete");
        assert_eq!(
            (c.host.as_deref(), c.port, c.dbname.as_deref()),
            (Some("localhost"), Some(5433), None)
        );
        let mut bare = libpq_from(|k| (k == "PGHOST").then(|| "h".to_string())).expect("parses");
        bare.username = Some("u".into());
        let err =
            build_target(bare, &Overrides::default(), &Source::Libpq).expect_err("no password");
        assert!(err.to_string().contains("PGPASSWORD"), "{err}");
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let t = build_target(creds(Some("h"), None), &Overrides::default(), &src()).expect("valid");
        let s = format!("{t:?} {:?}", creds(Some("h"), None));
        assert!(!s.contains("\"pw\""), "{s}");
        assert!(s.to_lowercase().contains("[redacted]"), "{s}");
    }
}
