//! Validated configuration, built from the raw arguments (`cli`) and the environment.
//!
//! Everything that can be checked without the network is checked here, so a typo fails in
//! milliseconds with exit 78 instead of after a ten-minute wait.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio_postgres::config::ChannelBinding;

use crate::cli::{ChannelBindingArg, PrepareArgs, RunArgs};
use crate::db::admin::{Admin, AdminSource};
use crate::db::pace::Policy;
use crate::db::provision::Provisioning;
use crate::db::tls::{CaBundle, Tls, TlsChoice, TlsConfigError};
use crate::modes::SslMode;
use crate::outdir::Owner;
use crate::render::pgbouncer::{self, PgBouncer};
use crate::render::set::Settings;
use crate::secret::{self, Overrides, Source};

mod dsql;

/// The environment variable read when no source flag is given (what Copilot and ECS
/// `secrets:` inject in the seed setup).
pub const DEFAULT_SECRET_ENV: &str = "DB_SECRET";

/// Where the image carries the RDS global CA bundle; used by verify-* when
/// `--sslrootcert` is not given.
pub const BUNDLED_CA: &str = "/etc/aurora-sidecar/rds-global-bundle.pem";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--service-name {0:?} may only contain letters, digits, '_', '-' and '.'")]
    ServiceName(String),
    #[error(
        "--sslmode {0} verifies the server certificate and needs a CA bundle: pass --sslrootcert (the RDS global bundle), or use the image, which carries it at {BUNDLED_CA}"
    )]
    NoRootCert(SslMode),
    #[error("--sslrootcert {} cannot be read", .0.display())]
    RootCertUnreadable(PathBuf, #[source] std::io::Error),
    #[error(
        "--iam-auth needs TLS (RDS refuses IAM tokens without it): use --sslmode require, verify-ca or verify-full, not {0}"
    )]
    IamNeedsTls(SslMode),
    #[error(
        "--iam-auth with --refresh-interval {0:?}: tokens live 15 minutes, so they must be renewed at least every 10 minutes"
    )]
    IamRenewalTooSlow(Duration),
    #[error(
        "Aurora DSQL has no passwords: give --host and --user (or PGHOST and PGUSER) instead of {0}; the token is signed with the task role's credentials"
    )]
    DsqlSecret(String),
    #[error(
        "Aurora DSQL has one database, postgres, and no CREATE DATABASE: --database (or PGDATABASE) {0:?} cannot be used"
    )]
    DsqlDatabase(String),
    #[error(
        "Aurora DSQL has no passwords, so no admin secret: its admin logs in with a token too (--admin-iam-user admin, with --dsql-grant-arn)"
    )]
    DsqlAdmin,
    #[error(
        "Aurora DSQL's admin role is admin (the one DbConnectAdmin tokens log in as): --admin-iam-user {0:?} cannot set the app role up"
    )]
    DsqlAdminUser(String),
    #[error(
        "--admin-iam-user admin on Aurora DSQL needs --dsql-grant-arn: the IAM role ARN the app's tokens are signed with (the task role), which the admin maps the app role to"
    )]
    DsqlGrantMissing,
    #[error(
        "--dsql-grant-arn is for Aurora DSQL's admin set-up: it needs --dsql (or a DSQL host) and --admin-iam-user admin"
    )]
    DsqlGrantAlone,
    #[error("--dsql-grant-arn {0:?}: {1}")]
    DsqlGrantArn(String, &'static str),
    #[error(
        "--admin-iam-user signs the admin's IAM token with the task's credentials and needs --iam-auth for the app too (a cluster that takes no password from the admin takes none from the app)"
    )]
    AdminIamNeedsIam,
    #[error("--app-dir {} cannot be written into pgbouncer.ini: it holds a control character", .0.display())]
    PgBouncerPath(PathBuf),
    #[error(
        "--pgbouncer-host {0:?} must be a host name or an IP address, and --pgbouncer-user {1:?} letters, digits and '_': both are written into every file the app reads"
    )]
    PgBouncerName(String, String),
    #[error("the system's random source failed while choosing PgBouncer's local passwords")]
    Random,
    #[error(transparent)]
    Carry(#[from] pgbouncer::CarryError),
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
}

/// Everything `once` and `render` need, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    pub overrides: Overrides,
    pub provisioning: Provisioning,
    pub policy: Policy,
    pub out_dir: PathBuf,
    pub owner: Option<Owner>,
    /// What the app's files are rendered with besides the login (`render::set`), PgBouncer
    /// included.
    pub render: Settings,
    /// `--sslmode`, or its default for a host that is not an RDS endpoint.
    pub sslmode: SslMode,
    /// The connectors logins use, each with the CA bundle it verifies with: built from
    /// `sslmode` and `--sslrootcert`, and for an RDS endpoint when `--sslmode` was not
    /// given, verify-full against the image's bundle (`TlsChoice::for_host` decides).
    pub tls: TlsChoice,
    /// `--iam-auth`: the region to sign for when known up front (`None`: from the host).
    pub iam: Option<Iam>,
    /// `--admin-secret-*` or `--admin-iam-user`: where the admin login comes from, when
    /// given.
    pub admin: Option<AdminSource>,
}

/// What only `run` takes, validated against the rest of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunConfig {
    /// How often the token is renewed and the credentials checked; `None`: never.
    pub refresh_interval: Option<Duration>,
}

impl RunConfig {
    /// `--refresh-interval` (0: no checks). An IAM token lives 15 minutes, so with IAM
    /// authentication it must be renewed within [`MAX_IAM_RENEWAL`], and never off.
    pub fn from_args(args: &RunArgs, config: &Config) -> Result<Self, ConfigError> {
        let given = args.refresh_interval;
        let refresh_interval = never_if_zero(given);
        if config.iam.is_some() && refresh_interval.is_none_or(|d| d > MAX_IAM_RENEWAL) {
            return Err(ConfigError::IamRenewalTooSlow(given));
        }
        Ok(Self { refresh_interval })
    }
}

/// IAM database authentication settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iam {
    pub region: Option<String>,
    /// Aurora DSQL (`--dsql`, or a `*.dsql.REGION.on.aws` host): its tokens, its rules.
    pub dsql: bool,
}

/// Where the system's CA roots are (Debian's ca-certificates; the image carries them),
/// unless `SSL_CERT_FILE` names another bundle, as for OpenSSL.
pub const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Tokens live 15 minutes; renewing at least every 10 leaves a margin for a slow renewal.
pub const MAX_IAM_RENEWAL: Duration = Duration::from_secs(600);

impl Config {
    /// Validates `args`; `env` is the process environment (a parameter for tests).
    pub fn from_args(
        args: &PrepareArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let source = source(args, &env);
        let dsql = dsql::dsql(args, &env, &source)?;
        let iam = iam(args, &env, dsql);
        // None means no bootstrap.
        let admin = admin(args, iam.is_some())?;
        check_names(args)?;
        let sslmode = sslmode(args, iam.is_some())?;
        // DSQL's chain is public (Amazon Root CA): the system roots, not the RDS bundle.
        let system_roots = || env("SSL_CERT_FILE").map_or_else(|| SYSTEM_CA.into(), PathBuf::from);
        let rootcert = args.sslrootcert.clone().or_else(|| dsql.then(system_roots));
        let ca = read_ca(rootcert.as_deref(), sslmode)?;
        let tls = connector(args, sslmode, iam.is_some(), ca)?;
        let rds = rds_default(args, iam.is_some())?;
        let app_dir = args.app_dir.clone().unwrap_or_else(|| args.out_dir.clone());
        let pgbouncer = pgbouncer_settings(args, &app_dir)?;
        Ok(Self {
            source,
            overrides: Overrides {
                host: args.host.clone(),
                port: args.port,
                user: args.user.clone(),
                database: args
                    .database
                    .clone()
                    .or_else(|| dsql.then(|| "postgres".into())),
                password_required: iam.is_none(),
            },
            provisioning: Provisioning {
                create: !args.no_create && !dsql,
                maintenance_database: args.maintenance_database.clone(),
                owner: args.database_owner.clone(),
            },
            policy: Policy {
                deadline: never_if_zero(args.wait_timeout),
                attempt_timeout: args.attempt_timeout.max(Duration::from_millis(100)),
                password_retries: args.password_retries,
                ..Policy::default()
            },
            out_dir: args.out_dir.clone(),
            owner: args.owner,
            render: Settings {
                service_name: args.service_name.clone(),
                url_scheme: args.url_scheme.into(),
                app_dir,
                iam: iam.is_some(),
                pgbouncer,
            },
            sslmode,
            tls: TlsChoice { given: tls, rds },
            iam,
            admin,
        })
    }

    /// The admin login for the bootstrap, when one is configured; an IAM admin's token is
    /// signed for the app's region, DSQL or not, as the app's is.
    pub fn admin_login(&self) -> Option<Admin> {
        let (region, dsql) = self
            .iam
            .as_ref()
            .map_or((None, false), |i| (i.region.clone(), i.dsql));
        self.admin.as_ref().map(|a| Admin::new(a, region, dsql))
    }

    /// Where the CA bundle came from, for logs and messages.
    pub fn sslrootcert(&self) -> Option<&Path> {
        self.tls.given.ca.as_ref().map(|c| c.path.as_path())
    }
}

/// `--iam-auth` (implied by DSQL) and the region to sign for, when known up front.
fn iam(args: &PrepareArgs, env: impl Fn(&str) -> Option<String>, dsql: bool) -> Option<Iam> {
    (args.iam_auth || dsql).then(|| Iam {
        region: args
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .filter(|r| !r.is_empty()),
        dsql,
    })
}

/// `--admin-secret-*`, or `--admin-iam-user` (which needs IAM authentication: a cluster
/// without passwords for the admin has none for the app either).
fn admin(args: &PrepareArgs, iam: bool) -> Result<Option<AdminSource>, ConfigError> {
    if let Some(user) = &args.admin_iam_user {
        secret::check_identifier("--admin-iam-user", user)?;
        if !iam {
            return Err(ConfigError::AdminIamNeedsIam);
        }
        let dsql_grant = args.dsql_grant_arn.clone();
        return Ok(Some(AdminSource::Iam {
            user: user.clone(),
            dsql_grant,
        }));
    }
    let secret = given(
        &args.admin_secret_id,
        &args.admin_secret_env,
        &args.admin_secret_file,
    );
    Ok(secret.map(AdminSource::Secret))
}

/// `--pgbouncer`'s settings, with the local logins' passwords chosen now (48 hex digits
/// from the system's random source: safe in a URL, pgpass and PgBouncer's files alike).
fn pgbouncer_settings(
    args: &PrepareArgs,
    app_dir: &Path,
) -> Result<Option<PgBouncer>, ConfigError> {
    if !args.pgbouncer {
        return Ok(None);
    }
    secret::check_identifier("--pgbouncer-user", &args.pgbouncer_user)?;
    let (host, user) = (&args.pgbouncer_host, &args.pgbouncer_user);
    let host_ok = host.parse::<std::net::IpAddr>().is_ok()
        || !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    let user_ok = !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !(host_ok && user_ok) {
        return Err(ConfigError::PgBouncerName(host.clone(), user.clone()));
    }
    if app_dir.to_string_lossy().chars().any(char::is_control) {
        return Err(ConfigError::PgBouncerPath(app_dir.to_path_buf()));
    }
    let random = || -> Result<SecretString, ConfigError> {
        let mut bytes = [0u8; 24];
        crate::crypto::provider()
            .secure_random
            .fill(&mut bytes)
            .map_err(|_| ConfigError::Random)?;
        Ok(SecretString::from(
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        ))
    };
    Ok(Some(PgBouncer {
        host: host.clone(),
        port: args.pgbouncer_port,
        user: user.clone(),
        password: random()?,
        admin_password: random()?,
        server_idle_timeout: args.pgbouncer_idle_timeout,
        server_connect_timeout: args.attempt_timeout,
        max_password: args.pgbouncer_max_password,
        max_prepared_statements: args.pgbouncer_max_prepared_statements,
    }))
}

/// A duration flag where 0 means "never" (`--wait-timeout`, `--refresh-interval`).
fn never_if_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// `--sslmode`, or its default: IAM tokens travel as clear-text passwords, so with IAM
/// authentication the server is verified by default and TLS is required.
fn sslmode(args: &PrepareArgs, iam: bool) -> Result<SslMode, ConfigError> {
    let sslmode = match (args.sslmode, iam) {
        (Some(m), _) => SslMode::from(m),
        (None, true) => SslMode::VerifyFull,
        (None, false) => SslMode::Prefer,
    };
    if iam && sslmode < SslMode::Require {
        return Err(ConfigError::IamNeedsTls(sslmode));
    }
    Ok(sslmode)
}

/// Exactly one source: the flag given (clap refuses two), else `DB_SECRET` when set, else
/// the libpq variables.
fn source(args: &PrepareArgs, env: impl Fn(&str) -> Option<String>) -> Source {
    given(&args.secret_id, &args.secret_env, &args.secret_file).unwrap_or_else(|| {
        if env(DEFAULT_SECRET_ENV).is_some() {
            Source::Env {
                name: DEFAULT_SECRET_ENV.to_string(),
            }
        } else {
            Source::Libpq
        }
    })
}

/// The source one `--*-secret-id|env|file` trio names, if any (clap allows one at most).
fn given(id: &Option<String>, env: &Option<String>, file: &Option<PathBuf>) -> Option<Source> {
    if let Some(id) = id {
        Some(Source::SecretsManager {
            secret_id: id.clone(),
        })
    } else if let Some(name) = env {
        Some(Source::Env { name: name.clone() })
    } else {
        file.as_ref()
            .map(|path| Source::File { path: path.clone() })
    }
}

/// Names the flags give directly: PostgreSQL would truncate long identifiers silently,
/// and the service name becomes a `[section]` header.
fn check_names(args: &PrepareArgs) -> Result<(), ConfigError> {
    if let Some(db) = &args.database {
        secret::check_identifier("--database", db)?;
    }
    if let Some(user) = &args.user {
        secret::check_identifier("--user", user)?;
    }
    if let Some(owner) = &args.database_owner {
        secret::check_identifier("--database-owner", owner)?;
    }
    secret::check_identifier("--maintenance-database", &args.maintenance_database)?;
    let valid_service = !args.service_name.is_empty()
        && args
            .service_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid_service {
        return Err(ConfigError::ServiceName(args.service_name.clone()));
    }
    Ok(())
}

/// No --sslmode, no IAM (which defaults to verify-full anyway), and the image's bundle
/// present: an RDS endpoint is verified against that bundle. Whether a host is one is
/// known per login (`TlsChoice::for_host`).
fn rds_default(args: &PrepareArgs, iam: bool) -> Result<Option<Tls>, ConfigError> {
    if args.sslmode.is_some() || iam {
        return Ok(None);
    }
    let Ok(Some(bundle)) = read_ca(None, SslMode::VerifyFull) else {
        return Ok(None);
    };
    connector(args, SslMode::VerifyFull, false, Some(bundle)).map(Some)
}

/// The connector for `mode`: channel binding as `--channel-binding` says, or required under
/// verify-full with a password (a TLS-terminating man in the middle cannot relay a bound
/// SCRAM exchange; IAM tokens are clear-text passwords, which cannot be bound).
fn connector(
    args: &PrepareArgs,
    mode: SslMode,
    iam: bool,
    ca: Option<Arc<CaBundle>>,
) -> Result<Tls, ConfigError> {
    let mut tls = Tls::new(mode, ca)?;
    tls.channel_binding = match args.channel_binding {
        Some(ChannelBindingArg::Disable) => ChannelBinding::Disable,
        Some(ChannelBindingArg::Prefer) => ChannelBinding::Prefer,
        Some(ChannelBindingArg::Require) => ChannelBinding::Require,
        None if mode == SslMode::VerifyFull && !iam => ChannelBinding::Require,
        None => ChannelBinding::Prefer,
    };
    tls.allow_insecure_auth = args.allow_insecure_auth;
    Ok(tls)
}

/// `--sslrootcert`, or for verify-* the bundle the image carries; read once, here, so a
/// bad path fails in milliseconds rather than after the wait.
fn read_ca(given: Option<&Path>, mode: SslMode) -> Result<Option<Arc<CaBundle>>, ConfigError> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None if mode.verifies() && Path::new(BUNDLED_CA).is_file() => PathBuf::from(BUNDLED_CA),
        None if mode.verifies() => return Err(ConfigError::NoRootCert(mode)),
        None => return Ok(None),
    };
    let pem = std::fs::read(&path).map_err(|e| ConfigError::RootCertUnreadable(path.clone(), e))?;
    Ok(Some(Arc::new(CaBundle { path, pem })))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(extra: &[&str]) -> PrepareArgs {
        let argv = ["aurora-sidecar", "once"].iter().chain(extra).copied();
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Once(a) => a,
            other => panic!("{other:?}"),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// `run`'s interval: 0 is never, except under IAM, whose tokens must be renewed
    /// within ten minutes.
    #[test]
    fn run_validates_its_refresh_interval_against_iam() {
        let run = |extra: &[&str]| {
            let argv = ["aurora-sidecar", "run"].iter().chain(extra).copied();
            let Command::Run(a) = Cli::try_parse_from(argv).expect("parses").command else {
                panic!("run");
            };
            let config = Config::from_args(&a.prepare, no_env).expect("config");
            RunConfig::from_args(&a, &config)
        };
        let ten = Duration::from_secs(600);
        let get = |extra: &[&str]| run(extra).expect("valid").refresh_interval;
        assert_eq!(get(&["--refresh-interval", "0"]), None);
        assert_eq!(get(&["--refresh-interval", "10m"]), Some(ten));
        let iam = [
            "--iam-auth",
            "--region",
            "eu-west-1",
            "--sslmode",
            "require",
        ];
        let with = |interval: &str| {
            let mut argv = iam.to_vec();
            argv.extend(["--refresh-interval", interval]);
            run(&argv)
        };
        assert_eq!(with("10m").expect("valid").refresh_interval, Some(ten));
        for slow in ["0", "11m"] {
            let e = with(slow).expect_err(slow);
            assert!(
                matches!(e, ConfigError::IamRenewalTooSlow(_)),
                "{slow}: {e}"
            );
        }
    }

    #[test]
    fn source_defaults_to_db_secret_then_libpq() {
        let with =
            Config::from_args(&args(&[]), |k| (k == "DB_SECRET").then(|| "{}".into())).expect("ok");
        assert_eq!(
            with.source,
            Source::Env {
                name: "DB_SECRET".into()
            }
        );
        let without = Config::from_args(&args(&[]), no_env).expect("ok");
        assert_eq!(without.source, Source::Libpq);
        let explicit = Config::from_args(&args(&["--secret-id", "prod/db"]), |_| Some("x".into()))
            .expect("ok");
        assert_eq!(
            explicit.source,
            Source::SecretsManager {
                secret_id: "prod/db".into()
            }
        );
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::from_args(&args(&[]), no_env).expect("ok");
        assert_eq!(c.policy.deadline, Some(Duration::from_secs(600)));
        assert_eq!(c.policy.attempt_timeout, Duration::from_secs(40));
        assert_eq!(c.out_dir, PathBuf::from("/run/aurora-sidecar"));
        assert_eq!(c.render.app_dir, c.out_dir);
        assert_eq!(
            (c.render.service_name.as_str(), c.render.url_scheme),
            ("app", crate::modes::UrlScheme::Ecto)
        );
        assert_eq!(c.provisioning.maintenance_database, "postgres");
        assert!(c.provisioning.create);
    }

    #[test]
    fn zero_wait_timeout_means_forever() {
        let c = Config::from_args(&args(&["--wait-timeout", "0"]), no_env).expect("ok");
        assert_eq!(c.policy.deadline, None);
    }

    #[test]
    fn verify_full_without_a_bundle_is_a_configuration_error() {
        if Path::new(BUNDLED_CA).exists() {
            return; // inside the image the bundled CA satisfies it
        }
        let err =
            Config::from_args(&args(&["--sslmode", "verify-full"]), no_env).expect_err("no CA");
        assert!(
            matches!(err, ConfigError::NoRootCert(SslMode::VerifyFull)),
            "{err}"
        );
        assert!(err.to_string().contains("--sslrootcert"));
    }

    /// A DSQL host (or `--dsql`): IAM tokens, the database `postgres`, nothing created,
    /// verify-full against the system roots (`SSL_CERT_FILE` here, holding Amazon Root
    /// CA 1, DSQL's public root); and each rule's refusal.
    #[test]
    fn dsql_brings_its_own_rules() {
        let roots = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(
            roots.path(),
            include_str!("../testdata/amazon-root-ca-1.pem"),
        )
        .expect("write");
        let path = roots.path().to_string_lossy().into_owned();
        let env = |k: &str| (k == "SSL_CERT_FILE").then(|| path.clone());
        let host = ["--host", "abc.dsql.us-east-1.on.aws", "--user", "app"];
        let c = Config::from_args(&args(&host), env).expect("dsql");
        let iam = c.iam.as_ref().expect("IAM implied");
        assert!(iam.dsql);
        assert_eq!(c.overrides.database.as_deref(), Some("postgres"));
        assert!(!c.provisioning.create);
        assert_eq!(c.sslmode, SslMode::VerifyFull);
        assert_eq!(c.sslrootcert(), Some(roots.path()));
        assert!(c.tls.rds.is_none());
        // --dsql for a custom name; --sslrootcert wins over the system roots.
        let flag = ["--dsql", "--host", "db.internal", "--sslrootcert", &path];
        let c = Config::from_args(&args(&flag), no_env).expect("--dsql");
        assert!(c.iam.as_ref().is_some_and(|i| i.dsql));
        let refuse = |extra: &[&str], env: &dyn Fn(&str) -> Option<String>| {
            let argv: Vec<&str> = host.iter().chain(extra).copied().collect();
            Config::from_args(&args(&argv), env).expect_err("refused")
        };
        let e = refuse(&["--database", "app"], &env);
        assert!(
            matches!(e, ConfigError::DsqlDatabase(ref d) if d == "app"),
            "{e}"
        );
        let e = refuse(&[], &|k: &str| (k == "PGDATABASE").then(|| "other".into()));
        assert!(matches!(e, ConfigError::DsqlDatabase(_)), "{e}");
        let e = refuse(&["--secret-env", "X"], &env);
        assert!(matches!(e, ConfigError::DsqlSecret(_)), "{e}");
        let e = refuse(&["--admin-secret-env", "A"], &env);
        assert!(matches!(e, ConfigError::DsqlAdmin), "{e}");
        // The admin set-up: admin's token, the ARN the app role is mapped to.
        let arn = "arn:aws:iam::123456789012:role/app-task";
        let with_admin: Vec<&str> = host
            .iter()
            .chain(&["--admin-iam-user", "admin", "--dsql-grant-arn", arn])
            .copied()
            .collect();
        let c = Config::from_args(&args(&with_admin), env).expect("admin set-up");
        let want = AdminSource::Iam {
            user: "admin".into(),
            dsql_grant: Some(arn.into()),
        };
        assert_eq!(c.admin, Some(want));
        let e = refuse(&["--admin-iam-user", "admin"], &env);
        assert!(matches!(e, ConfigError::DsqlGrantMissing), "{e}");
        let e = refuse(&["--admin-iam-user", "root", "--dsql-grant-arn", arn], &env);
        assert!(
            matches!(e, ConfigError::DsqlAdminUser(ref u) if u == "root"),
            "{e}"
        );
        let e = refuse(&["--dsql-grant-arn", arn], &env);
        assert!(matches!(e, ConfigError::DsqlGrantAlone), "{e}");
        let e = refuse(
            &["--admin-iam-user", "admin", "--dsql-grant-arn", "x"],
            &env,
        );
        assert!(matches!(e, ConfigError::DsqlGrantArn(..)), "{e}");
        let not_dsql = ["--iam-auth", "--dsql-grant-arn", arn];
        let e = Config::from_args(&args(&not_dsql), no_env).expect_err("not DSQL");
        assert!(matches!(e, ConfigError::DsqlGrantAlone), "{e}");
        let e = refuse(&["--sslmode", "disable"], &env);
        assert!(
            matches!(e, ConfigError::IamNeedsTls(SslMode::Disable)),
            "{e}"
        );
        // Not DSQL: a host from a secret is not looked at here; PGHOST only for libpq.
        let rds = ["--host", "c.cluster-x.eu-west-1.rds.amazonaws.com"];
        assert!(
            Config::from_args(&args(&rds), no_env)
                .expect("rds")
                .iam
                .is_none()
        );
    }

    /// `--pgbouncer`'s names go into every file the app reads, unquoted in some: a host
    /// name or address, a plain user name; the local passwords differ and are 48 hex digits.
    #[test]
    fn pgbouncer_names_are_checked_and_its_passwords_chosen() {
        use secrecy::ExposeSecret;
        let c = Config::from_args(&args(&["--pgbouncer"]), no_env).expect("defaults");
        let p = c.render.pgbouncer.expect("on");
        let (a, b) = (p.password.expose_secret(), p.admin_password.expose_secret());
        assert!(
            a.len() == 48 && b.len() == 48 && a != b,
            "{} {}",
            a.len(),
            b.len()
        );
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        for ok in [
            &["--pgbouncer-host", "pgbouncer"][..],
            &["--pgbouncer-host", "::1"],
        ] {
            let argv: Vec<&str> = ["--pgbouncer"].iter().chain(ok).copied().collect();
            assert!(Config::from_args(&args(&argv), no_env).is_ok(), "{ok:?}");
        }
        for bad in [
            &["--pgbouncer-host", "a b"][..],
            &["--pgbouncer-host", "h:6432"],
            &["--pgbouncer-user", "app local"],
            &["--pgbouncer-user", "o'brien"],
        ] {
            let argv: Vec<&str> = ["--pgbouncer"].iter().chain(bad).copied().collect();
            let e = Config::from_args(&args(&argv), no_env).expect_err("refused");
            assert!(matches!(e, ConfigError::PgBouncerName(..)), "{bad:?}: {e}");
        }
    }

    #[test]
    fn bad_service_name_and_long_database_are_rejected() {
        assert!(matches!(
            Config::from_args(&args(&["--service-name", "a]b"]), no_env),
            Err(ConfigError::ServiceName(_))
        ));
        let long = "x".repeat(64);
        assert!(Config::from_args(&args(&["--database", &long]), no_env).is_err());
    }
}
