//! Tests that stop and start the server, so they get a cluster of their own.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn started_while_postgres_is_down_it_succeeds_once_postgres_comes_up() {
    let pg = Pg::start(PgOptions::default());
    pg.create_role("late", "late-pass", true);
    pg.stop_server();

    let out = tempfile::tempdir().expect("tempdir");
    let child = sidecar()
        .arg("once")
        .arg("--out-dir")
        .arg(out.path())
        .args(["--wait-timeout", "90s"])
        .env(
            "DB_SECRET",
            secret_json("127.0.0.1", pg.port, "late", "late-pass", "late_db"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");

    // Let it fail a few times against the closed port, visible in status.json.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = std::fs::read(out.path().join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        if s.as_ref().is_some_and(|s| s["attempt"].as_u64() >= Some(3)) {
            let s = s.expect("checked");
            assert_eq!(s["phase"], "waiting");
            assert_eq!(s["last_error_class"], "transient");
            break;
        }
        assert!(Instant::now() < deadline, "no failed attempts recorded");
        std::thread::sleep(Duration::from_millis(100));
    }
    let h = health(out.path());
    assert_exit(&h, 1);

    pg.start_server();
    let o = child.wait_with_output().expect("wait");
    assert_exit(&o, 0);
    assert!(pg.database_exists("late_db"));
    let q = psql_service(out.path(), "app", "select current_database()");
    assert_eq!(stdout(&q).trim(), "late_db");
    let h = health(out.path());
    assert_exit(&h, 0);
}
