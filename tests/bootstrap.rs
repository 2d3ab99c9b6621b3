//! Least privilege: the app logs in as a role of its own, which the sidecar sets up with
//! the admin (master) credentials only when the app's login fails. The admin here is what
//! Aurora's master user is: CREATEROLE and CREATEDB, not a superuser. The cluster logs
//! every statement and connection, so the tests can look for passwords in the server log
//! and count the admin's logins.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::common::*;

const ADMIN: &str = "boot_admin";
const ADMIN_PW: &str = "admin-canary-9f2c";

fn pg() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(|| {
        let pg = Pg::start(PgOptions {
            settings: vec!["log_statement=all".into(), "log_connections=on".into()],
            ..PgOptions::default()
        });
        pg.sql(
            "postgres",
            &format!("CREATE ROLE {ADMIN} LOGIN CREATEROLE CREATEDB PASSWORD '{ADMIN_PW}'"),
        );
        pg
    })
}

fn admin_json(user: &str, password: Option<&str>) -> String {
    match password {
        Some(p) => serde_json::json!({"username": user, "password": p}).to_string(),
        None => serde_json::json!({"username": user}).to_string(),
    }
}

fn once(out: &Path, role: &str, password: &str, admin: &str) -> Command {
    let mut c = sidecar();
    c.args([
        "once",
        "--wait-timeout",
        "30s",
        "--admin-secret-env",
        "ADMIN_SECRET",
        "--out-dir",
    ])
    .arg(out)
    .env("AURORA_SIDECAR_LOG_FORMAT", "text")
    .env("ADMIN_SECRET", admin)
    .env(
        "DB_SECRET",
        secret_json(
            "127.0.0.1",
            pg().port,
            role,
            password,
            &format!("{role}_db"),
        ),
    );
    c
}

fn run(out: &Path, role: &str, password: &str) -> Output {
    once(out, role, password, &admin_json(ADMIN, Some(ADMIN_PW)))
        .output()
        .expect("runs")
}

/// `run` on the app secret in the file `secret`, with the shared admin, refreshing every
/// `interval`.
fn run_with_admin(secret: &Path, out: &Path, interval: &str) -> std::process::Child {
    sidecar()
        .args([
            "run",
            "--refresh-interval",
            interval,
            "--wait-timeout",
            "30s",
        ])
        .args(["--admin-secret-env", "ADMIN_SECRET", "--secret-file"])
        .arg(secret)
        .arg("--out-dir")
        .arg(out)
        .env("ADMIN_SECRET", admin_json(ADMIN, Some(ADMIN_PW)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run")
}

/// Lines of the server log saying `user` logged in.
fn logins(user: &str) -> usize {
    pg().log()
        .lines()
        .filter(|l| l.contains("connection authorized") && l.contains(&format!("user={user} ")))
        .count()
}

/// Every file the out-dir holds (the version directory's too), as text.
fn everything_in(out: &Path) -> String {
    let mut text = String::new();
    for entry in walk(out) {
        text.push_str(&String::from_utf8_lossy(
            &fs::read(entry).unwrap_or_default(),
        ));
    }
    text
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("read_dir").flatten() {
        let meta = fs::symlink_metadata(entry.path()).expect("meta");
        if meta.is_dir() {
            files.extend(walk(&entry.path()));
        } else if meta.is_file() {
            files.push(entry.path());
        }
    }
    files
}

/// The first start creates the role with exactly the least privileges, sets its password
/// as a verifier, creates its database owned by it; the app can create tables; no
/// password where it must not be; the second start logs in without the admin at all.
#[test]
fn the_first_start_sets_the_role_up_and_the_second_needs_no_admin() {
    const APP_PW: &str = "app-canary-77e1:@/";
    // An admin of its own: its logins are counted while other tests log in as theirs.
    const OWN_ADMIN: &str = "boot_admin_one";
    pg().sql(
        "postgres",
        &format!("CREATE ROLE {OWN_ADMIN} LOGIN CREATEROLE CREATEDB PASSWORD '{ADMIN_PW}'"),
    );
    let start = |out: &Path| {
        once(
            out,
            "app_one",
            APP_PW,
            &admin_json(OWN_ADMIN, Some(ADMIN_PW)),
        )
        .output()
        .expect("runs")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let o = start(&out);
    assert_exit(&o, 0);
    let attrs = pg().sql(
        "postgres",
        "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication FROM pg_roles WHERE rolname = 'app_one'",
    );
    assert_eq!(attrs, "t|f|f|f|f");
    let owner = pg().sql(
        "postgres",
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app_one_db'",
    );
    assert_eq!(owner, "app_one");
    let q = psql_service(
        &out,
        "app",
        "CREATE TABLE made_by_app (x int); SELECT current_user",
    );
    assert_exit(&q, 0);
    assert_eq!(stdout(&q).trim().lines().last(), Some("app_one"));
    let s = status(&out);
    assert_eq!(
        (s["role"].as_str(), s["bootstrapped"].as_bool()),
        (Some("app_one"), Some(true))
    );
    for (what, text) in [
        ("the files", everything_in(&out)),
        ("the output", format!("{}{}", stdout(&o), stderr(&o))),
    ] {
        assert!(!text.contains(ADMIN_PW), "the admin password is in {what}");
    }
    assert!(
        !pg().log().contains(APP_PW),
        "the app password reached the server log"
    );
    assert!(
        pg().log().contains("SCRAM-SHA-256$4096:"),
        "the verifier did"
    );

    let before = logins(OWN_ADMIN);
    let again = tempfile::tempdir().expect("tempdir");
    assert_exit(&start(again.path()), 0);
    assert_eq!(
        logins(OWN_ADMIN),
        before,
        "no admin login on the second start"
    );
    assert_eq!(status(again.path())["bootstrapped"], false);
    figure(
        "bootstrap_admin_logins_second_start",
        logins(OWN_ADMIN) - before,
    );
}

/// A database the admin owns (a cluster created with DatabaseName) is handed to the role;
/// one a third role owns is left alone, with a warning.
#[test]
fn a_database_of_the_admin_is_handed_over_and_a_third_partys_left_alone() {
    let pg = pg();
    pg.sql(
        "postgres",
        &format!("CREATE DATABASE app_two_db OWNER {ADMIN}"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    assert_exit(&run(dir.path(), "app_two", "pw-two"), 0);
    let owner = |db: &str| {
        pg.sql(
            "postgres",
            &format!("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'"),
        )
    };
    assert_eq!(owner("app_two_db"), "app_two");

    pg.sql("postgres", "CREATE ROLE third_party NOLOGIN");
    pg.sql("postgres", "CREATE DATABASE app_three_db OWNER third_party");
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(dir.path(), "app_three", "pw-three");
    assert_exit(&o, 0);
    assert_eq!(owner("app_three_db"), "third_party");
    assert!(
        stderr(&o).contains("belongs to another role"),
        "{}",
        stderr(&o)
    );
}

/// Twenty tasks starting at once on a fresh role: all ready, one role, one database.
#[test]
fn twenty_sidecars_at_once_make_one_role_and_one_database() {
    let dirs: Vec<_> = (0..20)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            once(
                d.path(),
                "app_many",
                "pw-many",
                &admin_json(ADMIN, Some(ADMIN_PW)),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().expect("wait");
        assert_exit(&o, 0);
    }
    let pg = pg();
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'app_many'"
        ),
        "1"
    );
    assert_eq!(
        pg.sql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'app_many_db'"
        ),
        "1"
    );
    figure("bootstrap_concurrent_sidecars", 20);
}

/// `run`: a rotated app password the server does not know yet is set through the admin,
/// validated, published; the old one no longer logs in.
#[test]
fn a_rotated_password_is_set_through_the_admin_then_published() {
    let pg = pg();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret.json");
    let out = dir.path().join("out");
    let write = |pw: &str| {
        fs::write(
            &secret,
            secret_json("127.0.0.1", pg.port, "app_rot", pw, "app_rot_db"),
        )
        .expect("secret")
    };
    write("pw-rot-1");
    let child = run_with_admin(&secret, &out, "300ms");
    wait_for("ready", 60, || health(&out).status.success());
    write("pw-rot-2");
    wait_for("the rotation published", 60, || {
        status(&out)["generation"] == 2
    });
    assert_exit(&psql_service(&out, "app", "select 1"), 0);
    let old = Command::new("psql")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGPASSWORD", "pw-rot-1")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "app_rot",
            "-d",
            "app_rot_db",
        ])
        .args(["-X", "-w", "-c", "select 1"])
        .output()
        .expect("psql");
    assert!(!old.status.success(), "the old password still logs in");
    assert_eq!(terminate(child).0, Some(0));
}

/// A `once` whose app secret names `role`, `password` and `db`, with the shared admin.
fn once_for(out: &Path, role: &str, password: &str, db: &str) -> Output {
    let mut c = once(out, role, password, &admin_json(ADMIN, Some(ADMIN_PW)));
    c.env(
        "DB_SECRET",
        secret_json("127.0.0.1", pg().port, role, password, db),
    );
    c.output().expect("runs")
}

/// Whether `role` logs in with `password` (straight, not through the sidecar).
fn logs_in(role: &str, password: &str, db: &str) -> bool {
    Command::new("psql")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGPASSWORD", password)
        .args(["-h", "127.0.0.1", "-p", &pg().port.to_string(), "-U", role])
        .args(["-d", db, "-X", "-w", "-c", "select 1"])
        .output()
        .expect("psql")
        .status
        .success()
}

/// What an attacker who can edit the app secret tries: a role that exists (even in
/// pg_read_all_data) is not given the secret's password, nor a database; a marked role
/// with a dangerous attribute or membership is refused; a role adopted on purpose (the
/// mark set by an operator) is managed; the maintenance database and templates are never
/// handed over, nor an admin database that holds a table (left, warned).
#[test]
fn an_existing_role_is_never_taken_over_nor_a_used_or_reserved_database_handed_over() {
    let pg = pg();
    let member_of = |role: &str| {
        pg.sql(
            "postgres",
            &format!(
                "SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = '{role}'"
            ),
        )
    };
    let members = |role: &str| {
        pg.sql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid WHERE r.rolname = '{role}'"
            ),
        )
    };
    let owner = |db: &str| {
        pg.sql(
            "postgres",
            &format!("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'"),
        )
    };
    pg.sql(
        "postgres",
        "CREATE ROLE reader LOGIN PASSWORD 'reader-own-pw' IN ROLE pg_read_all_data",
    );
    pg.sql(
        "postgres",
        &format!("CREATE DATABASE reader_db OWNER {ADMIN}"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let o = once_for(dir.path(), "reader", "attacker-pw", "reader_db");
    assert_exit(&o, 78);
    let err = stderr(&o);
    assert!(
        err.contains("was not created by aurora-sidecar")
            && err.contains("COMMENT ON ROLE \"reader\" IS 'managed by aurora-sidecar'"),
        "{err}"
    );
    assert!(
        logs_in("reader", "reader-own-pw", "postgres"),
        "password kept"
    );
    assert!(!logs_in("reader", "attacker-pw", "postgres"));
    assert_eq!(member_of("reader"), "pg_read_all_data");
    assert_eq!(members("reader"), "0", "the admin was not made a member");
    assert_eq!(owner("reader_db"), ADMIN);
    assert!(!dir.path().join("pgpass").exists());

    // Marked, but with an attribute or a membership an app role must not have.
    for (role, extra, says) in [
        ("marked_cdb", "CREATEDB", "has CREATEDB"),
        ("marked_rls", "BYPASSRLS", "has BYPASSRLS"),
        (
            "marked_member",
            "IN ROLE pg_read_all_data",
            "memberships in pg_read_all_data",
        ),
    ] {
        pg.sql(
            "postgres",
            &format!("CREATE ROLE {role} LOGIN PASSWORD 'own-pw' {extra}"),
        );
        pg.sql(
            "postgres",
            &format!("COMMENT ON ROLE {role} IS 'managed by aurora-sidecar'"),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let o = once_for(dir.path(), role, "attacker-pw", "postgres_x");
        assert_exit(&o, 78);
        assert!(stderr(&o).contains(says), "{role}: {}", stderr(&o));
        assert!(logs_in(role, "own-pw", "postgres"), "{role}: password kept");
    }

    // Adopted on purpose: the operator's mark lets the sidecar set the password.
    pg.sql("postgres", "CREATE ROLE adopted LOGIN PASSWORD 'before'");
    pg.sql(
        "postgres",
        "COMMENT ON ROLE adopted IS 'managed by aurora-sidecar'",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    assert_exit(&once_for(dir.path(), "adopted", "after", "adopted_db"), 0);
    assert!(logs_in("adopted", "after", "adopted_db"));
    assert_eq!(owner("adopted_db"), "adopted");

    // A database of the admin's with a table in it stays the admin's.
    pg.sql(
        "postgres",
        &format!("CREATE DATABASE used_db OWNER {ADMIN}"),
    );
    pg.sql("used_db", "CREATE TABLE precious (id int)");
    let dir = tempfile::tempdir().expect("tempdir");
    let o = once_for(dir.path(), "app_used", "pw-used", "used_db");
    assert_exit(&o, 0);
    assert_eq!(owner("used_db"), ADMIN);
    assert!(
        stderr(&o).contains("holds objects already"),
        "{}",
        stderr(&o)
    );

    // Never the maintenance database or a template, whoever owns them.
    for db in ["postgres", "template1", "template0", "rdsadmin"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = once_for(dir.path(), "app_reserved", "pw-r", db);
        assert_exit(&o, 78);
        assert!(
            stderr(&o).contains("maintenance, template"),
            "{db}: {}",
            stderr(&o)
        );
        assert!(!dir.path().join("pgpass").exists());
    }
    assert_eq!(owner("postgres"), "postgres");
    figure("bootstrap_takeovers_refused", 9);
}

/// A database owner whose name holds a newline, a forged log line, ESC, BEL and a bidi
/// override is logged escaped: no forged line, no raw control or format character.
#[test]
fn a_forged_owner_name_cannot_forge_a_text_log_line() {
    let pg = pg();
    // At most 63 bytes: PostgreSQL truncates longer names.
    let forged = "x\n2026-12-01T00:00:00Z INFO aurora_sidecar: ready\x1b\x07\u{202e}";
    let quoted = forged.replace('"', "\"\"");
    pg.sql("postgres", &format!("CREATE ROLE \"{quoted}\" NOLOGIN"));
    pg.sql(
        "postgres",
        &format!("CREATE DATABASE app_forged_db OWNER \"{quoted}\""),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(dir.path(), "app_forged", "pw-forged");
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(err.contains("belongs to another role"), "{err}");
    assert!(
        !err.lines().any(|l| l.starts_with("2026-12-01T00:00:00Z")),
        "a forged line: {err}"
    );
    assert!(!err.contains(['\x1b', '\x07', '\u{202e}']), "{err:?}");
    assert!(
        err.contains("x\\n2026-12-01") && err.contains("\\u{202e}"),
        "{err}"
    );
}

/// `run`: a rewritten secret naming another existing role, then SIGHUP, does not take
/// that role over: the refresh is refused (degraded), the old files stay, the role's
/// password is unchanged.
#[test]
fn a_rotation_naming_an_existing_role_does_not_take_it_over() {
    let pg = pg();
    pg.sql(
        "postgres",
        "CREATE ROLE auditor LOGIN PASSWORD 'auditor-own-pw'",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret.json");
    let out = dir.path().join("out");
    let write = |role: &str, pw: &str| {
        fs::write(
            &secret,
            secret_json("127.0.0.1", pg.port, role, pw, "app_hup_db"),
        )
        .expect("secret")
    };
    write("app_hup", "pw-hup-1");
    let child = run_with_admin(&secret, &out, "0");
    wait_for("ready", 60, || health(&out).status.success());
    write("auditor", "attacker-pw");
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    wait_for("the refresh refused", 30, || {
        status(&out)["phase"] == "degraded"
    });
    assert!(logs_in("auditor", "auditor-own-pw", "postgres"));
    assert!(!logs_in("auditor", "attacker-pw", "postgres"));
    assert!(
        fs::read_to_string(out.join("pgpass"))
            .expect("pgpass")
            .contains("app_hup"),
        "the old files stay"
    );
    assert_eq!(terminate(child).0, Some(0));
}

/// Each refusal, with its exit code and no credential file: the app role is the admin
/// itself, a reserved name, an admin without CREATEROLE, an admin secret without a
/// password.
#[test]
fn the_refusals_and_their_exit_codes() {
    let pg = pg();
    pg.sql(
        "postgres",
        "CREATE ROLE weak_admin LOGIN CREATEDB PASSWORD 'weak-pw'",
    );
    let cases: [(&str, &str, String, i32, &str); 5] = [
        (
            ADMIN,
            "not-the-admin-password",
            admin_json(ADMIN, Some(ADMIN_PW)),
            78,
            "is the admin user itself",
        ),
        // The master secret as the app's: its login works, and still nothing is published.
        (
            ADMIN,
            ADMIN_PW,
            admin_json(ADMIN, Some(ADMIN_PW)),
            78,
            "is the admin user itself",
        ),
        (
            "pg_app",
            "pw",
            admin_json(ADMIN, Some(ADMIN_PW)),
            78,
            "reserved name",
        ),
        (
            "app_weak",
            "pw",
            admin_json("weak_admin", Some("weak-pw")),
            77,
            "CREATEROLE",
        ),
        (
            "app_nopw",
            "pw",
            admin_json(ADMIN, None),
            78,
            "password is missing",
        ),
    ];
    for (role, password, admin, code, says) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = once(dir.path(), role, password, &admin)
            .output()
            .expect("runs");
        assert_exit(&o, code);
        assert!(stderr(&o).contains(says), "{role}: {}", stderr(&o));
        assert!(
            !dir.path().join("pgpass").exists(),
            "{role}: no credential file"
        );
        assert!(!stderr(&o).contains(ADMIN_PW));
    }
    figure("bootstrap_refusals", 5);
}

/// `render` shows the plan, touching no database.
#[test]
fn render_shows_the_plan_without_a_login() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = sidecar()
        .args(["render", "--admin-secret-env", "ADMIN_SECRET", "--out-dir"])
        .arg(dir.path())
        .env("ADMIN_SECRET", admin_json(ADMIN, Some(ADMIN_PW)))
        .env(
            "DB_SECRET",
            secret_json("127.0.0.1", pg().port, "app_plan", "pw", "app_plan_db"),
        )
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    let plan = stdout(&o);
    assert!(
        plan.contains(
            "CREATE ROLE \"app_plan\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("ALTER DATABASE \"app_plan_db\" OWNER TO \"app_plan\""),
        "{plan}"
    );
    assert!(!plan.contains(ADMIN_PW));
    // Nothing logged in for it (other tests log in as the admin meanwhile; none as this
    // role, whose database render names).
    assert!(
        !pg().log().contains("app_plan"),
        "render reached the server"
    );
}

/// `exec`'s child never sees the admin secret, even when it keeps its own.
#[test]
fn the_exec_child_never_gets_the_admin_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = sidecar()
        .args([
            "exec",
            "--keep-secret-env",
            "--admin-secret-env",
            "ADMIN_SECRET",
            "--out-dir",
        ])
        .arg(dir.path())
        .args(["--", "sh", "-c", "env"])
        .env("ADMIN_SECRET", admin_json(ADMIN, Some(ADMIN_PW)))
        .env(
            "DB_SECRET",
            secret_json("127.0.0.1", pg().port, "app_exec", "pw-exec", "app_exec_db"),
        )
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    let env = stdout(&o);
    assert!(
        env.lines().any(|l| l.starts_with("DB_SECRET=")),
        "kept as asked"
    );
    assert!(
        !env.contains("ADMIN_SECRET") && !env.contains(ADMIN_PW),
        "{env}"
    );
}

/// At RUST_LOG=trace the bootstrap's statements (the verifier) stay out of the logs, as
/// the passwords do.
#[test]
fn the_verifier_and_the_passwords_never_reach_a_trace_log() {
    const APP_PW: &str = "trace-app-pw-41c0";
    let dir = tempfile::tempdir().expect("tempdir");
    let o = once(
        dir.path(),
        "app_traced",
        APP_PW,
        &admin_json(ADMIN, Some(ADMIN_PW)),
    )
    .env("RUST_LOG", "trace")
    .output()
    .expect("runs");
    assert_exit(&o, 0);
    let logs = format!("{}{}", stdout(&o), stderr(&o));
    assert!(logs.contains("app role set up"), "{logs}");
    for (what, needle) in [
        ("verifier", "SCRAM-SHA-256$"),
        ("app password", APP_PW),
        ("admin password", ADMIN_PW),
    ] {
        assert!(!logs.contains(needle), "the {what} is in the logs");
    }
}

/// doctor with the admin secret on a first start (no app role, no database): what the
/// start would set up is reported, nothing is set up, and it exits 0 where `once` with
/// the same flags becomes ready. A wrong admin password still fails it.
#[test]
fn doctor_with_the_admin_on_a_first_start_reports_the_set_up_and_passes() {
    const APP_PW: &str = "app-doc-pw:9e";
    let doctor = |admin: &str| {
        let o = sidecar()
            .args([
                "doctor",
                "--format",
                "json",
                "--admin-secret-env",
                "ADMIN_SECRET",
            ])
            .env("ADMIN_SECRET", admin)
            .env(
                "DB_SECRET",
                secret_json("127.0.0.1", pg().port, "app_doc", APP_PW, "app_doc_db"),
            )
            .output()
            .expect("doctor runs");
        let report: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(&o), stderr(&o)));
        (report, o)
    };
    let step = |report: &serde_json::Value, name: &str| {
        report["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no step {name}: {report}"))
    };
    let exists = || {
        pg().sql(
            "postgres",
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = 'app_doc') || '|' || (SELECT count(*) FROM pg_database WHERE datname = 'app_doc_db')",
        )
    };

    let (report, o) = doctor(&admin_json(ADMIN, Some(ADMIN_PW)));
    assert_exit(&o, 0);
    let auth = step(&report, "authentication");
    assert_eq!(auth["status"], "ok", "{report}");
    assert!(
        auth["detail"]
            .as_str()
            .is_some_and(|d| d.contains("would set the app role up with the admin credentials")),
        "{report}"
    );
    let database = step(&report, "database");
    assert!(
        database["detail"]
            .as_str()
            .is_some_and(|d| d.contains("would create database app_doc_db")),
        "{report}"
    );
    assert_eq!(step(&report, "admin")["status"], "ok", "{report}");
    assert_eq!(exists(), "0|0", "doctor set something up");
    assert!(!stdout(&o).contains(ADMIN_PW) && !stdout(&o).contains(APP_PW));

    let (report, o) = doctor(&admin_json(ADMIN, Some("not-the-admin-password")));
    assert_exit(&o, 77);
    assert_eq!(step(&report, "admin")["status"], "fail", "{report}");

    // What doctor promised: the same flags make a first start ready.
    let dir = tempfile::tempdir().expect("tempdir");
    let o = once_for(&dir.path().join("out"), "app_doc", APP_PW, "app_doc_db");
    assert_exit(&o, 0);
    assert_eq!(exists(), "1|1");
}
