//! `once`, `health` and `render` end to end against a real PostgreSQL (one cluster shared by
//! this binary; each test its own role and database) and moto's Secrets Manager, with real
//! `psql` reading the rendered files.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn pg() -> &'static Pg {
    shared_pg()
}

fn moto() -> &'static Moto {
    shared_moto()
}

/// Every special character the issue lists, plus non-ASCII.
const NASTY: &str = "a:b@c/d%e#f?g&h=i+j'k\"l\\m$n`o p ü€✓";

/// A role (with CREATEDB) and the name of its database, which does not exist yet.
fn fresh_role(password: &str) -> (String, String) {
    let user = unique("u");
    pg().create_role(&user, password, true);
    (user.clone(), format!("{user}_db"))
}

fn once_env(out: &Path, secret: &str) -> Command {
    let mut c = sidecar();
    c.arg("once")
        .arg("--out-dir")
        .arg(out)
        // Through the environment, so a test's own --wait-timeout flag overrides it.
        .env("AURORA_SIDECAR_WAIT_TIMEOUT", "30s")
        .env("DB_SECRET", secret);
    c
}

#[test]
fn env_secret_renders_files_that_psql_uses_and_health_turns_green() {
    let (user, db) = fresh_role("simple-pass");
    let out = tempfile::tempdir().expect("tempdir");
    let before = health(out.path());
    assert_exit(&before, 1);

    let o = once_env(
        out.path(),
        &secret_json("127.0.0.1", pg().port, &user, "simple-pass", &db),
    )
    .output()
    .expect("runs");
    assert_exit(&o, 0);
    assert_eq!(
        listing(out.path()),
        [
            "..data",
            "..v.XXXXXX",
            "application.profile",
            "password",
            "pg_service.conf",
            "pgpass",
            "ready",
            "status.json"
        ]
    );
    // The credential files are links into the current version, made once.
    for name in [
        "application.profile",
        "password",
        "pg_service.conf",
        "pgpass",
    ] {
        let link = std::fs::read_link(out.path().join(name)).expect("a symlink");
        assert_eq!(link, Path::new("..data").join(name));
    }
    // The password alone, byte for byte, for clients that read it per connection.
    assert_eq!(
        std::fs::read(out.path().join("password")).expect("password"),
        b"simple-pass"
    );
    assert_eq!(mode(&out.path().join("password")), 0o600);
    assert_eq!(mode(&out.path().join("pgpass")), 0o600);
    assert_eq!(mode(&out.path().join("application.profile")), 0o600);
    assert_eq!(mode(&out.path().join("pg_service.conf")), 0o644);
    assert_eq!(mode(&out.path().join("status.json")), 0o644);

    let q = psql_service(
        out.path(),
        "app",
        "select current_user || '@' || current_database()",
    );
    assert_exit(&q, 0);
    assert_eq!(stdout(&q).trim(), format!("{user}@{db}"));

    let s = status(out.path());
    assert_eq!(s["phase"], "ready");
    assert_eq!(s["generation"], 1);
    assert!(s["last_error"].is_null());

    let h = health(out.path());
    assert_exit(&h, 0);
    assert!(stdout(&h).starts_with("ready attempt="), "{}", stdout(&h));
}

#[test]
fn password_with_every_special_character_round_trips_through_pgpass_url_and_ecto() {
    let (user, db) = fresh_role(NASTY);
    let secret = secret_json("127.0.0.1", pg().port, &user, NASTY, &db);

    // pgpass + pg_service.conf, through real psql.
    let out = tempfile::tempdir().expect("tempdir");
    let mut c = once_env(out.path(), &secret);
    assert_exit(
        &c.args(["--url-scheme", "postgresql"])
            .output()
            .expect("runs"),
        0,
    );
    let q = psql_service(out.path(), "app", "select current_user");
    assert_exit(&q, 0);
    assert_eq!(stdout(&q).trim(), user);

    // DATABASE_URL (libpq scheme) after sourcing the profile, through real psql; no
    // PGPASSFILE fallback: the password must come from the URL itself.
    let q = with_profile(
        out.path(),
        r#"unset PGPASSFILE PGSERVICEFILE PGSERVICE; psql "$DATABASE_URL" -X -w -tAc 'select current_user'"#,
    );
    assert_exit(&q, 0);
    assert_eq!(stdout(&q).trim(), user);

    // The ecto URL decoded as Ecto does: URI.parse, userinfo split on ':', URI.decode.
    let ecto_out = tempfile::tempdir().expect("tempdir");
    assert_exit(
        &once_env(ecto_out.path(), &secret).output().expect("runs"),
        0,
    );
    let url = with_profile(ecto_out.path(), r#"printf %s "$DATABASE_URL""#);
    let url = stdout(&url);
    assert!(url.starts_with("ecto://"), "{url}");
    let (u, p, host, port, d) = ecto_parse(&url);
    assert_eq!(
        (u.as_str(), p.as_str(), d.as_str()),
        (user.as_str(), NASTY, db.as_str())
    );
    assert_eq!((host.as_str(), port), ("127.0.0.1", pg().port));
}

/// Elixir's `URI.parse` splits `scheme://authority/path?query#fragment` with RFC 3986's
/// regular expression (authority ends at the first `/`, `?` or `#`), takes the userinfo
/// before the `@`; Ecto splits it on `:` and `URI.decode`s each part and the database.
fn ecto_parse(url: &str) -> (String, String, String, u16, String) {
    fn decode(s: &str) -> String {
        // URI.decode: %XX to the byte, everything else as is; fails on a bad escape.
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("escape");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf-8")
    }
    let rest = url.split_once("://").expect("scheme").1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = (&rest[..end], &rest[end..]);
    let (userinfo, hostport) = authority.rsplit_once('@').expect("userinfo");
    let parts: Vec<&str> = userinfo.split(':').collect();
    assert_eq!(
        parts.len(),
        2,
        "a ':' in the userinfo beyond the separator would truncate Ecto's password"
    );
    let (host, port) = hostport.rsplit_once(':').expect("port in the authority");
    let path = path.split(['?', '#']).next().expect("path");
    (
        decode(parts[0]),
        decode(parts[1]),
        host.to_string(),
        port.parse().expect("numeric port"),
        decode(path.trim_start_matches('/')),
    )
}

#[test]
fn secret_file_with_port_as_string_works() {
    let (user, db) = fresh_role("file-pass");
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = format!(
        r#"{{"engine":"aurora-postgresql","host":"127.0.0.1","port":"{}","username":"{user}","password":"file-pass","dbname":"{db}"}}"#,
        pg().port
    );
    let file = dir.path().join("secret.json");
    std::fs::write(&file, secret).expect("secret file");
    let out = dir.path().join("out");
    let o = sidecar()
        .arg("once")
        .arg("--secret-file")
        .arg(&file)
        .arg("--out-dir")
        .arg(&out)
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    assert_exit(&psql_service(&out, "app", "select 1"), 0);
}

#[test]
fn libpq_variables_are_the_fallback_source() {
    let (user, db) = fresh_role("libpq-pass");
    let out = tempfile::tempdir().expect("tempdir");
    let o = sidecar()
        .arg("once")
        .arg("--out-dir")
        .arg(out.path())
        .args(["--service-name", "mydb"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg().port.to_string())
        .env("PGUSER", &user)
        .env("PGPASSWORD", "libpq-pass")
        .env("PGDATABASE", &db)
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    let q = psql_service(out.path(), "mydb", "select current_database()");
    assert_eq!(stdout(&q).trim(), db);
}

#[test]
fn master_secret_needs_host_and_port_flags() {
    let (user, db) = fresh_role("master-pass");
    let out = tempfile::tempdir().expect("tempdir");
    let master = format!(r#"{{"username":"{user}","password":"master-pass"}}"#);
    let o = once_env(out.path(), &master).output().expect("runs");
    assert_exit(&o, 78);
    assert!(stderr(&o).contains("host is missing"), "{}", stderr(&o));

    let o = once_env(out.path(), &master)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &pg().port.to_string(),
            "--database",
            &db,
        ])
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    assert!(pg().database_exists(&db));
}

#[tokio::test]
async fn secrets_manager_source_reads_awscurrent_and_records_its_version() {
    let (user, db) = fresh_role("sm-pass");
    let client = moto().client().await;
    let name = unique("prod/db");
    let created = client
        .create_secret()
        .name(&name)
        .secret_string(secret_json("127.0.0.1", pg().port, &user, "sm-pass", &db))
        .send()
        .await
        .expect("moto create_secret");
    let version = created.version_id().expect("version id").to_string();

    let out = tempfile::tempdir().expect("tempdir");
    let o = sidecar()
        .arg("once")
        .args(["--secret-id", &name])
        .arg("--out-dir")
        .arg(out.path())
        .envs(moto().env())
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    assert_exit(&psql_service(out.path(), "app", "select 1"), 0);
    assert_eq!(status(out.path())["secret_version"], version.as_str());
}

/// Moto over HTTPS with a certificate from a private CA, and a secret in it; `once`
/// against it, trusting that CA (through `SSL_CERT_FILE`) or not.
struct HttpsSecret {
    pki: Pki,
    moto: Moto,
    name: String,
}

impl HttpsSecret {
    async fn new(password: &str) -> HttpsSecret {
        let pki = Pki::new();
        pki.ca("sm-ca");
        let moto = Moto::start_tls(&pki, "sm-ca");
        let (user, db) = fresh_role(password);
        let name = unique("tls/db");
        moto.client()
            .await
            .create_secret()
            .name(&name)
            .secret_string(secret_json("127.0.0.1", pg().port, &user, password, &db))
            .send()
            .await
            .expect("moto create_secret over HTTPS");
        HttpsSecret { pki, moto, name }
    }

    fn once(&self, out: &Path, trust: bool) -> Output {
        let mut cmd = sidecar();
        cmd.arg("once")
            .args(["--secret-id", &self.name, "--wait-timeout", "3s"])
            .arg("--out-dir")
            .arg(out)
            .envs(self.moto.env());
        if trust {
            cmd.env("SSL_CERT_FILE", self.pki.dir.join("sm-ca.crt"));
        }
        cmd.output().expect("runs")
    }
}

/// The AWS client's own TLS (hyper on rustls with ring, `crypto::https_client`): the
/// endpoint's certificate is verified against the system roots, which `SSL_CERT_FILE`
/// replaces as for any rustls-native-certs program.
#[tokio::test]
async fn secrets_manager_over_https_verifies_the_endpoint_certificate() {
    let sm = HttpsSecret::new("sm-tls-pass").await;
    let trusted = tempfile::tempdir().expect("tempdir");
    assert_exit(&sm.once(trusted.path(), true), 0);
    assert_exit(&psql_service(trusted.path(), "app", "select 1"), 0);
}

/// The other side of the test above: an endpoint certificate from a CA the system roots
/// do not hold is refused. (Skipped under emulation by scripts/test-aarch64: the refusal
/// must be seen inside the 3 s --wait-timeout.)
#[tokio::test]
async fn secrets_manager_over_https_refuses_an_untrusted_endpoint() {
    let sm = HttpsSecret::new("sm-tls-untrusted").await;
    let untrusted = tempfile::tempdir().expect("tempdir");
    let o = sm.once(untrusted.path(), false);
    let stderr = String::from_utf8_lossy(&o.stderr);
    // Retried as Secrets Manager being unavailable until the deadline (the SDK reports
    // a failed handshake as a dispatch failure), then 69.
    assert_eq!(o.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("invalid peer certificate: UnknownIssuer"),
        "{stderr}"
    );
    assert!(!untrusted.path().join("pgpass").exists());
}

#[tokio::test]
async fn missing_secret_in_secrets_manager_exits_78_naming_the_secret() {
    let out = tempfile::tempdir().expect("tempdir");
    let o = sidecar()
        .arg("once")
        .args(["--secret-id", "does/not/exist"])
        .arg("--out-dir")
        .arg(out.path())
        .envs(moto().env())
        .output()
        .expect("runs");
    assert_exit(&o, 78);
    assert!(stderr(&o).contains("does/not/exist"), "{}", stderr(&o));
    assert!(!out.path().join("ready").exists());
}

#[test]
fn database_is_created_when_missing_and_left_alone_when_present() {
    let (user, db) = fresh_role("create-pass");
    assert!(!pg().database_exists(&db));
    let secret = secret_json("127.0.0.1", pg().port, &user, "create-pass", &db);
    let out = tempfile::tempdir().expect("tempdir");
    assert_exit(&once_env(out.path(), &secret).output().expect("runs"), 0);
    assert!(pg().database_exists(&db));
    let owner = pg().sql(
        "postgres",
        &format!("select pg_get_userbyid(datdba) from pg_database where datname = '{db}'"),
    );
    assert_eq!(owner, user, "created by and owned by the app role");

    // Put something in it; a second run must neither fail nor recreate the database.
    pg().sql(
        &db,
        "create table keep_me(x int); insert into keep_me values (42)",
    );
    let out2 = tempfile::tempdir().expect("tempdir");
    let o = once_env(out2.path(), &secret).output().expect("runs");
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("\"created\":false"), "{}", stderr(&o));
    assert_eq!(pg().sql(&db, "select x from keep_me"), "42");
}

#[test]
fn thirty_concurrent_creators_of_the_same_database_all_succeed() {
    let (user, db) = fresh_role("race-pass");
    let secret = secret_json("127.0.0.1", pg().port, &user, "race-pass", &db);
    let dirs: Vec<_> = (0..30)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            once_env(d.path(), &secret)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let mut created = 0;
    for o in &outputs {
        assert_exit(o, 0);
        created += usize::from(stderr(o).contains("\"created\":true"));
    }
    assert!(pg().database_exists(&db));
    assert_eq!(
        created, 1,
        "exactly one process creates it; the others see 42P04/23505 as success"
    );
}

#[test]
fn wrong_password_exits_77_after_bounded_retries() {
    let (user, db) = fresh_role("right-pass");
    let out = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let o = once_env(
        out.path(),
        &secret_json("127.0.0.1", pg().port, &user, "wrong-pass", &db),
    )
    .args(["--password-retries", "2", "--wait-timeout", "5m"])
    .output()
    .expect("runs");
    assert_exit(&o, 77);
    let err = stderr(&o);
    assert!(
        err.contains("28P01") || err.contains("password authentication failed"),
        "{err}"
    );
    assert!(err.contains("rejected 3 times"), "{err}");
    // 3 attempts with ~0.25s + ~0.5s of backoff, nowhere near the 5 minute deadline.
    assert!(start.elapsed() < Duration::from_secs(30));
    let s = status(out.path());
    assert_eq!(s["attempt"], 3);
    assert_eq!(s["last_error_class"], "password_rejected");
    assert!(!out.path().join("pgpass").exists());
}

/// No credential provider configured at all (no task role, no keys, no profile, IMDS
/// off): waiting cannot help, so it fails at once instead of at the deadline.
#[test]
fn missing_aws_credentials_fail_at_once_with_78() {
    let out = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let o = sidecar()
        .args(["once", "--secret-id", "prod/db", "--wait-timeout", "5m"])
        .arg("--out-dir")
        .arg(out.path())
        .envs(
            moto()
                .env()
                .into_iter()
                .filter(|(k, _)| !k.starts_with("AWS_ACCESS_KEY") && !k.starts_with("AWS_SECRET")),
        )
        .output()
        .expect("runs");
    assert_exit(&o, 78);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let err = stderr(&o);
    assert!(
        err.contains("no AWS credentials") && err.contains("task role"),
        "{err}"
    );
    assert!(
        err.contains("Environment") && err.contains("EcsContainer"),
        "names the providers tried: {err}"
    );
}

#[tokio::test]
async fn trace_logs_never_contain_the_password() {
    let password = "Tr4ce-S3cret:@/%ü";
    let (user, db) = fresh_role(password);
    let encoded = "Tr4ce-S3cret%3A%40%2F%25%C3%BC";
    let escaped = r"Tr4ce-S3cret\:@/%ü";

    // Secrets Manager path (the SDK logs most at trace), then the env path.
    let client = moto().client().await;
    let name = unique("trace/db");
    client
        .create_secret()
        .name(&name)
        .secret_string(secret_json("127.0.0.1", pg().port, &user, password, &db))
        .send()
        .await
        .expect("create_secret");
    let out = tempfile::tempdir().expect("tempdir");
    let runs = [
        sidecar()
            .args(["once", "--secret-id", &name])
            .arg("--out-dir")
            .arg(out.path())
            .envs(moto().env())
            .env("RUST_LOG", "trace")
            .output()
            .expect("runs"),
        once_env(
            out.path(),
            &secret_json("127.0.0.1", pg().port, &user, password, &db),
        )
        .env("RUST_LOG", "trace")
        .output()
        .expect("runs"),
        // A failing run too: error paths must not leak either.
        once_env(
            out.path(),
            &secret_json("127.0.0.1", pg().port, &user, password, "no_such_db_x"),
        )
        .args(["--no-create", "--wait-timeout", "1s"])
        .env("RUST_LOG", "trace")
        .output()
        .expect("runs"),
    ];
    assert_exit(&runs[0], 0);
    assert_exit(&runs[1], 0);
    assert_exit(&runs[2], 69);
    for o in &runs {
        let all = format!("{}{}", stdout(o), stderr(o));
        assert!(all.len() > 1000, "trace logging is on: {} bytes", all.len());
        for needle in [password, encoded, escaped, "Tr4ce-S3cret"] {
            assert!(!all.contains(needle), "{needle:?} leaked into the logs");
        }
    }
    let status = std::fs::read_to_string(out.path().join("status.json")).expect("status");
    assert!(!status.contains("Tr4ce-S3cret"));
}

#[test]
fn deadline_exits_69_with_the_last_error() {
    let port = free_port(); // nothing listens here
    let out = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let o = once_env(out.path(), &secret_json("127.0.0.1", port, "u", "p", "d"))
        .args(["--wait-timeout", "2s"])
        .output()
        .expect("runs");
    assert_exit(&o, 69);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        stderr(&o).contains("still not ready after"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).to_lowercase().contains("connection refused"),
        "{}",
        stderr(&o)
    );
    let s = status(out.path());
    assert_eq!(s["phase"], "waiting");
    assert_eq!(s["last_error_class"], "transient");
    let h = health(out.path());
    assert_exit(&h, 1);
    assert!(
        stdout(&h).contains("connection refused") || stdout(&h).contains("Connection refused"),
        "{}",
        stdout(&h)
    );
}

#[test]
fn sigterm_during_the_wait_exits_promptly_with_nothing_half_written() {
    let port = free_port();
    let out = tempfile::tempdir().expect("tempdir");
    std::fs::write(out.path().join("ready"), "stale\n").expect("stale marker");
    let child = once_env(out.path(), &secret_json("127.0.0.1", port, "u", "p", "d"))
        .args(["--wait-timeout", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until it is really in the wait loop (status says so), then stop it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(out.path().join("status.json"))
        .is_ok_and(|s| s.contains("\"attempt\": 2"))
    {
        assert!(Instant::now() < deadline, "never reached the wait loop");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !out.path().join("ready").exists(),
        "the stale marker is removed at start"
    );
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let o = child.wait_with_output().expect("wait");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "took {:?}",
        sent.elapsed()
    );
    assert_exit(&o, 143);
    assert_eq!(
        listing(out.path()),
        ["status.json"],
        "only the status file, no temp files"
    );
    assert_eq!(status(out.path())["phase"], "stopping");
}

#[test]
fn no_create_waits_instead_of_creating() {
    let (user, db) = fresh_role("nocreate-pass");
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_env(
        out.path(),
        &secret_json("127.0.0.1", pg().port, &user, "nocreate-pass", &db),
    )
    .args(["--no-create", "--wait-timeout", "2s"])
    .output()
    .expect("runs");
    assert_exit(&o, 69);
    assert!(!pg().database_exists(&db));
    assert_eq!(status(out.path())["last_error_class"], "missing_database");
}

#[test]
fn missing_createdb_privilege_exits_77_with_advice() {
    let user = unique("nocdb");
    pg().create_role(&user, "nocdb-pass", false);
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_env(
        out.path(),
        &secret_json(
            "127.0.0.1",
            pg().port,
            &user,
            "nocdb-pass",
            &format!("{user}_db"),
        ),
    )
    .output()
    .expect("runs");
    assert_exit(&o, 77);
    assert!(stderr(&o).contains("CREATEDB"), "{}", stderr(&o));
}

#[test]
fn render_masks_the_password_and_touches_nothing() {
    let out = tempfile::tempdir().expect("tempdir");
    let target = out.path().join("never-created");
    let secret = secret_json("db.internal", 5432, "app", NASTY, "appdb");
    let o = sidecar()
        .arg("render")
        .arg("--out-dir")
        .arg(&target)
        .env("DB_SECRET", &secret)
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("db.internal:5432:*:app:********"), "{text}");
    assert!(
        text.contains("export DATABASE_URL='ecto://app:********@db.internal:5432/appdb'"),
        "{text}"
    );
    assert!(!text.contains("ü€"), "{text}");
    assert!(!target.exists(), "render writes nothing");

    let o = sidecar()
        .args(["render", "--show-secrets", "--url-scheme", "postgres"])
        .env("DB_SECRET", &secret)
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains(r"db.internal:5432:*:app:a\:b@c/d%e#f?g&h=i+j'k"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn unwritable_out_dir_exits_73_before_waiting() {
    let o = once_env(
        Path::new("/proc/aurora-sidecar"),
        &secret_json("127.0.0.1", 1, "u", "p", "d"),
    )
    .output()
    .expect("runs");
    assert_exit(&o, 73);
    assert!(
        stderr(&o).contains("/proc/aurora-sidecar"),
        "{}",
        stderr(&o)
    );
}
