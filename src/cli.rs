//! Raw command-line arguments (clap). Every flag also reads `AURORA_SIDECAR_<FLAG>`.
//! Validation and defaults that need the environment live in `config`.
//!
//! The clap enums live here and convert into the core's plain types (`modes`), so no
//! module below the CLI derives a clap trait.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::modes::{SslMode, UrlScheme};
use crate::outdir::Owner;
use crate::privileges::RunAs;

#[derive(Debug, Parser)]
#[command(
    name = "aurora-sidecar",
    version,
    about = "Waits until PostgreSQL (Aurora) accepts a real login, ensures the database exists, and renders DATABASE_URL, pgpass and pg_service.conf atomically.",
    propagate_version = true
)]
pub struct Cli {
    /// Log format: text on a terminal and JSON otherwise (auto), or forced.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto, env = "AURORA_SIDECAR_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve credentials, wait for a real login, ensure the database, render the files,
    /// mark ready, exit 0 (init container; ECS dependsOn SUCCESS).
    Once(PrepareArgs),
    /// Steps of once, then stay up: re-check the secret every --refresh-interval and on
    /// SIGHUP, validate new credentials with a real login before publishing them. Holds no
    /// database connection while idle. Exits 0 on SIGTERM/SIGINT (ECS dependsOn HEALTHY).
    Run(RunArgs),
    /// Steps of once, then replace this process with CMD, DATABASE_URL, PGSERVICEFILE,
    /// PGPASSFILE, PGSERVICE (and PGSSLROOTCERT) in its environment.
    Exec(ExecArgs),
    /// Exit 0 when this run reached ready (files in place), 1 otherwise; prints one line.
    /// Never connects to the database.
    Health(HealthArgs),
    /// Resolve credentials and print the files that would be written, password masked.
    /// No database access, nothing written.
    Render(RenderArgs),
    /// Walk configuration, credentials, DNS, TCP, TLS, authentication, database, out-dir
    /// and admin once, no retries, nothing written; say the first broken step and its
    /// usual fix. Exits 0, or the first failed step's code.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub prepare: PrepareArgs,

    /// Output: text for people, json for tools (one object with a `steps` array).
    #[arg(long, value_enum, default_value_t = DoctorFormat::Text, env = "AURORA_SIDECAR_FORMAT")]
    pub format: DoctorFormat,

    /// Bound on each step (DNS, TCP, TLS, a login, …).
    #[arg(long, default_value = "5s", value_parser = parse_duration, env = "AURORA_SIDECAR_STEP_TIMEOUT")]
    pub step_timeout: std::time::Duration,
}

/// `doctor --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub prepare: PrepareArgs,

    /// How often to look for new credentials (Secrets Manager DescribeSecret, or re-reading
    /// --secret-file); 0 = only on SIGHUP.
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "AURORA_SIDECAR_REFRESH_INTERVAL")]
    pub refresh_interval: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub prepare: PrepareArgs,

    /// Keep the variable the secret came from (`--secret-env`'s, or PGPASSWORD) in CMD's
    /// environment. By default it is removed: CMD gets DATABASE_URL, PGPASSFILE and
    /// PGSERVICEFILE instead.
    #[arg(long, env = "AURORA_SIDECAR_KEEP_SECRET_ENV")]
    pub keep_secret_env: bool,

    /// The command to run once the database is ready, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Directory the sidecar writes to.
    #[arg(
        long,
        default_value = "/run/aurora-sidecar",
        env = "AURORA_SIDECAR_OUT_DIR"
    )]
    pub out_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub prepare: PrepareArgs,

    /// Print the real password instead of ********.
    #[arg(long, env = "AURORA_SIDECAR_SHOW_SECRETS")]
    pub show_secrets: bool,
}

/// Flags shared by every command that resolves credentials and renders files.
#[derive(Debug, Args, Clone)]
pub struct PrepareArgs {
    /// Secrets Manager secret (name or ARN). Region from the ARN or AWS_REGION; endpoint
    /// from AWS_ENDPOINT_URL(_SECRETS_MANAGER).
    #[arg(long, group = "source", env = "AURORA_SIDECAR_SECRET_ID")]
    pub secret_id: Option<String>,

    /// Environment variable holding the secret JSON [default when set: DB_SECRET].
    #[arg(long, group = "source", env = "AURORA_SIDECAR_SECRET_ENV")]
    pub secret_env: Option<String>,

    /// File holding the secret JSON (docker secrets, CSI mounts).
    #[arg(long, group = "source", env = "AURORA_SIDECAR_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,

    /// Admin (master) credentials in Secrets Manager, used only to set the app's own role
    /// up when its login fails (role, password or rds_iam grant, database ownership);
    /// never rendered.
    #[arg(long, group = "admin", env = "AURORA_SIDECAR_ADMIN_SECRET_ID")]
    pub admin_secret_id: Option<String>,

    /// Environment variable holding the admin secret JSON (`username`, `password`,
    /// optional `host`/`port`).
    #[arg(long, group = "admin", env = "AURORA_SIDECAR_ADMIN_SECRET_ENV")]
    pub admin_secret_env: Option<String>,

    /// File holding the admin secret JSON.
    #[arg(long, group = "admin", env = "AURORA_SIDECAR_ADMIN_SECRET_FILE")]
    pub admin_secret_file: Option<PathBuf>,

    /// The admin user logs in with an IAM token too, signed with the task's credentials
    /// (which then need rds-db:connect on that user): for clusters with no password at
    /// all, such as Aurora's express configuration. Needs --iam-auth.
    #[arg(long, group = "admin", env = "AURORA_SIDECAR_ADMIN_IAM_USER")]
    pub admin_iam_user: Option<String>,

    /// Aurora DSQL, with --admin-iam-user admin: the IAM role ARN the app's tokens are
    /// signed with (the task role, arn:aws:iam::ACCOUNT:role/NAME); the admin creates the
    /// app role and maps it to this ARN with AWS IAM GRANT.
    #[arg(long, env = "AURORA_SIDECAR_DSQL_GRANT_ARN")]
    pub dsql_grant_arn: Option<String>,

    /// Host, overriding the secret's (needed for the RDS-managed master secret).
    #[arg(long, env = "AURORA_SIDECAR_HOST")]
    pub host: Option<String>,

    /// Port, overriding the secret's [default: the secret's, else 5432].
    #[arg(long, env = "AURORA_SIDECAR_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// User, overriding the secret's username (with --iam-auth, the database user granted
    /// rds_iam).
    #[arg(long, env = "AURORA_SIDECAR_USER")]
    pub user: Option<String>,

    /// Database, overriding the secret's dbname [default: the secret's, else the user name].
    #[arg(long, env = "AURORA_SIDECAR_DATABASE")]
    pub database: Option<String>,

    /// Database to log in to when the app database must be created.
    #[arg(
        long,
        default_value = "postgres",
        env = "AURORA_SIDECAR_MAINTENANCE_DATABASE"
    )]
    pub maintenance_database: String,

    /// OWNER of a newly created database [default: the logged-in user].
    #[arg(long, env = "AURORA_SIDECAR_DATABASE_OWNER")]
    pub database_owner: Option<String>,

    /// Only wait for the database; never create it.
    #[arg(long, env = "AURORA_SIDECAR_NO_CREATE")]
    pub no_create: bool,

    /// Overall deadline for the wait, e.g. 90s, 10m, 1h; 0 waits forever.
    #[arg(long, default_value = "10m", value_parser = parse_duration, env = "AURORA_SIDECAR_WAIT_TIMEOUT")]
    pub wait_timeout: std::time::Duration,

    /// Bound on one attempt (TCP + TLS + authentication); long enough for an Aurora
    /// Serverless v2 resume from 0 ACU.
    #[arg(long, default_value = "40s", value_parser = parse_duration, env = "AURORA_SIDECAR_ATTEMPT_TIMEOUT")]
    pub attempt_timeout: std::time::Duration,

    /// Times a rejected password (28P01) re-reads the secret and retries.
    #[arg(long, default_value_t = 3, env = "AURORA_SIDECAR_PASSWORD_RETRIES")]
    pub password_retries: u32,

    /// Directory the files are written to (a volume shared with the app).
    #[arg(
        long,
        default_value = "/run/aurora-sidecar",
        env = "AURORA_SIDECAR_OUT_DIR"
    )]
    pub out_dir: PathBuf,

    /// Where the app container sees --out-dir; paths inside the files point there
    /// [default: --out-dir].
    #[arg(long, env = "AURORA_SIDECAR_APP_DIR")]
    pub app_dir: Option<PathBuf>,

    /// Owner of the rendered files, UID[:GID] (the app's user, so libpq accepts pgpass).
    #[arg(long, value_parser = parse_owner, env = "AURORA_SIDECAR_OWNER")]
    pub owner: Option<Owner>,

    /// When started as root: become UID[:GID] at once, before reading any secret, keeping
    /// only CAP_CHOWN for --owner (so a non-root sidecar can hand pgpass to the app's uid).
    #[arg(long, value_parser = parse_run_as, env = "AURORA_SIDECAR_DROP_TO")]
    pub drop_to: Option<RunAs>,

    /// Section name in pg_service.conf (psql service=NAME, PGSERVICE).
    #[arg(long, default_value = "app", env = "AURORA_SIDECAR_SERVICE_NAME")]
    pub service_name: String,

    /// DATABASE_URL scheme: ecto (Phoenix), postgres or postgresql (libpq).
    #[arg(long, value_enum, default_value_t = UrlSchemeArg::Ecto, env = "AURORA_SIDECAR_URL_SCHEME")]
    pub url_scheme: UrlSchemeArg,

    /// TLS mode, with libpq's meaning [default: prefer; verify-full with --iam-auth, and
    /// for an RDS/Aurora host when the image's RDS CA bundle is present].
    #[arg(long, value_enum, env = "AURORA_SIDECAR_SSLMODE")]
    pub sslmode: Option<SslModeArg>,

    /// SCRAM channel binding, with libpq's meaning [default: require under verify-full
    /// with a password, prefer otherwise].
    #[arg(long, value_enum, env = "AURORA_SIDECAR_CHANNEL_BINDING")]
    pub channel_binding: Option<ChannelBindingArg>,

    /// Answer a server that asks for the password in clear text or as MD5 over a
    /// connection without TLS (refused by default: that is what a man in the middle who
    /// strips TLS asks for). Only for a trusted local network.
    #[arg(long, env = "AURORA_SIDECAR_ALLOW_INSECURE_AUTH")]
    pub allow_insecure_auth: bool,

    /// IAM database authentication: the password is a 15-minute token signed with the task
    /// role's credentials (rds-db:connect), renewed at each --refresh-interval without
    /// logging in. The secret (or --host/--user/PG* variables) needs no password. Needs
    /// sslmode require or stronger.
    #[arg(long, env = "AURORA_SIDECAR_IAM_AUTH")]
    pub iam_auth: bool,

    /// Aurora DSQL: tokens for service dsql (DbConnectAdmin for the admin role, DbConnect
    /// for any other), the one database postgres, nothing created, verify-full against the
    /// system roots. Implies --iam-auth; a *.dsql.REGION.on.aws host selects it by itself.
    #[arg(long, env = "AURORA_SIDECAR_DSQL")]
    pub dsql: bool,

    /// AWS region the IAM token is signed for [default: AWS_REGION, AWS_DEFAULT_REGION, or
    /// the *.REGION.rds.amazonaws.com or ID.dsql.REGION.on.aws host name].
    #[arg(long, env = "AURORA_SIDECAR_REGION")]
    pub region: Option<String>,

    /// CA bundle (PEM) to verify the server with; copied to the out-dir as rds-ca.pem.
    #[arg(long, env = "AURORA_SIDECAR_SSLROOTCERT")]
    pub sslrootcert: Option<PathBuf>,

    /// PgBouncer (transaction pooling) between the app and the database: the sidecar
    /// renders pgbouncer.ini and pgbouncer.users, points the app's files at PgBouncer with
    /// a local login, and RELOADs PgBouncer after every rotation and token renewal, so idle
    /// server connections close and Aurora Serverless v2 can pause.
    #[arg(long, env = "AURORA_SIDECAR_PGBOUNCER")]
    pub pgbouncer: bool,

    /// Where the app (and the sidecar, for RELOAD) reaches PgBouncer; a loopback address
    /// makes PgBouncer listen only there.
    #[arg(
        long,
        default_value = "127.0.0.1",
        env = "AURORA_SIDECAR_PGBOUNCER_HOST"
    )]
    pub pgbouncer_host: String,

    /// PgBouncer's port.
    #[arg(long, default_value_t = 6432, env = "AURORA_SIDECAR_PGBOUNCER_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub pgbouncer_port: u16,

    /// The app's local login to PgBouncer (its password is new at every start).
    #[arg(
        long,
        default_value = "app_local",
        env = "AURORA_SIDECAR_PGBOUNCER_USER"
    )]
    pub pgbouncer_user: String,

    /// PgBouncer's server_idle_timeout: idle server connections close after it, so the
    /// database sees none while the app idles; 0 = never.
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "AURORA_SIDECAR_PGBOUNCER_IDLE_TIMEOUT")]
    pub pgbouncer_idle_timeout: std::time::Duration,

    /// The longest upstream password or IAM token the PgBouncer in use carries; a longer
    /// one is refused before PgBouncer sees it (1024: what Debian bookworm's 1.18 carries).
    #[arg(
        long,
        default_value_t = 1024,
        env = "AURORA_SIDECAR_PGBOUNCER_MAX_PASSWORD"
    )]
    pub pgbouncer_max_password: usize,

    /// PgBouncer 1.21+: track this many named prepared statements per connection in
    /// transaction mode (max_prepared_statements), so clients keep theirs; 0 leaves the
    /// setting out (1.18 refuses it).
    #[arg(
        long,
        default_value_t = 0,
        env = "AURORA_SIDECAR_PGBOUNCER_MAX_PREPARED_STATEMENTS"
    )]
    pub pgbouncer_max_prepared_statements: u32,
}

/// `--channel-binding`: libpq's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelBindingArg {
    Disable,
    Prefer,
    Require,
}

/// `--sslmode`: libpq's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SslModeArg {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl From<SslModeArg> for SslMode {
    fn from(a: SslModeArg) -> Self {
        match a {
            SslModeArg::Disable => SslMode::Disable,
            SslModeArg::Prefer => SslMode::Prefer,
            SslModeArg::Require => SslMode::Require,
            SslModeArg::VerifyCa => SslMode::VerifyCa,
            SslModeArg::VerifyFull => SslMode::VerifyFull,
        }
    }
}

/// `--url-scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UrlSchemeArg {
    /// `ecto://…` with `ssl=true` when TLS is required (Phoenix/Ecto's default form).
    Ecto,
    /// `postgres://…` with `sslmode`/`sslrootcert` (libpq, most drivers).
    Postgres,
    /// `postgresql://…` with `sslmode`/`sslrootcert`.
    Postgresql,
}

impl From<UrlSchemeArg> for UrlScheme {
    fn from(a: UrlSchemeArg) -> Self {
        match a {
            UrlSchemeArg::Ecto => UrlScheme::Ecto,
            UrlSchemeArg::Postgres => UrlScheme::Postgres,
            UrlSchemeArg::Postgresql => UrlScheme::Postgresql,
        }
    }
}

/// `UID` or `UID:GID`; without a gid the group is left alone.
pub fn parse_owner(s: &str) -> Result<Owner, String> {
    let bad = || format!("{s:?} is not UID or UID:GID (numbers)");
    let (uid, gid) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    Ok(Owner {
        uid: uid.parse().map_err(|_| bad())?,
        gid: gid.map(|g| g.parse().map_err(|_| bad())).transpose()?,
    })
}

/// `UID` or `UID:GID` (the gid defaults to the uid, as most images create their users).
pub fn parse_run_as(s: &str) -> Result<RunAs, String> {
    let bad = || format!("{s:?} is not UID or UID:GID (numbers)");
    let (uid, gid) = s.split_once(':').unwrap_or((s, s));
    Ok(RunAs {
        uid: uid.parse().map_err(|_| bad())?,
        gid: gid.parse().map_err(|_| bad())?,
    })
}

/// `90`, `90s`, `1500ms`, `10m`, `1h`; `0` is zero.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (use e.g. 30s, 10m, 1h or 0)"))?;
    let secs = |mult: u64| {
        n.checked_mul(mult)
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| format!("{s:?} is too long"))
    };
    let d = match unit {
        "" | "s" => secs(1),
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "m" => secs(60),
        "h" => secs(3600),
        _ => Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    }?;
    // Deadlines are instants (now + d): a longer span would overflow the clock.
    if d > MAX_DURATION {
        return Err(format!(
            "{s:?} is too long: at most 8760h (a year); 0 means never where the flag allows it"
        ));
    }
    Ok(d)
}

/// The longest duration a flag takes.
const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        for overflowing in ["18446744073709551615", "5124095576030431h", "8761h"] {
            let e = parse_duration(overflowing).expect_err(overflowing);
            assert!(e.contains("too long"), "{e}");
        }
    }

    /// Every command's `--help`, at a fixed width: the interface as users read it.
    fn help_text() -> String {
        let mut root = Cli::command().term_width(100);
        let mut out = root.render_long_help().to_string();
        let names: Vec<String> = root
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .filter(|n| n != "help")
            .collect();
        for name in names {
            let sub = root.find_subcommand_mut(&name).expect("listed");
            out.push_str(&format!("\n===== {name} --help =====\n"));
            out.push_str(&sub.render_long_help().to_string());
        }
        out
    }

    /// The `--help` snapshot: a flag, default or text that changes shows up in review.
    /// After an intended change: `AURORA_SIDECAR_UPDATE_SNAPSHOTS=1 cargo test --lib help`.
    #[test]
    fn help_matches_the_snapshot() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help.txt");
        let now = help_text();
        if std::env::var_os("AURORA_SIDECAR_UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &now).expect("write snapshot");
        }
        let snapshot = std::fs::read_to_string(&path).expect("tests/snapshots/help.txt exists");
        assert!(
            snapshot == now,
            "--help changed; if intended, update the snapshot with AURORA_SIDECAR_UPDATE_SNAPSHOTS=1.\n--- snapshot\n{snapshot}\n--- now\n{now}"
        );
    }

    #[test]
    fn drop_to_takes_uid_and_optional_gid() {
        assert_eq!(
            parse_run_as("65532"),
            Ok(RunAs {
                uid: 65532,
                gid: 65532
            })
        );
        assert_eq!(
            parse_run_as("1000:2000"),
            Ok(RunAs {
                uid: 1000,
                gid: 2000
            })
        );
        assert_eq!(
            parse_owner("1000:2000"),
            Ok(Owner {
                uid: 1000,
                gid: Some(2000)
            })
        );
        assert_eq!(
            parse_owner("1000"),
            Ok(Owner {
                uid: 1000,
                gid: None
            })
        );
        assert!(parse_owner("app").is_err());
        assert!(parse_owner("1:").is_err());
        assert!(parse_run_as("app").is_err());
        assert!(parse_run_as("1:").is_err());
    }

    #[test]
    fn only_one_secret_source_may_be_given() {
        let err = Cli::try_parse_from([
            "aurora-sidecar",
            "once",
            "--secret-env",
            "X",
            "--secret-file",
            "/f",
        ])
        .expect_err("two sources");
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
