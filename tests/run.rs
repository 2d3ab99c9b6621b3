//! `run` (refresh, validate-before-publish, degraded, SIGHUP, SIGTERM, no idle connection)
//! and `exec`, against a real PostgreSQL and moto.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn pg() -> &'static Pg {
    shared_pg()
}

fn moto() -> &'static Moto {
    shared_moto()
}

fn spawn_run(out: &Path, extra: &[&str], env: Vec<(&'static str, String)>) -> Child {
    let log = std::fs::File::create(out.with_extension("log")).expect("log file");
    sidecar()
        .arg("run")
        .arg("--out-dir")
        .arg(out)
        .args(extra)
        .envs(env)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn run")
}

/// The sidecar's connections as `user` (tests share the cluster and run in parallel).
fn sidecar_connections(user: &str) -> String {
    pg().sql(
        "postgres",
        &format!(
            "select count(*) from pg_stat_activity where application_name = 'aurora-sidecar' and usename = '{user}'"
        ),
    )
}

#[test]
fn secret_file_rotation_on_sighup_is_validated_published_and_holds_no_connection() {
    let user = unique("rot");
    pg().create_role(&user, "first-pass", true);
    let db = format!("{user}_db");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("secret.json");
    let out = dir.path().join("out");
    std::fs::write(
        &file,
        secret_json("127.0.0.1", pg().port, &user, "first-pass", &db),
    )
    .expect("write");
    let child = spawn_run(
        &out,
        &[
            "--secret-file",
            file.to_str().expect("utf-8"),
            "--refresh-interval",
            "0",
        ],
        vec![],
    );
    wait_for("ready", 30, || phase_is(&out, "ready"));
    assert_eq!(
        sidecar_connections(&user),
        "0",
        "no connection is held after ready"
    );

    // Rotate: database first, then the secret, then SIGHUP.
    pg().sql(
        "postgres",
        &format!("ALTER ROLE \"{user}\" PASSWORD 'second-pass'"),
    );
    std::fs::write(
        &file,
        secret_json("127.0.0.1", pg().port, &user, "second-pass", &db),
    )
    .expect("write");
    assert!(
        Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
    wait_for("generation 2", 20, || status(&out)["generation"] == 2);
    assert!(
        std::fs::read_to_string(out.join("pgpass"))
            .expect("pgpass")
            .contains("second-pass")
    );
    assert_exit(&psql_service(&out, "app", "select 1"), 0);
    assert_eq!(
        sidecar_connections(&user),
        "0",
        "no connection is held after a refresh"
    );

    let (code, took) = terminate(child);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(status(&out)["phase"], "stopping");
    assert!(
        out.join("pgpass").exists() && out.join("ready").exists(),
        "files stay in place"
    );
}

/// A rotation may also move the app to a database that does not exist yet (a new
/// `dbname` in the secret): the refresh creates it, like the init flow, instead of staying
/// degraded.
#[test]
fn rotation_to_a_secret_naming_a_new_database_creates_it_and_publishes() {
    let user = unique("newdb");
    pg().create_role(&user, "newdb-pass", true);
    let (first_db, second_db) = (format!("{user}_one"), format!("{user}_two"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("secret.json");
    let out = dir.path().join("out");
    let secret = |db: &str| secret_json("127.0.0.1", pg().port, &user, "newdb-pass", db);
    std::fs::write(&file, secret(&first_db)).expect("write");
    let child = spawn_run(
        &out,
        &[
            "--secret-file",
            file.to_str().expect("utf-8"),
            "--refresh-interval",
            "200ms",
        ],
        vec![],
    );
    wait_for("ready", 30, || phase_is(&out, "ready"));
    assert!(pg().database_exists(&first_db));
    assert!(!pg().database_exists(&second_db));

    std::fs::write(&file, secret(&second_db)).expect("write");
    wait_for("generation 2", 20, || status(&out)["generation"] == 2);
    assert!(pg().database_exists(&second_db), "the refresh created it");
    assert_eq!(status(&out)["phase"], "ready");
    let db = stdout(&psql_service(&out, "app", "select current_database()"));
    assert_eq!(db.trim(), second_db);
    assert_eq!(
        sidecar_connections(&user),
        "0",
        "no connection is held after the refresh"
    );

    let (code, _) = terminate(child);
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn wrong_new_secret_version_degrades_keeps_old_files_then_recovers() {
    let user = unique("sm");
    pg().create_role(&user, "old-pass", true);
    let db = format!("{user}_db");
    let client = moto().client().await;
    let name = unique("rotating/db");
    client
        .create_secret()
        .name(&name)
        .secret_string(secret_json("127.0.0.1", pg().port, &user, "old-pass", &db))
        .send()
        .await
        .expect("create");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let child = spawn_run(
        &out,
        &["--secret-id", &name, "--refresh-interval", "300ms"],
        moto().env(),
    );
    wait_for("ready", 30, || phase_is(&out, "ready"));
    let old_pgpass = std::fs::read(out.join("pgpass")).expect("pgpass");

    // A new AWSCURRENT whose password the database does not know yet.
    client
        .put_secret_value()
        .secret_id(&name)
        .secret_string(secret_json("127.0.0.1", pg().port, &user, "new-pass", &db))
        .version_stages("AWSCURRENT")
        .send()
        .await
        .expect("put");
    wait_for("degraded", 20, || phase_is(&out, "degraded"));
    assert_eq!(
        std::fs::read(out.join("pgpass")).expect("pgpass"),
        old_pgpass,
        "old files kept"
    );
    assert_eq!(status(&out)["last_error_class"], "password_rejected");
    let h = health(&out);
    assert_exit(&h, 0);
    assert!(stdout(&h).starts_with("degraded"), "{}", stdout(&h));

    // The database catches up: the next retry validates and publishes.
    pg().sql(
        "postgres",
        &format!("ALTER ROLE \"{user}\" PASSWORD 'new-pass'"),
    );
    wait_for("recovery", 60, || {
        phase_is(&out, "ready") && status(&out)["generation"] == 2
    });
    assert!(
        std::fs::read_to_string(out.join("pgpass"))
            .expect("pgpass")
            .contains("new-pass")
    );
    assert_exit(&psql_service(&out, "app", "select 1"), 0);
    assert!(status(&out)["checks"].as_u64().expect("checks") >= 2);

    let (code, took) = terminate(child);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn sigterm_while_waiting_exits_0_within_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let child = spawn_run(
        &out,
        &[],
        vec![(
            "DB_SECRET",
            secret_json("127.0.0.1", free_port(), "u", "p", "d"),
        )],
    );
    wait_for("waiting", 20, || phase_is(&out, "waiting"));
    let (code, took) = terminate(child);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(status(&out)["phase"], "stopping");
}

#[test]
fn exec_runs_the_command_with_the_database_environment() {
    let user = unique("ex");
    pg().create_role(&user, "exec:pass@", true);
    let db = format!("{user}_db");
    let dir = tempfile::tempdir().expect("tempdir");
    let o = sidecar()
        .arg("exec")
        .arg("--out-dir")
        .arg(dir.path())
        .args([
            "--",
            "psql",
            "-X",
            "-w",
            "-tAc",
            "select current_database()",
        ])
        .env(
            "DB_SECRET",
            secret_json("127.0.0.1", pg().port, &user, "exec:pass@", &db),
        )
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), db);
}

#[test]
fn exec_of_a_missing_or_non_executable_command_fails_like_a_shell_before_waiting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = secret_json("127.0.0.1", free_port(), "u", "p", "d");
    let start = Instant::now();
    let o = sidecar()
        .arg("exec")
        .arg("--out-dir")
        .arg(dir.path())
        .args(["--", "no-such-command-xyz"])
        .env("DB_SECRET", &secret)
        .output()
        .expect("runs");
    assert_exit(&o, 127);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "fails before waiting"
    );
    let script = dir.path().join("not-exec.sh");
    std::fs::write(&script, "#!/bin/sh\n").expect("write");
    let o = sidecar()
        .arg("exec")
        .arg("--out-dir")
        .arg(dir.path())
        .arg("--")
        .arg(&script)
        .env("DB_SECRET", &secret)
        .output()
        .expect("runs");
    assert_exit(&o, 126);
    let o = sidecar()
        .args(["exec"])
        .env("DB_SECRET", &secret)
        .output()
        .expect("runs");
    assert_exit(&o, 64);
}
