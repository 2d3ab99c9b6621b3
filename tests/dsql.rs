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

fn rig() -> (std::sync::MutexGuard<'static, ()>, &'static Rig) {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static RIG: OnceLock<Rig> = OnceLock::new();
    let guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let rig = RIG.get_or_init(|| {
        let rig = start_rig("dsql", &[APP, ADMIN]);
        for role in [APP, ADMIN] {
            rig.pg.sql("postgres", &format!("CREATE ROLE {role} LOGIN"));
        }
        rig
    });
    (guard, rig)
}

/// `--dsql` for the rig's address (a custom name, as a test or a private DNS name is),
/// with the rig's CA as the system roots; no secret, no password, no --sslrootcert.
fn dsql_sidecar(r: &Rig, command: &str, out: &Path, user: &str, roots: &Path) -> Command {
    let mut c = sidecar();
    c.args([command, "--dsql", "--host", "127.0.0.1"])
        .args(["--port", &r.pg.port.to_string()])
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
        (&["--admin-secret-env", "A"][..], None, "AWS IAM GRANT"),
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
