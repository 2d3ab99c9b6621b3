//! TLS end to end: a PostgreSQL with `ssl=on`, a certificate signed by a CA made here
//! (SAN `localhost` and `127.0.0.1`), and a `hostssl`-only pg_hba. The server also listens
//! on 127.0.0.2, an address the certificate does not name, which tells verify-ca and
//! verify-full apart. A second cluster without TLS covers `prefer`'s fallback.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::*;

pub(crate) struct TlsEnv {
    pub(crate) pg: Pg,
    pub(crate) ca: PathBuf,
    pub(crate) other_ca: PathBuf,
}

/// The TLS cluster, shared with `doctor`'s tests.
pub(crate) fn tls() -> &'static TlsEnv {
    static ENV: OnceLock<TlsEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let pki = Pki::new();
        let ca = pki.ca("test-ca");
        let other_ca = pki.ca("other-ca");
        let (cert, key) = pki.server("server", "test-ca", "DNS:localhost,IP:127.0.0.1");
        let pg = Pg::start(PgOptions {
            tls: Some((cert, key)),
            hba_replace: Some(vec![
                // A role with an MD5 verifier, for the channel-binding test.
                "hostssl all md5_app 127.0.0.0/8 md5".into(),
                "hostssl all all 127.0.0.0/8 scram-sha-256".into(),
            ]),
            listen: Some("127.0.0.1,127.0.0.2".into()),
            ..PgOptions::default()
        });
        pg.create_role("tls_app", "tls-pass", true);
        pg.sql("postgres", "CREATE DATABASE tls_db OWNER tls_app");
        TlsEnv { pg, ca, other_ca }
    })
}

fn plain() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(|| {
        let pg = Pg::start(PgOptions::default());
        pg.create_role("plain_app", "plain-pass", true);
        pg
    })
}

fn once(
    out: &Path,
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    args: &[&str],
) -> std::process::Output {
    sidecar()
        .arg("once")
        .arg("--out-dir")
        .arg(out)
        .args(["--wait-timeout", "60s"])
        .args(args)
        .env("AURORA_SIDECAR_LOG_FORMAT", "text")
        .env("DB_SECRET", secret_json(host, port, user, password, db))
        .output()
        .expect("runs")
}

fn once_tls(out: &Path, host: &str, args: &[&str]) -> std::process::Output {
    let e = tls();
    once(out, host, e.pg.port, "tls_app", "tls-pass", "tls_db", args)
}

const SSL_IN_USE: &str = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";

#[test]
fn every_mode_connects_where_libpq_would_and_psql_uses_tls_through_the_rendered_files() {
    let ca = tls().ca.to_str().expect("utf-8 path").to_string();
    let cases: [(&str, &[&str]); 6] = [
        ("127.0.0.1", &["--sslmode", "prefer"]),
        ("127.0.0.1", &["--sslmode", "require"]),
        ("127.0.0.1", &["--sslmode", "require", "--sslrootcert", &ca]),
        (
            "127.0.0.1",
            &["--sslmode", "verify-ca", "--sslrootcert", &ca],
        ),
        (
            "127.0.0.1",
            &["--sslmode", "verify-full", "--sslrootcert", &ca],
        ),
        (
            "localhost",
            &["--sslmode", "verify-full", "--sslrootcert", &ca],
        ),
    ];
    for (host, args) in cases {
        let out = tempfile::tempdir().expect("tempdir");
        let o = once_tls(out.path(), host, args);
        assert_exit(&o, 0);
        // The app's view: real psql through pg_service.conf + pgpass, over TLS.
        let q = psql_service(out.path(), "app", SSL_IN_USE);
        assert_exit(&q, 0);
        assert_eq!(stdout(&q).trim(), "t", "{host} {args:?}");
    }
}

/// SCRAM channel binding is really used: a login that requires it works against the TLS
/// cluster (the TLS layer hands tokio-postgres the server certificate's hash), and
/// verify-full requires it by default, so a role the server checks with MD5 (which cannot
/// be bound) is refused there, at once and with the way out.
#[test]
fn channel_binding_is_used_and_required_under_verify_full() {
    let e = tls();
    let ca = e.ca.to_str().expect("utf-8 path").to_string();
    for args in [
        &["--sslmode", "require", "--channel-binding", "require"][..],
        &["--sslmode", "verify-full", "--sslrootcert", &ca][..],
    ] {
        let out = tempfile::tempdir().expect("tempdir");
        assert_exit(&once_tls(out.path(), "localhost", args), 0);
        // The app's own libpq connections are bound too (libpq 13+ reads the keyword).
        let conf = std::fs::read_to_string(out.path().join("pg_service.conf")).expect("conf");
        assert!(conf.contains("\nchannel_binding=require\n"), "{conf}");
        assert_exit(&psql_service(out.path(), "app", SSL_IN_USE), 0);
    }
    // An MD5 verifier: PostgreSQL then runs MD5 for this role, whatever pg_hba says.
    e.pg.sql(
        "postgres",
        "SET password_encryption = 'md5'; CREATE ROLE md5_app LOGIN PASSWORD 'md5-pass'",
    );
    e.pg.sql("postgres", "CREATE DATABASE md5_db OWNER md5_app");
    let md5 = |args: &[&str]| {
        let out = tempfile::tempdir().expect("tempdir");
        once(
            out.path(),
            "localhost",
            e.pg.port,
            "md5_app",
            "md5-pass",
            "md5_db",
            args,
        )
    };
    let started = Instant::now();
    let o = md5(&["--sslmode", "verify-full", "--sslrootcert", &ca]);
    assert_exit(&o, 78);
    assert!(started.elapsed() < Duration::from_secs(10), "not retried");
    assert!(
        stderr(&o).contains("--channel-binding prefer"),
        "{}",
        stderr(&o)
    );
    assert_exit(
        &md5(&[
            "--sslmode",
            "verify-full",
            "--sslrootcert",
            &ca,
            "--channel-binding",
            "prefer",
        ]),
        0,
    );
}

#[test]
fn verify_ca_accepts_a_name_the_certificate_lacks_and_verify_full_refuses_it_fast() {
    let ca = tls().ca.to_str().expect("utf-8 path").to_string();
    let out = tempfile::tempdir().expect("tempdir");
    assert_exit(
        &once_tls(
            out.path(),
            "127.0.0.2",
            &["--sslmode", "verify-ca", "--sslrootcert", &ca],
        ),
        0,
    );

    let out = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let o = once_tls(
        out.path(),
        "127.0.0.2",
        &["--sslmode", "verify-full", "--sslrootcert", &ca],
    );
    assert_exit(&o, 78);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "not retried until the deadline"
    );
    let err = stderr(&o);
    assert!(err.contains("127.0.0.2"), "names the host: {err}");
    assert!(err.contains("verify-full"), "names the mode: {err}");
    assert!(
        err.contains("not valid for name"),
        "names the reason: {err}"
    );
    assert_eq!(status(out.path())["last_error_class"], "tls_verification");
    assert!(!out.path().join("pgpass").exists());
}

#[test]
fn verify_full_with_the_wrong_ca_fails_fast_with_exit_78() {
    let other = tls().other_ca.to_str().expect("utf-8 path").to_string();
    let out = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let o = once_tls(
        out.path(),
        "localhost",
        &["--sslmode", "verify-full", "--sslrootcert", &other],
    );
    assert_exit(&o, 78);
    assert!(start.elapsed() < Duration::from_secs(10));
    let err = stderr(&o);
    assert!(err.contains("UnknownIssuer"), "names the reason: {err}");
    assert!(
        err.contains("localhost:") && err.contains("verify-full"),
        "{err}"
    );
}

#[test]
fn verify_modes_without_a_ca_bundle_are_a_configuration_error() {
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_tls(out.path(), "localhost", &["--sslmode", "verify-full"]);
    assert_exit(&o, 78);
    assert!(stderr(&o).contains("--sslrootcert"), "{}", stderr(&o));
}

#[test]
fn rendered_files_carry_the_tls_settings_and_the_ca_copy() {
    let ca = tls().ca.clone();
    let ca_s = ca.to_str().expect("utf-8").to_string();
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_tls(
        out.path(),
        "localhost",
        &[
            "--sslmode",
            "verify-full",
            "--sslrootcert",
            &ca_s,
            "--url-scheme",
            "postgresql",
        ],
    );
    assert_exit(&o, 0);
    let copy = out.path().join("rds-ca.pem");
    assert_eq!(
        std::fs::read(&copy).expect("copy"),
        std::fs::read(&ca).expect("ca")
    );
    let conf = std::fs::read_to_string(out.path().join("pg_service.conf")).expect("conf");
    assert!(conf.contains("sslmode=verify-full\n"), "{conf}");
    assert!(
        conf.contains(&format!("sslrootcert={}\n", copy.display())),
        "{conf}"
    );

    // libpq itself verifies the server with the copied CA through DATABASE_URL, and
    // PGSSLROOTCERT is exported.
    let q = with_profile(
        out.path(),
        &format!(
            r#"test "$PGSSLROOTCERT" = '{}' && unset PGSERVICE PGSERVICEFILE && psql "$DATABASE_URL" -X -w -tAc '{SSL_IN_USE}'"#,
            copy.display()
        ),
    );
    assert_exit(&q, 0);
    assert_eq!(stdout(&q).trim(), "t");

    // Ecto's form: ssl=true (verification options cannot travel in an Ecto URL).
    let out = tempfile::tempdir().expect("tempdir");
    assert_exit(
        &once_tls(
            out.path(),
            "localhost",
            &["--sslmode", "verify-full", "--sslrootcert", &ca_s],
        ),
        0,
    );
    let url = with_profile(out.path(), r#"printf %s "$DATABASE_URL""#);
    assert!(
        stdout(&url).ends_with("/tls_db?ssl=true"),
        "{}",
        stdout(&url)
    );
}

#[test]
fn hostssl_only_server_rejects_sslmode_disable_with_a_clear_message() {
    let out = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let o = once_tls(out.path(), "127.0.0.1", &["--sslmode", "disable"]);
    assert_exit(&o, 78);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "not retried for the 28000 window"
    );
    assert!(stderr(&o).contains("only accepts TLS"), "{}", stderr(&o));
}

#[test]
fn prefer_falls_back_to_plaintext_and_require_fails_fast_against_a_server_without_tls() {
    let pg = plain();
    let out = tempfile::tempdir().expect("tempdir");
    assert_exit(
        &once(
            out.path(),
            "127.0.0.1",
            pg.port,
            "plain_app",
            "plain-pass",
            "plain_db",
            &["--sslmode", "prefer"],
        ),
        0,
    );
    let q = psql_service(out.path(), "app", SSL_IN_USE);
    assert_eq!(stdout(&q).trim(), "f");

    let out = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let o = once(
        out.path(),
        "127.0.0.1",
        pg.port,
        "plain_app",
        "plain-pass",
        "plain_db",
        &["--sslmode", "require"],
    );
    assert_exit(&o, 78);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(stderr(&o).contains("does not offer TLS"), "{}", stderr(&o));
}

/// Keeps the helper honest: the harness's openssl really made a chain libpq accepts.
#[test]
fn the_test_pki_is_valid_for_libpq() {
    let e = tls();
    let o = Command::new("psql")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGPASSWORD", "tls-pass")
        .arg(format!(
            "host=localhost port={} user=tls_app dbname=tls_db sslmode=verify-full sslrootcert={}",
            e.pg.port,
            e.ca.display()
        ))
        .args(["-X", "-tAc", SSL_IN_USE])
        .output()
        .expect("psql");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), "t");
}
