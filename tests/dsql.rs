//! Aurora DSQL end to end, against a local PostgreSQL that checks DSQL tokens as DSQL
//! does: the IAM rig of `tests/iam.rs` with its verifier in DSQL mode (a token for the
//! host alone, `DbConnectAdmin` for `admin` and `DbConnect` for any other role, no
//! `DBUser`, recomputed with botocore's DSQL signer). The server certificate comes from a
//! CA of the rig's own, given as the system roots through `SSL_CERT_FILE`: DSQL's chain is
//! public, so the sidecar verifies it against the system roots, not the RDS bundle.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;
use crate::iam::{REGION, Rig, aws_env, start_rig};

const APP: &str = "dsql_app";
const ADMIN: &str = "admin";
/// Set up by the sidecar's admin bootstrap (missing until then).
const BOOT: &str = "dsql_boot";
/// There beforehand, mapped to no one: the bootstrap must leave it alone.
const FOREIGN: &str = "dsql_foreign";
/// The IAM role the rig's static credentials stand for.
const TASK_ROLE: &str = "arn:aws:iam::123456789012:role/app-task";

fn rig() -> (std::sync::MutexGuard<'static, ()>, &'static Rig) {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static RIG: OnceLock<Rig> = OnceLock::new();
    let guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let rig = RIG.get_or_init(|| {
        let rig = start_rig("dsql", &[APP, ADMIN, BOOT, FOREIGN]);
        for role in [APP, ADMIN, FOREIGN] {
            rig.pg.sql("postgres", &format!("CREATE ROLE {role} LOGIN"));
        }
        // DSQL's mapping table, what AWS IAM GRANT writes; the verifier lets a DbConnect
        // token in only as a role mapped to the rig's identity, as DSQL does.
        rig.pg.sql(
            "postgres",
            &format!(
                "CREATE SCHEMA sys; \
                 CREATE TABLE sys.iam_pg_role_mappings (arn text NOT NULL, pg_role_name name NOT NULL, UNIQUE (arn, pg_role_name)); \
                 GRANT USAGE ON SCHEMA sys TO PUBLIC; GRANT SELECT ON sys.iam_pg_role_mappings TO PUBLIC; \
                 GRANT INSERT ON sys.iam_pg_role_mappings TO {ADMIN}; ALTER ROLE {ADMIN} CREATEROLE; \
                 INSERT INTO sys.iam_pg_role_mappings VALUES ('{TASK_ROLE}', '{APP}')"
            ),
        );
        rig.configure(
            "mappings",
            serde_json::json!({
                "psql": "/usr/bin/psql",
                "socket": rig.pg.socket_dir(),
                "identity_arn": TASK_ROLE,
            }),
        );
        rig
    });
    (guard, rig)
}

/// `--dsql` for the rig's address (a custom name, as a test or a private DNS name is),
/// with the rig's CA as the system roots; no secret, no password, no --sslrootcert.
fn dsql_sidecar(r: &Rig, command: &str, out: &Path, user: &str, roots: &Path) -> Command {
    dsql_sidecar_on(r.pg.port, command, out, user, roots)
}

fn dsql_sidecar_on(port: u16, command: &str, out: &Path, user: &str, roots: &Path) -> Command {
    let mut c = sidecar();
    c.args([command, "--dsql", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .args(["--user", user, "--region", REGION])
        .arg("--out-dir")
        .arg(out)
        .args(["--wait-timeout", "30s"])
        .env("SSL_CERT_FILE", roots)
        .env("AURORA_SIDECAR_LOG_FORMAT", "text");
    aws_env(&mut c);
    c
}

#[test]
fn dsql_tokens_for_both_actions_log_in_verified_against_the_system_roots() {
    let (_serial, r) = rig();
    for user in [APP, ADMIN] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let before = r.log().len();
        let o = dsql_sidecar(r, "once", &out, user, &r.ca)
            .output()
            .expect("runs");
        assert_exit(&o, 0);
        let verdicts = &r.log()[before..];
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        assert_eq!(verdicts[0]["ok"], true, "{verdicts:?}");
        let token = fs::read_to_string(out.join("password")).expect("password file");
        let action = if user == ADMIN {
            "DbConnectAdmin"
        } else {
            "DbConnect"
        };
        assert!(
            token.starts_with(&format!("127.0.0.1/?Action={action}&X-Amz-")),
            "{token}"
        );
        assert!(!token.contains("DBUser"), "{token}");
        let service = fs::read_to_string(out.join("pg_service.conf")).expect("service");
        assert!(service.contains("dbname=postgres"), "{service}");
        assert!(service.contains("sslmode=verify-full"), "{service}");
        // The app's own login through the rendered files (pgpass holds the token; the
        // CA psql verifies with is the one the sidecar used, copied as rds-ca.pem).
        let q = psql_service(&out, "app", "select current_user, current_database()");
        assert_exit(&q, 0);
        assert_eq!(stdout(&q).trim(), format!("{user}|postgres"));
        let s = status(&out);
        assert_eq!(
            (s["auth"].as_str(), s["phase"].as_str()),
            (Some("iam"), Some("ready"))
        );
    }
    // Nothing was created: DSQL has one database.
    let dbs = r.pg.sql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE NOT datistemplate",
    );
    assert_eq!(dbs, "1", "only postgres");
    figure("dsql_actions_verified", 2);
}

/// The rig checks DSQL's token and no other: an RDS token (`--iam-auth` without
/// `--dsql`, for `rds-db` with the port and `DBUser`) is refused as DSQL would.
#[test]
fn an_rds_token_is_not_a_dsql_token() {
    let (_serial, r) = rig();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = sidecar();
    c.args(["once", "--iam-auth", "--host", "127.0.0.1"])
        .args(["--port", &r.pg.port.to_string()])
        .args(["--user", APP, "--database", "postgres", "--region", REGION])
        .arg("--sslrootcert")
        .arg(&r.ca)
        .arg("--out-dir")
        .arg(dir.path().join("out"))
        .args(["--wait-timeout", "20s"]);
    aws_env(&mut c);
    let before = r.log().len();
    let o = c.output().expect("runs");
    assert_exit(&o, 77);
    let verdicts = &r.log()[before..];
    assert!(
        !verdicts.is_empty() && verdicts.iter().all(|v| v["ok"] == false),
        "{verdicts:?}"
    );
}

#[test]
fn roots_that_did_not_sign_the_server_refuse_it_with_78() {
    let (_serial, r) = rig();
    let dir = tempfile::tempdir().expect("tempdir");
    let other = r.pki.ca("dsql-other-ca");
    let before = r.log().len();
    let o = dsql_sidecar(r, "once", &dir.path().join("out"), APP, &other)
        .output()
        .expect("runs");
    assert_exit(&o, 78);
    assert!(stderr(&o).contains("tls_verification"), "{}", stderr(&o));
    assert_eq!(
        r.log().len(),
        before,
        "no token was sent to an unverified server"
    );
}

#[test]
fn run_renews_dsql_tokens_without_logging_in() {
    let (_serial, r) = rig();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let child = spawn_quiet(
        dsql_sidecar(r, "run", &out, APP, &r.ca).args(["--refresh-interval", "1500ms"]),
    );
    wait_for("ready", 60, || health(&out).status.success());
    let first = fs::read_to_string(out.join("password")).expect("password");
    let verdicts = r.log().len();
    wait_for("two renewals", 60, || {
        status(&out)["token_renewals"].as_u64() >= Some(2)
    });
    let renewed = fs::read_to_string(out.join("password")).expect("password");
    assert_ne!(renewed, first, "a new token");
    assert!(
        renewed.starts_with("127.0.0.1/?Action=DbConnect&"),
        "{renewed}"
    );
    assert_eq!(r.log().len(), verdicts, "no login during the renewals");
    assert_exit(&psql_service(&out, "app", "select 1"), 0);
    assert_eq!(terminate(child).0, Some(0));
}

/// doctor walks a DSQL set-up to the end: a token signed for the role's action, TLS
/// against the system roots, a login into `postgres`, nothing to create.
#[test]
fn doctor_passes_a_dsql_setup_naming_the_action() {
    let (_serial, r) = rig();
    let dir = tempfile::tempdir().expect("tempdir");
    for (user, action) in [(APP, "DbConnect"), (ADMIN, "DbConnectAdmin")] {
        let mut c = dsql_sidecar(r, "doctor", &dir.path().join("out"), user, &r.ca);
        let o = c.args(["--format", "json"]).output().expect("runs");
        assert_exit(&o, 0);
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
        let steps = report["steps"].as_array().expect("steps");
        let detail = |name: &str| {
            let s = steps.iter().find(|s| s["name"] == name).expect("step");
            assert_ne!(s["status"], "fail", "{s}");
            s["detail"].as_str().unwrap_or_default().to_string()
        };
        assert!(
            detail("secret fields").contains(&format!("a DSQL token ({action}) signed")),
            "{report}"
        );
        assert!(
            detail("database").contains("database postgres exists"),
            "{report}"
        );
    }
}

/// Each DSQL rule refuses before anything runs, with 78 and a message naming it.
#[test]
fn dsql_bad_input_exits_78_naming_the_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let base = ["once", "--dsql", "--host", "db.internal", "--user", "app"];
    for (extra, env, says) in [
        (&["--database", "app"][..], None, "one database, postgres"),
        (
            &[][..],
            Some(("PGDATABASE", "app")),
            "one database, postgres",
        ),
        (
            &["--secret-env", "S"][..],
            Some(("S", "{}")),
            "no passwords",
        ),
        (&["--admin-secret-env", "A"][..], None, "no admin secret"),
        (
            &["--admin-iam-user", "root", "--dsql-grant-arn", TASK_ROLE][..],
            None,
            "admin role is admin",
        ),
        (
            &["--admin-iam-user", "admin"][..],
            None,
            "needs --dsql-grant-arn",
        ),
        (
            &[
                "--admin-iam-user",
                "admin",
                "--dsql-grant-arn",
                "arn:aws:sts::123456789012:assumed-role/app-task/s",
            ][..],
            None,
            "session's ARN",
        ),
        (&["--sslmode", "disable"][..], None, "needs TLS"),
    ] {
        let mut c = sidecar();
        c.args(base).args(extra).arg("--out-dir").arg(&out);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let o = c.output().expect("runs");
        assert_exit(&o, 78);
        assert!(stderr(&o).contains(says), "{extra:?}: {}", stderr(&o));
        assert!(!out.join("pgpass").exists());
    }
    // A custom name under --dsql carries no region: without --region or AWS_REGION the
    // token cannot be signed (78, naming the flag), before any connection.
    let o = sidecar()
        .args(base)
        .args(["--wait-timeout", "5s"])
        .arg("--out-dir")
        .arg(&out)
        .env(
            "SSL_CERT_FILE",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("src/testdata/amazon-root-ca-1.pem"),
        )
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("runs");
    assert_exit(&o, 78);
    assert!(stderr(&o).contains("no AWS region"), "{}", stderr(&o));
    // A DSQL host name selects DSQL by itself: the same refusal without --dsql.
    let o = sidecar()
        .args([
            "once",
            "--host",
            "abc.dsql.us-east-1.on.aws",
            "--database",
            "app",
        ])
        .arg("--out-dir")
        .arg(&out)
        .output()
        .expect("runs");
    assert_exit(&o, 78);
    assert!(
        stderr(&o).contains("one database, postgres"),
        "{}",
        stderr(&o)
    );
}

/// DSQL's SQL front, stood in for by `tests/iam/dsql_front.py` before the rig's server:
/// TLS with the rig's certificate, and `AWS IAM GRANT` run as DSQL does it (a row in
/// `sys.iam_pg_role_mappings`), each one logged as received.
struct DsqlFront {
    port: u16,
    log: std::path::PathBuf,
    child: std::process::Child,
}

impl DsqlFront {
    fn start(r: &Rig) -> DsqlFront {
        let (cert, key) = r.pki.server("dsql-front", "iam-ca", "IP:127.0.0.1");
        let log = r.dir().join(format!("grants-{}.log", std::process::id()));
        fs::write(&log, "").expect("grant log");
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iam/dsql_front.py"))
            .arg(r.pg.port.to_string())
            .args([&cert, &key, &log])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the DSQL front starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("its port");
        let port = line.trim().parse().expect("a port");
        DsqlFront { port, log, child }
    }

    fn grants(&self) -> Vec<String> {
        let text = fs::read_to_string(&self.log).expect("grant log");
        text.lines().map(str::to_string).collect()
    }
}

impl Drop for DsqlFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// No password anywhere and least privilege: the sidecar logs in as DSQL's `admin` with
/// a `DbConnectAdmin` token, creates the app role and maps it to the task role with
/// `AWS IAM GRANT`; the app's `DbConnect` token, refused before, then logs in. A second
/// start needs no admin; `doctor` first says what the admin would do; `render` shows the
/// statements.
#[test]
fn the_dsql_admin_creates_the_app_role_and_grants_it_to_the_task_role() {
    let (_serial, r) = rig();
    let front = DsqlFront::start(r);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let admin_flags = ["--admin-iam-user", ADMIN, "--dsql-grant-arn", TASK_ROLE];
    let sidecar = |command: &str| {
        let mut c = dsql_sidecar_on(front.port, command, &out, BOOT, &r.ca);
        c.args(admin_flags);
        c
    };
    let o = sidecar("render").output().expect("runs");
    assert_exit(&o, 0);
    let want = format!("AWS IAM GRANT \"{BOOT}\" TO '{TASK_ROLE}'");
    assert!(stdout(&o).contains(&want), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("DbConnectAdmin token"),
        "{}",
        stdout(&o)
    );

    let o = sidecar("doctor")
        .args(["--format", "json"])
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(
        report
            .to_string()
            .contains(&format!("map it to {TASK_ROLE}")),
        "{report}"
    );
    assert_eq!(
        r.pg.sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{BOOT}'")
        ),
        "0",
        "doctor created nothing"
    );

    let before = r.log().len();
    let o = sidecar("once").output().expect("runs");
    assert_exit(&o, 0);
    let verdicts: Vec<(String, bool)> = r.log()[before..]
        .iter()
        .map(|v| {
            (
                v["user"].as_str().unwrap_or("").to_string(),
                v["ok"] == true,
            )
        })
        .collect();
    let first_app = verdicts
        .iter()
        .position(|(u, _)| u == BOOT)
        .expect("the app tried");
    assert!(
        !verdicts[first_app].1,
        "refused before the grant: {verdicts:?}"
    );
    assert!(
        verdicts.contains(&(ADMIN.to_string(), true)),
        "{verdicts:?}"
    );
    assert_eq!(
        verdicts.last(),
        Some(&(BOOT.to_string(), true)),
        "{verdicts:?}"
    );
    assert_eq!(front.grants(), vec![want.clone()]);
    let mapping = r.pg.sql(
        "postgres",
        &format!("SELECT r.rolcanlogin, m.arn FROM pg_roles r JOIN sys.iam_pg_role_mappings m ON m.pg_role_name = r.rolname WHERE r.rolname = '{BOOT}'"),
    );
    assert_eq!(mapping, format!("t|{TASK_ROLE}"));
    assert_eq!(status(&out)["bootstrapped"], true);
    let q = psql_service(&out, "app", "select current_user");
    assert_exit(&q, 0);
    assert_eq!(stdout(&q).trim(), BOOT);

    // Set up once: the next start logs in as the app alone.
    let before = r.log().len();
    assert_exit(&sidecar("once").output().expect("runs"), 0);
    let users: Vec<_> = r.log()[before..]
        .iter()
        .map(|v| v["user"].clone())
        .collect();
    assert_eq!(users, vec![serde_json::json!(BOOT)]);
    assert_eq!(front.grants().len(), 1);
    figure("dsql_bootstrap_grants", 1);
}

/// A role that is there already and not mapped to the task role is never mapped: 78,
/// naming the statement that adopts it on purpose; the mappings stay as they were.
#[test]
fn an_existing_dsql_role_is_not_taken_over() {
    let (_serial, r) = rig();
    let front = DsqlFront::start(r);
    let dir = tempfile::tempdir().expect("tempdir");
    let o = dsql_sidecar_on(front.port, "once", &dir.path().join("out"), FOREIGN, &r.ca)
        .args(["--admin-iam-user", ADMIN, "--dsql-grant-arn", TASK_ROLE])
        .output()
        .expect("runs");
    assert_exit(&o, 78);
    let adopt = format!("AWS IAM GRANT \"{FOREIGN}\" TO '{TASK_ROLE}'");
    assert!(stderr(&o).contains(&adopt), "{}", stderr(&o));
    assert!(front.grants().is_empty());
    let mapped = r.pg.sql(
        "postgres",
        &format!("SELECT count(*) FROM sys.iam_pg_role_mappings WHERE pg_role_name = '{FOREIGN}'"),
    );
    assert_eq!(mapped, "0");
}
