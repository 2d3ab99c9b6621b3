//! `--iam-auth` end to end against a local PostgreSQL that checks IAM tokens the way
//! Aurora does: through PAM. The test cluster sends the IAM user to
//! `hostssl … pam pamservice=…`; the PAM service runs `tests/iam/verify_token.py` with
//! `pam_exec expose_authtok`, which recomputes the token with botocore from the test's
//! static credentials and accepts only a valid, unexpired one for that host, port and
//! user. A refused token fails exactly as on Aurora: 28000 "PAM authentication failed".
//! Writing /etc/pam.d needs root, as CI has; the service file is removed afterwards.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use aurora_sidecar::iam::sign_token;
use aws_credential_types::Credentials;
use secrecy::ExposeSecret;

use crate::common::*;

const ACCESS_KEY: &str = "AKIDIAMTEST0001";
const SECRET_KEY: &str = "iam-test-secret-key/with+specials";
pub const REGION: &str = "eu-west-1";
const IAM_USER: &str = "iam_app";
const IAM_DB: &str = "iam_app_db";
/// A role the bootstrap creates and grants rds_iam (`the_bootstrap_grants_rds_iam…`).
const BOOT_USER: &str = "iam_boot";
const BOOT_ADMIN_PW: &str = "iam-admin-pw";
/// An admin with no password at all, as on Aurora's express configuration: it logs in
/// with IAM tokens (`--admin-iam-user`), and sets up `FRESH_USER`, which does not exist.
const TOKEN_ADMIN: &str = "iam_boss";
const FRESH_USER: &str = "iam_fresh";

/// The test venv's `bin/` (MOTO_SERVER as scripts/test sets it, else scripts/test's
/// default place), where botocore is installed with moto.
fn venv_bin() -> PathBuf {
    let moto = std::env::var("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/moto_server")
        });
    let bin = moto.parent().expect("venv bin").to_path_buf();
    assert!(
        bin.join("python").exists(),
        "no test venv at {}: run the tests through scripts/test, which creates it",
        bin.display()
    );
    bin
}

/// The venv's site-packages (botocore).
fn site_packages() -> PathBuf {
    let venv = venv_bin();
    let venv = venv.parent().expect("venv");
    let lib = venv.join("lib");
    fs::read_dir(&lib)
        .expect("venv lib")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.join("botocore").is_dir())
        .expect("botocore in the venv")
}

/// The venv's own python, for checks run as this (root) process.
fn venv_python() -> PathBuf {
    venv_bin().join("python")
}

/// A python the server's user can run (the venv's may sit under root's home).
fn system_python() -> &'static str {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| {
            Command::new("runuser")
                .args(["-u", "postgres", "--", p, "-c", "import json"])
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("a python3 the postgres user can run, for the PAM verifier")
}

/// The cluster, its PAM service and verifier, shared by this binary's tests.
pub struct Rig {
    pub pg: Pg,
    pub ca: PathBuf,
    dir: PathBuf,
    pub pki: Pki,
}

impl Rig {
    pub fn log(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(self.dir.join("verdicts.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("verdict line"))
            .collect()
    }

    fn reject_next(&self, n: u32) {
        fs::write(self.dir.join("control"), n.to_string()).expect("control");
    }

    fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Sets one key of the verifier's configuration (read at every login).
    pub fn configure(&self, key: &str, value: serde_json::Value) {
        let text = fs::read_to_string(self.config()).expect("config");
        let mut config: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        config[key] = value;
        fs::write(self.config(), config.to_string()).expect("config");
    }

    /// The rig's own directory (readable by the server's user).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The rig for one test at a time: the tests count the verifier's verdicts and the
/// server's logins, which parallel tests would mix.
fn rig() -> (std::sync::MutexGuard<'static, ()>, &'static Rig) {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    (guard, shared_rig())
}

fn shared_rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let rig = start_rig("rds", &[IAM_USER, BOOT_USER, TOKEN_ADMIN, FRESH_USER]);
        let pg = &rig.pg;
        pg.sql(
            "postgres",
            &format!("CREATE ROLE {IAM_USER} LOGIN CREATEDB"),
        );
        pg.sql(
            "postgres",
            &format!("CREATE DATABASE {IAM_DB} OWNER {IAM_USER}"),
        );
        // What RDS has, and its master user's privileges, for the bootstrap.
        pg.sql("postgres", "CREATE ROLE rds_iam NOLOGIN");
        pg.sql(
            "postgres",
            &format!("CREATE ROLE iam_admin LOGIN CREATEROLE CREATEDB PASSWORD '{BOOT_ADMIN_PW}'"),
        );
        pg.sql(
            "postgres",
            &format!("CREATE ROLE {TOKEN_ADMIN} LOGIN CREATEROLE CREATEDB; GRANT rds_iam TO {TOKEN_ADMIN}"),
        );
        rig
    })
}

/// A cluster on 127.0.0.1 with TLS from a CA of its own, whose `pam_users` log in through
/// a PAM service that runs the verifier for `service` (`rds` or `dsql`) with the test's
/// static credentials.
pub fn start_rig(service: &str, pam_users: &[&str]) -> Rig {
    require_root("the IAM rig writes a PAM service to /etc/pam.d");
    let pki = Pki::new();
    let ca = pki.ca("iam-ca");
    let (cert, key) = pki.server("iam-server", "iam-ca", "IP:127.0.0.1");
    let pam_service = format!("aurora-sidecar-test-{service}-{}", std::process::id());
    let pg = Pg::start(PgOptions {
        tls: Some((cert, key)),
        hba_prepend: pam_users
            .iter()
            .map(|user| format!("hostssl all {user} 127.0.0.1/32 pam pamservice={pam_service}"))
            .collect(),
        settings: vec!["log_connections=on".into()],
        ..PgOptions::default()
    });

    // The verifier and its files: readable by the server's user, the log writable.
    let dir = tempfile::Builder::new()
        .prefix("aurora-sidecar-iam.")
        .tempdir()
        .expect("tempdir")
        .keep();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = dir.join("verify_token.py");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iam/verify_token.py"),
        &script,
    )
    .expect("verifier");
    let config = serde_json::json!({
        "service": service,
        "site_packages": site_packages(),
        "host": "127.0.0.1",
        "port": pg.port,
        "region": REGION,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "log": dir.join("verdicts.log"),
        "control": dir.join("control"),
    });
    fs::write(dir.join("config.json"), config.to_string()).expect("config");
    for f in ["verdicts.log", "control"] {
        fs::write(dir.join(f), "").expect("touch");
        fs::set_permissions(dir.join(f), fs::Permissions::from_mode(0o666)).expect("chmod");
    }
    for f in ["verify_token.py", "config.json"] {
        fs::set_permissions(dir.join(f), fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let pam_file = PathBuf::from("/etc/pam.d").join(&pam_service);
    fs::write(
        &pam_file,
        format!(
            "auth required pam_exec.so expose_authtok quiet {} {} {}\naccount required pam_permit.so\n",
            system_python(),
            script.display(),
            dir.join("config.json").display()
        ),
    )
    .expect("PAM service file");
    // The rig lives in a static, which is never dropped: remove the PAM service and
    // the verifier's files when this test process is gone.
    watchdog(&format!(
        "rm -f '{}'; rm -rf '{}'",
        pam_file.display(),
        dir.display()
    ));
    Rig { pg, ca, dir, pki }
}

/// The static credentials and the clean AWS environment the rigs' verifiers expect.
pub fn aws_env(c: &mut Command) -> &mut Command {
    c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

/// The sidecar with the rig's flags and static credentials (no secret, no password).
fn iam_sidecar(command: &str, out: &Path) -> Command {
    iam_sidecar_as(command, out, IAM_USER, IAM_DB)
}

fn iam_sidecar_as(command: &str, out: &Path, user: &str, database: &str) -> Command {
    let r = shared_rig();
    let mut c = sidecar();
    c.args([command, "--iam-auth", "--host", "127.0.0.1"])
        .args(["--port", &r.pg.port.to_string()])
        .args(["--user", user, "--database", database, "--region", REGION])
        .arg("--sslrootcert")
        .arg(&r.ca)
        .arg("--out-dir")
        .arg(out)
        .args(["--wait-timeout", "60s"])
        .env("AURORA_SIDECAR_LOG_FORMAT", "text");
    aws_env(&mut c);
    c
}

/// psql through the rendered service file and pgpass, as the app would.
fn psql_app(out: &Path) -> Output {
    psql_service(
        out,
        "app",
        "select current_user || ' ' || (select ssl from pg_stat_ssl where pid = pg_backend_pid())",
    )
}

/// How many times the server saw the IAM user log in, from its own log.
fn logins_in_server_log() -> usize {
    shared_rig()
        .pg
        .log()
        .matches(&format!("connection authorized: user={IAM_USER}"))
        .count()
}

#[test]
fn once_with_iam_auth_renders_a_token_that_psql_logs_in_with() {
    let (_serial, r) = rig();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let before = r.log().len();
    let o = iam_sidecar("once", &out).output().expect("runs");
    assert_exit(&o, 0);
    let verdicts = &r.log()[before..];
    assert_eq!(
        verdicts.len(),
        1,
        "one login, one verification: {verdicts:?}"
    );
    assert_eq!(verdicts[0]["ok"], true);

    let token = fs::read_to_string(out.join("password")).expect("password file");
    assert!(
        token.starts_with(&format!(
            "127.0.0.1:{}/?Action=connect&DBUser={IAM_USER}&",
            r.pg.port
        )),
        "{token}"
    );
    assert!(!token.ends_with('\n'), "the token alone, no newline");
    assert_eq!(mode(&out.join("password")), 0o600);
    let pgpass = fs::read_to_string(out.join("pgpass")).expect("pgpass");
    assert!(
        pgpass.ends_with(&format!("{}\n", token.replace(':', "\\:"))),
        "{pgpass}"
    );
    let profile = fs::read_to_string(out.join("application.profile")).expect("profile");
    assert!(profile.contains("IAM authentication"), "{profile}");
    assert!(profile.contains("PGPASSFILE"));
    let service = fs::read_to_string(out.join("pg_service.conf")).expect("service");
    assert!(service.contains("sslmode=verify-full"), "{service}");

    let s = status(&out);
    assert_eq!(s["auth"], "iam");
    assert!(s["token_expires_at"].as_str().is_some(), "{s}");
    let text = s.to_string();
    assert!(!text.contains("X-Amz-Signature"), "no token in status.json");

    let q = psql_app(&out);
    assert_exit(&q, 0);
    assert_eq!(stdout(&q).trim(), format!("{IAM_USER} true"));
    assert_eq!(r.log().len(), before + 2, "psql's login was verified too");
    figure("iam_logins_verified", 2);
}

#[test]
fn run_renews_the_token_on_schedule_without_logging_in() {
    let (_serial, r) = rig();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let child = spawn_quiet(iam_sidecar("run", &out).args(["--refresh-interval", "1500ms"]));
    wait_for("ready", 60, || health(&out).status.success());
    let first = fs::read_to_string(out.join("password")).expect("password");
    let (verdicts, logins) = (r.log().len(), logins_in_server_log());

    wait_for("three renewals", 60, || {
        status(&out)["token_renewals"].as_u64() >= Some(3)
    });
    let renewed = fs::read_to_string(out.join("password")).expect("password");
    assert_ne!(renewed, first, "a new token (signed at a later second)");
    assert_eq!(
        r.log().len(),
        verdicts,
        "no login reached PAM during the renewals"
    );
    assert_eq!(
        logins_in_server_log(),
        logins,
        "no connection in the server log"
    );
    let sessions = r.pg.sql(
        "postgres",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{IAM_USER}'"),
    );
    assert_eq!(sessions, "0", "run holds no connection");
    let s = status(&out);
    assert_eq!(s["generation"], 1, "a renewal is not a new login");
    assert_eq!(s["phase"], "ready");

    // The renewed token works: libpq re-reads pgpass for the new connection.
    assert_exit(&psql_app(&out), 0);
    assert_eq!(terminate(child).0, Some(0));
    figure("iam_renewals_without_login", 3);
}

#[test]
fn a_rejected_token_is_re_signed_once_then_fails_with_77_naming_the_causes() {
    let (_serial, r) = rig();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let before = r.log().len();
    r.reject_next(1);
    let o = iam_sidecar("once", &out).output().expect("runs");
    assert_exit(&o, 0);
    let verdicts: Vec<bool> = r.log()[before..].iter().map(|v| v["ok"] == true).collect();
    assert_eq!(verdicts, [false, true], "rejected, re-signed, accepted");

    let before = r.log().len();
    r.reject_next(10);
    let out2 = dir.path().join("out2");
    let o = iam_sidecar("once", &out2).output().expect("runs");
    r.reject_next(0);
    assert_exit(&o, 77);
    assert_eq!(
        r.log().len() - before,
        2,
        "the first token and one re-signed"
    );
    let err = stderr(&o);
    for needle in [
        "PAM authentication failed",
        "token_rejected",
        "rds_iam",
        "rds-db:connect",
        "clock",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(!out2.join("pgpass").exists());
    figure("iam_rejections", 2);
}

/// The rig must be able to say no: an expired token, one signed with another key and one
/// for another user are refused by the verifier, and a stale token fails at the server
/// with Aurora's message.
#[test]
fn the_verifier_refuses_expired_forged_and_misdirected_tokens() {
    let (_serial, r) = rig();
    let port = r.pg.port;
    let now = SystemTime::now();
    let good = Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
    let forged = Credentials::new(ACCESS_KEY, "not-the-key", None, None, "test");
    let token = |user: &str, creds: &Credentials, at: SystemTime| {
        sign_token("127.0.0.1", port, user, REGION, creds, at)
            .expect("signs")
            .expose_secret()
            .to_string()
    };
    let cases = [
        ("valid", token(IAM_USER, &good, now), true),
        (
            "expired",
            token(IAM_USER, &good, now - Duration::from_secs(16 * 60)),
            false,
        ),
        ("forged", token(IAM_USER, &forged, now), false),
        ("other user", token("someone_else", &good, now), false),
    ];
    for (what, token, ok) in &cases {
        let o = Command::new(venv_python())
            .arg(r.dir.join("verify_token.py"))
            .arg(r.config())
            .env("PAM_USER", IAM_USER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .expect("stdin")
                    .write_all(format!("{token}\0").as_bytes())?;
                c.wait_with_output()
            })
            .expect("verifier runs");
        assert_eq!(o.status.success(), *ok, "{what}");
    }
    let stale = token(IAM_USER, &good, now - Duration::from_secs(20 * 60));
    let o = Command::new("psql")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGPASSWORD", &stale)
        .arg(format!(
            "host=127.0.0.1 port={port} user={IAM_USER} dbname={IAM_DB} sslmode=require"
        ))
        .args(["-X", "-w", "-tAc", "select 1"])
        .output()
        .expect("psql");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("PAM authentication failed"),
        "{}",
        stderr(&o)
    );
    figure("iam_tokens_refused_by_the_verifier", 4);
}

#[test]
fn the_token_never_reaches_a_trace_log() {
    let _serial = rig().0;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let o = iam_sidecar("once", &out)
        .env("RUST_LOG", "trace")
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    let token = fs::read_to_string(out.join("password")).expect("password");
    let signature = token.rsplit("X-Amz-Signature=").next().expect("signature");
    let logs = format!("{}{}", stdout(&o), stderr(&o));
    // Trace logging was on: the libraries' debug lines and the sidecar's trace lines are
    // there (the signing crates' trace lines are dropped on purpose, and rustls logs
    // nothing: its `logging` feature is off).
    for level in [" DEBUG ", " TRACE "] {
        assert!(logs.contains(level), "no{level}line: trace logging was off");
    }
    assert!(
        !logs.contains(signature),
        "the token's signature is in the logs"
    );
    assert!(!logs.contains(SECRET_KEY), "the secret key is in the logs");
}

/// The AWS SDK's signing and HTTP crates print what they sign at trace level (the access
/// key id, a session token); they are capped below it whatever RUST_LOG says. `render`
/// signs a token (shown on stdout, where it belongs) without a database.
#[test]
fn the_session_token_and_key_id_never_reach_a_trace_log() {
    const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE-session-token-canary";
    let dir = tempfile::tempdir().expect("tempdir");
    let o = iam_sidecar("render", &dir.path().join("out"))
        .arg("--show-secrets")
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .env("RUST_LOG", "trace")
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    let token = stdout(&o);
    assert!(
        token.contains("X-Amz-Security-Token=") && token.contains(ACCESS_KEY),
        "the token was signed with the session credentials: {token}"
    );
    let logs = stderr(&o);
    // RUST_LOG=trace was in force: the capped crates still speak below trace.
    assert!(
        logs.lines()
            .any(|l| l.contains(" DEBUG ") && l.contains("aws_config::")),
        "{logs}"
    );
    assert!(
        !logs
            .lines()
            .any(|l| l.contains(" TRACE ") && l.contains("aws_sigv4")),
        "aws-sigv4 traced what it signed"
    );
    for (what, canary) in [
        ("session token", SESSION_TOKEN),
        ("access key id", ACCESS_KEY),
        ("secret key", SECRET_KEY),
    ] {
        assert!(!logs.contains(canary), "the {what} is in the logs");
    }
}

/// Least privilege with IAM: the app role does not exist; the sidecar creates it with the
/// admin credentials, grants it rds_iam (a stand-in role here, as RDS has), and the role
/// then logs in with tokens through PAM.
#[test]
fn the_bootstrap_grants_rds_iam_and_the_role_logs_in_with_tokens() {
    let (_serial, r) = rig();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let o = iam_sidecar_as("once", &out, BOOT_USER, "iam_boot_db")
        .args(["--admin-secret-env", "ADMIN_SECRET"])
        .env(
            "ADMIN_SECRET",
            serde_json::json!({"username": "iam_admin", "password": BOOT_ADMIN_PW}).to_string(),
        )
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    let granted = r.pg.sql(
        "postgres",
        &format!("SELECT pg_has_role('{BOOT_USER}', 'rds_iam', 'member')"),
    );
    assert_eq!(granted, "t");
    let q = psql_app(&out);
    assert_exit(&q, 0);
    assert_eq!(stdout(&q).trim(), format!("{BOOT_USER} true"));
    assert!(!stderr(&o).contains(BOOT_ADMIN_PW));
    assert_eq!(status(&out)["bootstrapped"], true);
    figure("iam_bootstrap_rds_iam_granted", 1);
}

/// No password anywhere (Aurora's express configuration): the admin logs in with its own
/// IAM token, creates the app role, grants it rds_iam and its database, and the app logs
/// in with tokens; doctor beforehand says the admin may set it up and what a start does.
#[test]
fn an_iam_admin_sets_the_app_role_up_with_no_password_anywhere() {
    let (_serial, r) = rig();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let flags = ["--admin-iam-user", TOKEN_ADMIN];
    let doctor = iam_sidecar_as("doctor", &out, FRESH_USER, "iam_fresh_db")
        .args(flags)
        .output()
        .expect("doctor runs");
    assert_exit(&doctor, 0);
    let text = stdout(&doctor);
    assert!(
        text.contains(&format!("{TOKEN_ADMIN} logs in and has CREATEROLE")),
        "{text}"
    );
    assert!(
        text.contains("set the app role up with the admin credentials"),
        "{text}"
    );
    let before = r.log().len();
    let o = iam_sidecar_as("once", &out, FRESH_USER, "iam_fresh_db")
        .args(flags)
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    let users: Vec<String> = r.log()[before..]
        .iter()
        .filter(|v| v["ok"] == true)
        .map(|v| v["user"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        users.contains(&TOKEN_ADMIN.to_string()),
        "the admin's own token: {users:?}"
    );
    assert!(users.contains(&FRESH_USER.to_string()), "{users:?}");
    let granted = r.pg.sql(
        "postgres",
        &format!("SELECT pg_has_role('{FRESH_USER}', 'rds_iam', 'member')"),
    );
    assert_eq!(granted, "t");
    let owner = r.pg.sql(
        "postgres",
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'iam_fresh_db'",
    );
    assert_eq!(owner, FRESH_USER);
    let q = psql_app(&out);
    assert_exit(&q, 0);
    assert_eq!(stdout(&q).trim(), format!("{FRESH_USER} true"));
    assert_eq!(status(&out)["bootstrapped"], true);
    // Without --iam-auth there is nothing to sign the admin's token for the app with.
    let o = sidecar()
        .args([
            "once",
            "--host",
            "127.0.0.1",
            "--user",
            "x",
            "--admin-iam-user",
            TOKEN_ADMIN,
        ])
        .arg("--out-dir")
        .arg(&out)
        .output()
        .expect("runs");
    assert_exit(&o, 78);
    assert!(stderr(&o).contains("needs --iam-auth"), "{}", stderr(&o));
}

/// `doctor` with IAM: the token is signed, and the server's rejection (the verifier told
/// to refuse) is the authentication step's failure, with the IAM causes as its hint.
#[test]
fn doctor_names_a_rejected_token_at_authentication() {
    let (_serial, r) = rig();
    r.reject_next(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let o = iam_sidecar("doctor", &dir.path().join("out"))
        .args(["--format", "json", "--owner", "1000:1000"])
        .output()
        .expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_exit(&o, 77);
    let auth = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == "authentication")
        .expect("the step");
    assert_eq!(
        (auth["status"].as_str(), auth["error_class"].as_str()),
        (Some("fail"), Some("token_rejected"))
    );
    assert!(
        auth["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("rds_iam"),
        "{auth}"
    );
    let token_field = report["steps"][2]["detail"].as_str().unwrap_or_default();
    assert!(token_field.contains("IAM token signed"), "{token_field}");
    assert!(
        !stdout(&o).contains("X-Amz-Signature"),
        "the token is in the output"
    );
}

/// botocore's `generate_db_auth_token`, at a fixed time, says the same as ours.
#[test]
fn tokens_match_botocores_generate_db_auth_token() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_787_000_000);
    let cases: [(&str, u16, &str, &str, Option<&str>); 4] = [
        (
            "db.cluster-abc123.eu-west-1.rds.amazonaws.com",
            5432,
            "app",
            "eu-west-1",
            None,
        ),
        (
            "db.cluster-abc123.us-east-1.rds.amazonaws.com",
            443,
            "app user+1",
            "us-east-1",
            None,
        ),
        ("127.0.0.1", 6543, "ünïcode", "ap-south-1", None),
        (
            "db.cluster-x.eu-central-1.rds.amazonaws.com",
            5432,
            "app",
            "eu-central-1",
            Some("FwoGZXIvYXdzE/session+token=="),
        ),
    ];
    for (host, port, user, region, session) in cases {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG",
            session.map(str::to_string),
            None,
            "t",
        );
        let ours = sign_token(host, port, user, region, &creds, at).expect("signs");
        let script = r#"
import datetime, sys, botocore.auth, botocore.session
host, port, user, region, session = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] or None
botocore.auth.get_current_datetime = lambda *a, **k: datetime.datetime.utcfromtimestamp(1787000000)
s = botocore.session.get_session()
s.set_credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", session)
print(s.create_client("rds", region_name=region).generate_db_auth_token(host, port, user, Region=region), end="")
"#;
        let o = Command::new(venv_python())
            .args([
                "-c",
                script,
                host,
                &port.to_string(),
                user,
                region,
                session.unwrap_or(""),
            ])
            .output()
            .expect("python runs");
        assert!(o.status.success(), "{}", stderr(&o));
        let theirs = stdout(&o);
        let split = |t: &str| {
            let (authority, query) = t.split_once("/?").expect("token shape");
            let mut params: Vec<String> = query.split('&').map(str::to_string).collect();
            params.sort();
            (authority.to_string(), params)
        };
        assert_eq!(split(ours.expose_secret()), split(&theirs), "{host} {user}");
    }
    figure("iam_botocore_comparisons", cases.len());
}

/// What cannot work fails at once with 78, before any signing or login: no TLS, no
/// region, renewals too far apart for a 15-minute token, no credentials at all.
#[test]
fn iam_configuration_errors_exit_78_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let base = |command: &str| {
        let mut c = sidecar();
        c.args([command, "--iam-auth", "--host", "127.0.0.1", "--user", "u"])
            .args(["--wait-timeout", "60s"])
            .arg("--out-dir")
            .arg(&out)
            // Through the environment, so a case's own --sslmode flag overrides it.
            .env("AURORA_SIDECAR_SSLMODE", "require")
            .env("AURORA_SIDECAR_LOG_FORMAT", "text")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    };
    let cases: [(&str, Command, &str); 5] = [
        (
            "sslmode disable",
            {
                let mut c = base("once");
                c.args(["--sslmode", "disable", "--region", REGION]);
                c
            },
            "--iam-auth needs TLS",
        ),
        (
            "sslmode prefer",
            {
                let mut c = base("once");
                c.args(["--sslmode", "prefer", "--region", REGION]);
                c
            },
            "not prefer",
        ),
        (
            "no region",
            base("once"),
            "no AWS region to sign an IAM token for 127.0.0.1",
        ),
        (
            "renewal too slow",
            {
                let mut c = base("run");
                c.args(["--region", REGION, "--refresh-interval", "20m"]);
                c
            },
            "must be renewed at least every 10 minutes",
        ),
        (
            "no credentials",
            {
                let mut c = base("once");
                c.args(["--region", REGION]);
                c
            },
            "no AWS credentials to sign an IAM token",
        ),
    ];
    for (what, mut cmd, needle) in cases {
        let start = std::time::Instant::now();
        let o = cmd.output().expect("runs");
        assert_exit(&o, 78);
        assert!(stderr(&o).contains(needle), "{what}: {}", stderr(&o));
        assert!(start.elapsed() < Duration::from_secs(20), "{what}: at once");
    }
}

/// A user granted rds_iam (PAM on the server) with a password secret: refused at once,
/// with the advice to use --iam-auth.
#[test]
fn a_password_for_a_pam_user_is_refused_with_advice() {
    let (_serial, r) = rig();
    // verify-full requires SCRAM channel binding by default, so the clear-text password
    // PAM asks for is not even sent; with binding only preferred it is, and PAM refuses it.
    for (extra, code, logins) in [
        (&[][..], 78, 0),
        (&["--channel-binding", "prefer"][..], 77, 1),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = r.log().len();
        let o = sidecar()
            .args(["once", "--wait-timeout", "60s", "--sslmode", "verify-full"])
            .args(extra)
            .arg("--sslrootcert")
            .arg(&r.ca)
            .arg("--out-dir")
            .arg(dir.path())
            .env("AURORA_SIDECAR_LOG_FORMAT", "text")
            .env(
                "DB_SECRET",
                secret_json("127.0.0.1", r.pg.port, IAM_USER, "a-password", IAM_DB),
            )
            .output()
            .expect("runs");
        assert_exit(&o, code);
        assert!(stderr(&o).contains("--iam-auth"), "{}", stderr(&o));
        assert_eq!(r.log().len() - before, logins, "{extra:?}: not retried");
    }
}

/// `--pgbouncer` with IAM tokens: every renewal is published and RELOADed, PgBouncer's
/// new server logins use the newest token (each one verified by PAM), and a query loop
/// through PgBouncer sees no error. The rig's tokens are signed with static credentials
/// (under 1,024 bytes, what Debian's PgBouncer carries); a task role's session
/// credentials make them longer, which `--pgbouncer-max-password` refuses.
#[test]
fn pgbouncer_gets_every_renewed_token_with_no_client_error() {
    use crate::pgbouncer::{Bouncer, owner_flags, pgbouncer_admin, shared_dir};
    let (_serial, r) = rig();
    let dir = shared_dir();
    let out = dir.path().join("out");
    let port = free_port().to_string();
    let mut c = iam_sidecar("run", &out);
    c.args([
        "--refresh-interval",
        "1500ms",
        "--pgbouncer",
        "--pgbouncer-port",
        &port,
    ])
    .args(owner_flags());
    let child = spawn_quiet(&mut c);
    wait_for("ready", 60, || health(&out).status.success());
    let bouncer = Bouncer::start(&out);
    let token_len = fs::read_to_string(out.join("pgbouncer.users"))
        .expect("users")
        .lines()
        .last()
        .map_or(0, |l| l.len());
    let verdicts = r.log().len();
    let (mut queries, mut errors) = (0u32, Vec::new());
    let started = std::time::Instant::now();
    while bouncer.reloads() < 3 || status(&out)["token_renewals"].as_u64() < Some(3) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "three renewals and RELOADs"
        );
        // Close PgBouncer's server connections now and then, so logins use new tokens.
        if queries % 10 == 0 {
            let _ = pgbouncer_admin(&out, &format!("RECONNECT {IAM_DB}"));
        }
        let o = psql_service(&out, "app", "select current_user");
        if o.status.success() {
            queries += 1;
        } else {
            errors.push(stderr(&o));
        }
    }
    assert!(errors.is_empty(), "client errors: {errors:?}");
    assert!(
        r.log().len() > verdicts,
        "PgBouncer's server logins reached PAM"
    );
    assert_eq!(status(&out)["phase"], "ready");
    assert_eq!(terminate(child).0, Some(0));
    figure("pgbouncer_iam_reloads", bouncer.reloads() as u64);
    figure("pgbouncer_iam_loop_queries", queries);
    figure("iam_token_line_bytes_static_credentials", token_len as u64);
}
