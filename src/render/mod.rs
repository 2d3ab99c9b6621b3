//! What goes into the out-dir: pure renderers for every file, and the file set with its
//! modes ([`files`]), which the atomic writer (`outdir`) publishes.
//!
//! Escaping rules, each proved by a unit test and, against the real consumers, by the
//! integration tests:
//! - `pgpass`: `host:port:*:user:password`, with `\` and `:` escaped by a backslash (libpq's
//!   rule); one line, so newlines are refused when the secret is parsed.
//! - `pg_service.conf`: `key=value` lines, no quoting exists, so control characters are
//!   refused upstream; no password ever.
//! - `application.profile`: POSIX shell, every value single-quoted with `'` as `'\''`.
//! - `DATABASE_URL`: user, password and database percent-encoded over everything but RFC
//!   3986's unreserved set, so Ecto (`URI.parse`, userinfo split on `:`, `URI.decode`) and
//!   libpq both recover the exact bytes; host:port form the authority.

pub mod pgbouncer;
pub mod set;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::ExposeSecret;

use crate::modes::{SslMode, UrlScheme};
use crate::outdir::File;
use crate::secret::Target;

pub const PGPASS: &str = "pgpass";
pub const SERVICE_FILE: &str = "pg_service.conf";
pub const PROFILE: &str = "application.profile";
pub const CA_FILE: &str = "rds-ca.pem";
/// The current password (or IAM token) alone, for every kind of auth: the file a client
/// re-reads at each new connection (Ecto's `configure:`, node-postgres, asyncpg).
pub const PASSWORD_FILE: &str = "password";
/// The profile variable naming [`PASSWORD_FILE`] as the app sees it.
pub const PASSWORD_FILE_VAR: &str = "AURORA_SIDECAR_PASSWORD_FILE";

/// What `render` prints in place of the password unless `--show-secrets`.
pub const MASK: &str = "********";

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Whether rendered text carries the real password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    Password,
    Masked,
}

/// The TLS one login was made with (`db::tls::Tls::login_tls`), which the app's files
/// repeat so the app connects as the sidecar did.
#[derive(Debug, Clone, Copy)]
pub struct LoginTls<'a> {
    pub mode: SslMode,
    /// The CA bundle the login verified with, copied for the app as `rds-ca.pem`.
    pub ca: Option<&'a [u8]>,
    /// SCRAM channel binding was required.
    pub channel_binding: bool,
}

/// Inputs shared by every renderer.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub target: &'a Target,
    pub reveal: Reveal,
    pub service_name: &'a str,
    pub url_scheme: UrlScheme,
    pub sslmode: SslMode,
    /// Whether a CA bundle is handed to the app (copied into the out-dir as `rds-ca.pem`).
    pub has_ca: bool,
    /// The out-dir as the application container sees it (`--app-dir`): paths inside the
    /// rendered files point there.
    pub app_dir: &'a Path,
    /// The password is an IAM token that expires: the profile says so.
    pub iam: bool,
    /// The sidecar required SCRAM channel binding (verify-full with a password): the app's
    /// own libpq connections are bound too (`channel_binding=require`, libpq 13+).
    pub channel_binding: bool,
}

impl Inputs<'_> {
    fn password(&self) -> &str {
        match self.reveal {
            Reveal::Password => self.target.password.expose_secret(),
            Reveal::Masked => MASK,
        }
    }

    fn app_path(&self, name: &str) -> PathBuf {
        self.app_dir.join(name)
    }

    fn ca_path(&self) -> Option<PathBuf> {
        self.has_ca.then(|| self.app_path(CA_FILE))
    }
}

/// libpq's pgpass escaping: backslash and colon get a backslash.
pub fn pgpass_escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        if c == '\\' || c == ':' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `host:port:*:user:password`. The database field is `*` so the same line serves the
/// maintenance database and any database the app switches to on that server.
pub fn pgpass(i: &Inputs<'_>) -> String {
    format!(
        "{}:{}:*:{}:{}\n",
        pgpass_escape(&i.target.host),
        i.target.port,
        pgpass_escape(&i.target.user),
        match i.reveal {
            Reveal::Password => pgpass_escape(i.password()),
            Reveal::Masked => MASK.to_string(),
        }
    )
}

/// One service section; no password (that is pgpass's job).
pub fn service_conf(i: &Inputs<'_>) -> String {
    let t = i.target;
    let mut out = format!(
        "# Written by aurora-sidecar. Use with PGSERVICEFILE and PGPASSFILE set (see application.profile).\n[{}]\nhost={}\nport={}\ndbname={}\nuser={}\nsslmode={}\n",
        i.service_name, t.host, t.port, t.database, t.user, i.sslmode
    );
    if let Some(ca) = i.ca_path() {
        let _ = writeln!(out, "sslrootcert={}", ca.display());
    }
    if i.channel_binding {
        out.push_str("channel_binding=require\n");
    }
    out
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, URL_COMPONENT).to_string()
}

/// `DATABASE_URL` in the chosen scheme.
pub fn database_url(i: &Inputs<'_>) -> String {
    let t = i.target;
    let password = match i.reveal {
        Reveal::Password => enc(i.password()),
        Reveal::Masked => MASK.to_string(),
    };
    let mut url = format!(
        "{}://{}:{}@{}/{}",
        i.url_scheme.as_str(),
        enc(&t.user),
        password,
        t.authority(),
        enc(&t.database)
    );
    match i.url_scheme {
        UrlScheme::Ecto => {
            // Postgrex has no "prefer": TLS is on or off. Anything at require or above is on;
            // verification options cannot travel in an Ecto URL (see the README).
            if i.sslmode >= SslMode::Require {
                url.push_str("?ssl=true");
            }
        }
        UrlScheme::Postgres | UrlScheme::Postgresql => {
            let _ = write!(url, "?sslmode={}", i.sslmode);
            if let Some(ca) = i.ca_path() {
                let _ = write!(url, "&sslrootcert={}", enc(&ca.to_string_lossy()));
            }
        }
    }
    url
}

/// POSIX shell single quoting: safe for any byte string without NUL.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The variables the profile exports (and `exec` will hand to its child).
pub fn environment(i: &Inputs<'_>) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("DATABASE_URL", database_url(i)),
        (
            "PGSERVICEFILE",
            i.app_path(SERVICE_FILE).display().to_string(),
        ),
        ("PGPASSFILE", i.app_path(PGPASS).display().to_string()),
        ("PGSERVICE", i.service_name.to_string()),
        // The mode the sidecar logged in with, for clients configured outside libpq's
        // service file (the Phoenix runtime.exs turns it into Ecto's `ssl:`), so an app
        // never runs with less TLS than the sidecar used.
        ("PGSSLMODE", i.sslmode.as_str().to_string()),
        (
            PASSWORD_FILE_VAR,
            i.app_path(PASSWORD_FILE).display().to_string(),
        ),
    ];
    if let Some(ca) = i.ca_path() {
        vars.push(("PGSSLROOTCERT", ca.display().to_string()));
    }
    vars
}

/// `application.profile`: source it to get `DATABASE_URL` and the libpq variables.
pub fn profile(i: &Inputs<'_>) -> String {
    let mut out = String::from("# Written by aurora-sidecar. Source it: . ./application.profile\n");
    if i.iam {
        let _ = writeln!(
            out,
            "# IAM authentication: the password in DATABASE_URL is a token that expires 15 minutes\n\
             # after it was signed. Fine for a one-off run (migrations); a connection pool must read\n\
             # the password file at each new connection (see below). aurora-sidecar run renews\n\
             # it before the token expires."
        );
    }
    let _ = writeln!(
        out,
        "# A connection pool reads the current password at each new connection from\n\
         # AURORA_SIDECAR_PASSWORD_FILE (Ecto: the Repo's configure: callback) or PGPASSFILE\n\
         # (libpq re-reads it for every connection): DATABASE_URL is read once, so after a\n\
         # rotation it holds the old password until the app restarts."
    );
    for (k, v) in environment(i) {
        let _ = writeln!(out, "export {k}={}", shell_quote(&v));
    }
    out
}

/// The files in publishing order (the CA first: the others refer to it), with their
/// modes. `application.profile` and `password` hold the password, hence 0600; pgpass is
/// 0600 because libpq ignores it otherwise.
pub fn files(i: &Inputs<'_>, ca: Option<&[u8]>) -> Vec<File> {
    let mut out = Vec::with_capacity(5);
    if let Some(ca) = ca {
        out.push(File {
            name: CA_FILE,
            contents: ca.to_vec(),
            mode: 0o644,
        });
    }
    out.push(File {
        name: PGPASS,
        contents: pgpass(i).into_bytes(),
        mode: 0o600,
    });
    out.push(File {
        name: SERVICE_FILE,
        contents: service_conf(i).into_bytes(),
        mode: 0o644,
    });
    out.push(File {
        name: PROFILE,
        contents: profile(i).into_bytes(),
        mode: 0o600,
    });
    out.push(File {
        name: PASSWORD_FILE,
        // No newline: the file is the password, byte for byte.
        contents: i.password().as_bytes().to_vec(),
        mode: 0o600,
    });
    out
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    const NASTY: &str = "p:@/%#?&=+'\"\\$`x y ü€";

    fn target(password: &str) -> Target {
        Target {
            host: "db.example".into(),
            port: 5432,
            user: "app:user".into(),
            password: SecretString::from(password),
            database: "my db".into(),
        }
    }

    fn inputs<'a>(t: &'a Target, scheme: UrlScheme, mode: SslMode, has_ca: bool) -> Inputs<'a> {
        Inputs {
            target: t,
            reveal: Reveal::Password,
            service_name: "app",
            url_scheme: scheme,
            sslmode: mode,
            has_ca,
            app_dir: Path::new("/run/aurora-sidecar"),
            iam: false,
            channel_binding: false,
        }
    }

    /// Splits a pgpass line the way libpq does: `\` escapes the next character, `:` ends a
    /// field.
    fn libpq_pgpass_fields(line: &str) -> Vec<String> {
        let mut fields = vec![String::new()];
        let mut chars = line.trim_end_matches('\n').chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => fields.last_mut().expect("one field").extend(chars.next()),
                ':' => fields.push(String::new()),
                c => fields.last_mut().expect("one field").push(c),
            }
        }
        fields
    }

    #[test]
    fn pgpass_escapes_colon_and_backslash_and_round_trips() {
        let t = target(NASTY);
        let line = pgpass(&inputs(&t, UrlScheme::Ecto, SslMode::Require, false));
        assert_eq!(
            libpq_pgpass_fields(&line),
            ["db.example", "5432", "*", "app:user", NASTY]
        );
        assert!(line.contains(r"p\:@/%#?&=+'"), "{line}");
        assert!(line.contains(r#""\\$"#), "{line}");
    }

    #[test]
    fn pgpass_is_masked_unless_revealed() {
        let t = target(NASTY);
        let mut i = inputs(&t, UrlScheme::Ecto, SslMode::Require, false);
        i.reveal = Reveal::Masked;
        assert_eq!(pgpass(&i), "db.example:5432:*:app\\:user:********\n");
        assert!(!database_url(&i).contains("ü"));
    }

    /// The Ecto algorithm: `URI.parse` takes the authority up to the first `/`, `?` or `#`,
    /// userinfo is what precedes the `@`, it is split on `:` and each part `URI.decode`d.
    fn ecto_decode(url: &str) -> (String, String, String, String, String) {
        fn decode(s: &str) -> String {
            let bytes = percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
            String::from_utf8(bytes).expect("utf-8")
        }
        let rest = url.split_once("://").expect("scheme").1;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path_query) = rest.split_at(end);
        let (userinfo, hostport) = authority.rsplit_once('@').expect("userinfo");
        let mut parts = userinfo.split(':');
        let user = decode(parts.next().expect("user"));
        let pass = decode(parts.next().expect("pass"));
        let (host, port) = hostport.rsplit_once(':').expect("port");
        let path = path_query.split(['?', '#']).next().expect("path");
        (
            user,
            pass,
            host.into(),
            port.into(),
            decode(path.trim_start_matches('/')),
        )
    }

    #[test]
    fn ecto_url_round_trips_every_special_character() {
        let t = target(NASTY);
        let url = database_url(&inputs(&t, UrlScheme::Ecto, SslMode::Require, false));
        assert!(url.starts_with("ecto://app%3Auser:"), "{url}");
        assert!(url.ends_with("@db.example:5432/my%20db?ssl=true"), "{url}");
        let (user, pass, host, port, db) = ecto_decode(&url);
        assert_eq!((user.as_str(), pass.as_str()), ("app:user", NASTY));
        assert_eq!(
            (host.as_str(), port.as_str(), db.as_str()),
            ("db.example", "5432", "my db")
        );
    }

    #[test]
    fn ecto_url_has_no_ssl_flag_below_require() {
        let t = target("pw");
        for mode in [SslMode::Disable, SslMode::Prefer] {
            assert!(!database_url(&inputs(&t, UrlScheme::Ecto, mode, false)).contains('?'));
        }
        assert!(
            database_url(&inputs(&t, UrlScheme::Ecto, SslMode::VerifyFull, true))
                .ends_with("?ssl=true")
        );
    }

    #[test]
    fn libpq_url_carries_sslmode_and_encoded_rootcert() {
        let t = target("pw");
        let url = database_url(&inputs(
            &t,
            UrlScheme::Postgresql,
            SslMode::VerifyFull,
            true,
        ));
        assert_eq!(
            url,
            "postgresql://app%3Auser:pw@db.example:5432/my%20db?sslmode=verify-full&sslrootcert=%2Frun%2Faurora-sidecar%2Frds-ca.pem"
        );
        let url = database_url(&inputs(&t, UrlScheme::Postgres, SslMode::Prefer, false));
        assert!(
            url.starts_with("postgres://") && url.ends_with("?sslmode=prefer"),
            "{url}"
        );
    }

    #[test]
    fn ipv6_host_is_bracketed_in_the_url() {
        let mut t = target("pw");
        t.host = "::1".into();
        let url = database_url(&inputs(&t, UrlScheme::Postgres, SslMode::Disable, false));
        assert!(url.contains("@[::1]:5432/"), "{url}");
    }

    #[test]
    fn service_file_has_no_password_and_names_the_ca_when_set() {
        let t = target(NASTY);
        let conf = service_conf(&inputs(&t, UrlScheme::Ecto, SslMode::VerifyFull, true));
        assert!(!conf.contains("p:@/"), "{conf}");
        assert!(conf.contains("[app]\nhost=db.example\nport=5432\ndbname=my db\nuser=app:user\nsslmode=verify-full\nsslrootcert=/run/aurora-sidecar/rds-ca.pem\n"), "{conf}");
        let conf = service_conf(&inputs(&t, UrlScheme::Ecto, SslMode::Prefer, false));
        assert!(!conf.contains("sslrootcert"));
        assert!(!conf.contains("channel_binding"));
        let mut bound = inputs(&t, UrlScheme::Ecto, SslMode::VerifyFull, true);
        bound.channel_binding = true;
        assert!(
            service_conf(&bound)
                .ends_with("sslrootcert=/run/aurora-sidecar/rds-ca.pem\nchannel_binding=require\n")
        );
    }

    #[test]
    fn shell_quoting_survives_quotes_and_expansions() {
        assert_eq!(shell_quote("it's $HOME `x`"), r"'it'\''s $HOME `x`'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn secret_bearing_files_are_0600_and_the_ca_comes_first() {
        let t = target("pw");
        let i = inputs(&t, UrlScheme::Ecto, SslMode::VerifyFull, true);
        let set: Vec<_> = files(&i, Some(b"PEM"))
            .into_iter()
            .map(|f| (f.name, f.mode))
            .collect();
        assert_eq!(
            set,
            [
                (CA_FILE, 0o644),
                (PGPASS, 0o600),
                (SERVICE_FILE, 0o644),
                (PROFILE, 0o600),
                (PASSWORD_FILE, 0o600)
            ]
        );
        assert_eq!(files(&i, None).len(), 4);
        // The password file is the password alone, whatever the kind of auth.
        let password = files(&i, None).pop().map(|f| f.contents);
        assert_eq!(password.as_deref(), Some(&b"pw"[..]));
    }

    #[test]
    fn profile_exports_the_url_and_libpq_paths() {
        let t = target("pw");
        let p = profile(&inputs(&t, UrlScheme::Ecto, SslMode::VerifyFull, true));
        assert!(
            p.contains(
                "export DATABASE_URL='ecto://app%3Auser:pw@db.example:5432/my%20db?ssl=true'\n"
            ),
            "{p}"
        );
        assert!(p.contains("export PGSERVICEFILE='/run/aurora-sidecar/pg_service.conf'\n"));
        assert!(p.contains("export PGPASSFILE='/run/aurora-sidecar/pgpass'\n"));
        assert!(p.contains("export PGSERVICE='app'\n"));
        assert!(p.contains("export PGSSLROOTCERT='/run/aurora-sidecar/rds-ca.pem'\n"));
        assert!(p.contains("export PGSSLMODE='verify-full'\n"), "{p}");
        assert!(p.contains("export AURORA_SIDECAR_PASSWORD_FILE='/run/aurora-sidecar/password'\n"));
    }

    /// Properties over arbitrary names and passwords (`cargo test`, 256 cases each; the
    /// shell property runs a real `sh` per case, so it takes fewer).
    mod properties {
        use proptest::prelude::*;

        use crate::testing::Cases;

        use super::*;

        /// What the secret parser lets through: no NUL, CR or LF in the password; no
        /// control character in user, host or database.
        fn password() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[^\\x00\\r\\n]{1,40}").expect("regex")
        }

        fn name() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[^\\p{Cc}]{1,20}").expect("regex")
        }

        fn arbitrary_target(user: String, password: String, database: String) -> Target {
            Target {
                host: "db.example".into(),
                port: 5432,
                user,
                password: SecretString::from(password),
                database,
            }
        }

        static URL: Cases = Cases::new("property_database_url", 1024);
        static PGPASS_LINE: Cases = Cases::new("property_pgpass", 1024);
        static SERVICE: Cases = Cases::new("property_service_file", 1024);
        static SHELL: Cases = Cases::new("property_shell_quoting_sh", 64);

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(URL.total()))]
            #[test]
            fn url_round_trips_as_ecto_and_libpq_decode_it(user in name(), pw in password(), db in name()) {
                URL.tick();
                let t = arbitrary_target(user.clone(), pw.clone(), db.clone());
                for scheme in [UrlScheme::Ecto, UrlScheme::Postgresql] {
                    let url = database_url(&inputs(&t, scheme, SslMode::Require, false));
                    // libpq's conninfo_uri_decode and Ecto's URI.decode agree on
                    // userinfo split at the first ':' and %XX decoding.
                    let (u, p, host, port, d) = ecto_decode(&url);
                    prop_assert_eq!((u, p, d), (user.clone(), pw.clone(), db.clone()));
                    prop_assert_eq!((host.as_str(), port.as_str()), ("db.example", "5432"));
                }
            }

            #[test]
            fn pgpass_round_trips_through_libpqs_parser(user in name(), pw in password()) {
                PGPASS_LINE.tick();
                let t = arbitrary_target(user.clone(), pw.clone(), "d".into());
                let line = pgpass(&inputs(&t, UrlScheme::Ecto, SslMode::Require, false));
                prop_assert_eq!(line.matches('\n').count(), 1, "one line");
                prop_assert_eq!(
                    libpq_pgpass_fields(&line),
                    vec!["db.example".to_string(), "5432".into(), "*".into(), user, pw]
                );
            }

            #[test]
            fn service_file_round_trips_key_value_lines(user in name(), db in name()) {
                SERVICE.tick();
                // A password no name can contain (names have no control characters).
                let t = arbitrary_target(user.clone(), "\u{1}pw\u{1}".into(), db.clone());
                let conf = service_conf(&inputs(&t, UrlScheme::Ecto, SslMode::Require, false));
                let get = |k: &str| conf.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string);
                prop_assert_eq!(get("user"), Some(user));
                prop_assert_eq!(get("dbname"), Some(db));
                prop_assert!(!conf.contains('\u{1}'), "no password in the service file");
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(SHELL.total()))]
            #[test]
            fn shell_quoting_survives_a_real_sh(value in password()) {
                SHELL.tick();
                let out = std::process::Command::new("sh")
                    .args(["-c", &format!("printf %s {}", shell_quote(&value))])
                    .output()
                    .expect("sh runs");
                prop_assert_eq!(String::from_utf8_lossy(&out.stdout).into_owned(), value);
            }
        }
    }
}
