//! `--pgbouncer`: PgBouncer in transaction pooling mode beside the app, so that idle
//! server connections close (`server_idle_timeout`) while the app keeps its pool, and
//! Aurora Serverless v2 can pause. The sidecar renders PgBouncer's configuration and auth
//! file from the upstream login it validated; the app's files point at PgBouncer with a
//! local login of their own ([`PgBouncer::app_target`]), so a rotation or a new IAM token
//! never reaches the app.
//!
//! Invariants, each proved by a unit test and against PgBouncer itself (tests/pgbouncer.rs):
//! - the upstream password (or token) is only in the auth file (0600), never in
//!   `pgbouncer.ini`: PgBouncer takes a forced user's password from its auth file;
//! - auth file fields are double-quoted with `"` doubled (PgBouncer's `load_auth_file`);
//!   connection-string values single-quoted with `'` doubled (PgBouncer's
//!   `cstr_get_value`); the `[databases]` key is written bare, so it must be one 1.18
//!   reads (letters, digits, `_`, `-`, `.`: 1.18 refuses a quoted key, measured);
//! - nothing reaches PgBouncer that it cannot carry ([`check`]): Debian bookworm's 1.18
//!   logs in with a 1,024-byte password and crashes at 1,025 (measured, README).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{CA_FILE, LoginTls, MASK, Reveal};
use crate::outdir::File;
use crate::secret::{Target, authority};

pub const INI: &str = "pgbouncer.ini";
pub const USERS: &str = "pgbouncer.users";
/// The admin console's user: only the sidecar knows its password, to send `RELOAD`.
pub const ADMIN_USER: &str = "aurora_sidecar";

/// PgBouncer's settings and the local logins, chosen once per start.
#[derive(Debug, Clone)]
pub struct PgBouncer {
    /// Where the app (and the sidecar, for `RELOAD`) reaches PgBouncer.
    pub host: String,
    pub port: u16,
    /// The app's login to PgBouncer; the password is new at every start of the sidecar.
    pub user: String,
    pub password: SecretString,
    /// [`ADMIN_USER`]'s password, new at every start.
    pub admin_password: SecretString,
    /// Idle server connections close after this long, so Aurora can pause.
    pub server_idle_timeout: Duration,
    /// A server login may take a whole Aurora resume (the sidecar's attempt timeout).
    pub server_connect_timeout: Duration,
    /// The longest upstream password or token this PgBouncer carries.
    pub max_password: usize,
    /// PgBouncer 1.21+'s `max_prepared_statements`; 0: not written (1.18 refuses a
    /// setting it does not know, measured).
    pub max_prepared_statements: u32,
}

/// Why an upstream login cannot go through PgBouncer as configured.
#[derive(Debug, thiserror::Error)]
pub enum CarryError {
    #[error(
        "the upstream password (or IAM token) is {len} bytes and PgBouncer is configured to carry at most {max} (--pgbouncer-max-password; Debian bookworm's 1.18 crashes past 1,024): nothing was handed to PgBouncer; use a PgBouncer that carries longer passwords and raise the limit, or a shorter password"
    )]
    TooLong { len: usize, max: usize },
    #[error(
        "the database {0:?} cannot be named in pgbouncer.ini (PgBouncer 1.18 reads only letters, digits, '_', '-' and '.' there): use such a name with --pgbouncer"
    )]
    DatabaseName(String),
    #[error(
        "the upstream user {0:?} has the name of one of PgBouncer's local logins (--pgbouncer-user, or {ADMIN_USER}): give the app's local login another name"
    )]
    UserClash(String),
}

impl PgBouncer {
    /// What the app's files say: PgBouncer's address, the local login, the same database.
    pub fn app_target(&self, upstream: &Target) -> Target {
        Target {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password: self.password.clone(),
            database: upstream.database.clone(),
        }
    }

    /// `host:port` where the app and the sidecar reach PgBouncer.
    pub fn address(&self) -> String {
        authority(&self.host, self.port)
    }

    /// Where PgBouncer listens: only on the loopback when the app reaches it there (one
    /// task or pod), else on every address (its own container in compose).
    fn listen_addr(&self) -> &str {
        let loopback = self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback { &self.host } else { "*" }
    }
}

/// Refuses what PgBouncer cannot carry, before any file is rendered for it.
pub fn check(p: &PgBouncer, upstream: &Target) -> Result<(), CarryError> {
    let bare = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if !upstream.database.chars().all(bare) {
        return Err(CarryError::DatabaseName(upstream.database.clone()));
    }
    if upstream.user == p.user || upstream.user == ADMIN_USER {
        return Err(CarryError::UserClash(upstream.user.clone()));
    }
    let len = upstream.password.expose_secret().len();
    if len > p.max_password {
        return Err(CarryError::TooLong {
            len,
            max: p.max_password,
        });
    }
    Ok(())
}

/// PgBouncer's settings are whole seconds; 0 keeps its meaning (PgBouncer's "never", as
/// for the sidecar's own durations) and anything shorter than a second becomes one.
fn whole_seconds(d: Duration) -> u64 {
    if d.is_zero() { 0 } else { d.as_secs().max(1) }
}

/// PgBouncer's connection-string quoting: `'…'` with `'` doubled.
fn cstr(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// An auth file field: `"…"` with `"` doubled.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

/// `pgbouncer.ini` for `upstream`, verified as the sidecar verified it (`tls`: its mode,
/// and the CA copied into the out-dir when there is one); `app_dir` is where PgBouncer sees
/// the out-dir.
pub fn ini(p: &PgBouncer, upstream: &Target, tls: LoginTls, app_dir: &Path) -> String {
    let mut out = format!(
        "; Written by aurora-sidecar, re-rendered at every rotation and IAM token renewal and\n\
         ; then RELOADed through the admin console. Run PgBouncer as the user that owns it.\n\
         [databases]\n\
         {} = host={} port={} dbname={} user={}\n\
         [pgbouncer]\n\
         listen_addr = {}\n\
         listen_port = {}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {}\n\
         admin_users = {ADMIN_USER}\n\
         pool_mode = transaction\n\
         server_idle_timeout = {}\n\
         server_connect_timeout = {}\n\
         server_login_retry = 1\n\
         server_lifetime = 3000\n\
         query_wait_timeout = 120\n\
         ignore_startup_parameters = extra_float_digits\n\
         server_tls_sslmode = {}\n",
        upstream.database,
        cstr(&upstream.host),
        upstream.port,
        cstr(&upstream.database),
        cstr(&upstream.user),
        p.listen_addr(),
        p.port,
        app_dir.join(USERS).display(),
        whole_seconds(p.server_idle_timeout),
        whole_seconds(p.server_connect_timeout),
        tls.mode,
    );
    if tls.ca.is_some() {
        let _ = writeln!(
            out,
            "server_tls_ca_file = {}",
            app_dir.join(CA_FILE).display()
        );
    }
    if p.max_prepared_statements > 0 {
        let _ = writeln!(
            out,
            "max_prepared_statements = {}",
            p.max_prepared_statements
        );
    }
    out
}

/// The auth file: the app's local login, the admin console's, and the upstream login
/// PgBouncer forces (its password is what PgBouncer logs in upstream with).
pub fn users(p: &PgBouncer, upstream: &Target, reveal: Reveal) -> String {
    let show = |s: &SecretString| match reveal {
        Reveal::Password => quoted(s.expose_secret()),
        Reveal::Masked => quoted(MASK),
    };
    format!(
        "; Written by aurora-sidecar: the app's login, the admin console's, the upstream login.\n\
         {} {}\n{} {}\n{} {}\n",
        quoted(&p.user),
        show(&p.password),
        quoted(ADMIN_USER),
        show(&p.admin_password),
        quoted(&upstream.user),
        show(&upstream.password),
    )
}

/// PgBouncer's two files, 0600: the auth file holds every password, and the
/// configuration names the upstream user and host.
pub fn files(
    p: &PgBouncer,
    upstream: &Target,
    tls: LoginTls,
    app_dir: &Path,
    reveal: Reveal,
) -> [File; 2] {
    [
        File {
            name: USERS,
            contents: users(p, upstream, reveal).into_bytes(),
            mode: 0o600,
        },
        File {
            name: INI,
            contents: ini(p, upstream, tls, app_dir).into_bytes(),
            mode: 0o600,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::SslMode;

    /// The login's TLS as the renderers see it; a CA's bytes do not matter to them.
    fn tls(mode: SslMode, has_ca: bool) -> LoginTls<'static> {
        LoginTls {
            mode,
            ca: has_ca.then_some(b"ca".as_slice()),
            channel_binding: false,
        }
    }

    fn bouncer() -> PgBouncer {
        PgBouncer {
            host: "127.0.0.1".into(),
            port: 6432,
            user: "app_local".into(),
            password: SecretString::from("local-pw"),
            admin_password: SecretString::from("admin-pw"),
            server_idle_timeout: Duration::from_secs(60),
            server_connect_timeout: Duration::from_secs(40),
            // What Debian bookworm's 1.18 carries (measured: 1,025 bytes crash it).
            max_password: 1024,
            max_prepared_statements: 0,
        }
    }

    fn upstream(password: &str) -> Target {
        Target {
            host: "c.cluster-x.eu-west-1.rds.amazonaws.com".into(),
            port: 5432,
            user: "o'brien".into(),
            password: SecretString::from(password),
            database: "my-db.1".into(),
        }
    }

    /// PgBouncer's `load_auth_file`: `"` opens a field, `""` inside it is one `"`.
    fn auth_fields(line: &str) -> Vec<String> {
        let mut fields = Vec::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '"' {
                continue;
            }
            let mut field = String::new();
            while let Some(c) = chars.next() {
                match (c, chars.peek()) {
                    ('"', Some('"')) => {
                        chars.next();
                        field.push('"');
                    }
                    ('"', _) => break,
                    (c, _) => field.push(c),
                }
            }
            fields.push(field);
        }
        fields
    }

    #[test]
    fn the_auth_file_round_trips_quotes_and_keeps_the_password_out_of_the_ini() {
        let nasty = "p\"w'd ;#\\x";
        let p = bouncer();
        let up = upstream(nasty);
        let users = users(&p, &up, Reveal::Password);
        let lines: Vec<&str> = users.lines().filter(|l| !l.starts_with(';')).collect();
        assert_eq!(auth_fields(lines[0]), ["app_local", "local-pw"]);
        assert_eq!(auth_fields(lines[1]), [ADMIN_USER, "admin-pw"]);
        assert_eq!(auth_fields(lines[2]), ["o'brien", nasty]);
        let ini = ini(&p, &up, tls(SslMode::VerifyFull, true), Path::new("/run/x"));
        assert!(!ini.contains("p\"w"), "{ini}");
        assert!(ini.contains(
            "my-db.1 = host='c.cluster-x.eu-west-1.rds.amazonaws.com' port=5432 dbname='my-db.1' user='o''brien'\n"
        ), "{ini}");
        assert!(
            ini.contains("auth_file = /run/x/pgbouncer.users\n"),
            "{ini}"
        );
        assert!(
            ini.contains(
                "server_tls_sslmode = verify-full\nserver_tls_ca_file = /run/x/rds-ca.pem\n"
            ),
            "{ini}"
        );
        assert!(ini.contains("listen_addr = 127.0.0.1\n"), "{ini}");
        let tracked = PgBouncer {
            max_prepared_statements: 200,
            ..bouncer()
        };
        let ini = super::ini(&tracked, &up, tls(SslMode::Require, false), Path::new("/o"));
        assert!(ini.contains("max_prepared_statements = 200\n"), "{ini}");
        let never = PgBouncer {
            server_idle_timeout: Duration::ZERO,
            server_connect_timeout: Duration::from_millis(300),
            ..bouncer()
        };
        let ini = super::ini(&never, &up, tls(SslMode::Require, false), Path::new("/o"));
        assert!(
            ini.contains("server_idle_timeout = 0\nserver_connect_timeout = 1\n"),
            "{ini}"
        );
        let masked = super::users(&p, &up, Reveal::Masked);
        assert!(
            !masked.contains("pw") && !masked.contains(nasty),
            "{masked}"
        );
    }

    #[test]
    fn pgbouncer_listens_everywhere_only_when_the_app_reaches_it_by_another_name() {
        let mut p = bouncer();
        let up = upstream("x");
        for (host, listen) in [
            ("127.0.0.1", "127.0.0.1"),
            ("::1", "::1"),
            ("localhost", "localhost"),
            ("pgbouncer", "*"),
            ("10.0.0.5", "*"),
        ] {
            p.host = host.into();
            let ini = ini(&p, &up, tls(SslMode::Prefer, false), Path::new("/o"));
            assert!(
                ini.contains(&format!("listen_addr = {listen}\n")),
                "{host}: {ini}"
            );
            assert!(!ini.contains("server_tls_ca_file"), "{ini}");
            assert!(!ini.contains("max_prepared_statements"), "{ini}");
        }
    }

    #[test]
    fn what_pgbouncer_cannot_carry_is_refused() {
        let p = bouncer();
        assert!(check(&p, &upstream(&"x".repeat(1024))).is_ok());
        let e = check(&p, &upstream(&"x".repeat(1025))).expect_err("too long");
        assert!(
            matches!(
                e,
                CarryError::TooLong {
                    len: 1025,
                    max: 1024
                }
            ),
            "{e}"
        );
        assert!(!e.to_string().contains("xxxx"), "{e}");
        let mut clash = upstream("x");
        clash.user = "app_local".into();
        assert!(matches!(check(&p, &clash), Err(CarryError::UserClash(_))));
        clash.user = ADMIN_USER.into();
        assert!(matches!(check(&p, &clash), Err(CarryError::UserClash(_))));
        let mut quoted = upstream("x");
        quoted.database = "my db".into();
        assert!(matches!(
            check(&p, &quoted),
            Err(CarryError::DatabaseName(_))
        ));
    }

    #[test]
    fn the_app_target_is_pgbouncer_with_the_local_login() {
        let p = bouncer();
        let t = p.app_target(&upstream("secret"));
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.user.as_str(),
                t.database.as_str()
            ),
            ("127.0.0.1", 6432, "app_local", "my-db.1")
        );
        assert_eq!(t.password.expose_secret(), "local-pw");
    }
}
