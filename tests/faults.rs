//! Faults in every phase, against real processes: the Aurora resume simulator
//! (`common::front`) in front of a real PostgreSQL, the server itself killed with SIGKILL
//! and restarted during the wait, during provisioning and while `run` is ready.
//! Each test counts what the sidecar did (connections the front saw, in order).

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::front::{Act, Front};
use crate::common::*;

fn once_via(port: u16, user: &str, password: &str, db: &str, out: &Path, extra: &[&str]) -> Output {
    sidecar()
        .args(["once", "--wait-timeout", "60s"])
        .args(extra)
        .arg("--out-dir")
        .arg(out)
        .env("AURORA_SIDECAR_LOG_FORMAT", "text")
        .env(
            "DB_SECRET",
            secret_json("127.0.0.1", port, user, password, db),
        )
        .output()
        .expect("runs")
}

fn n_times(act: Act, n: usize) -> Vec<Act> {
    vec![act; n]
}

/// The README's "retry" rows, each answered three times before the server lets the login
/// through: exactly four connections, ready, and the class logged.
#[test]
fn transient_sqlstates_are_retried_until_the_login_works() {
    let pg = shared_pg();
    let cases: [(&str, &str, &str); 4] = [
        ("57P03", "the database system is starting up", "transient"),
        ("53300", "sorry, too many clients already", "transient"),
        ("08006", "connection failure", "transient"),
        (
            "57P01",
            "terminating connection due to administrator command",
            "transient",
        ),
    ];
    for (code, message, class) in cases {
        let (user, db) = pg.role_with_db("f", "pw-t");
        let front = Front::start(pg.port, n_times(Act::Fatal(code, message), 3));
        let out = tempfile::tempdir().expect("tempdir");
        let o = once_via(front.port, &user, "pw-t", &db, out.path(), &[]);
        assert_exit(&o, 0);
        let mut expected = vec![format!("fatal {code}"); 3];
        expected.push("pass".into());
        assert_eq!(front.met(), expected, "{code}");
        assert!(stderr(&o).contains(message), "{code}: {}", stderr(&o));
        assert!(stderr(&o).contains(class), "{code}: {}", stderr(&o));
        assert_eq!(status(out.path())["phase"], "ready");
        figure(&format!("fault_sqlstate_{code}"), 3);
    }
}

/// 28000 while Aurora resumes is retried (early in the wait); 28000 "no encryption" under
/// sslmode=disable is a configuration error at once.
#[test]
fn sqlstate_28000_is_retried_early_but_tls_required_fails_at_once() {
    let pg = shared_pg();
    let (user, db) = pg.role_with_db("f", "pw-a");
    let front = Front::start(
        pg.port,
        n_times(
            Act::Fatal(
                "28000",
                "no pg_hba.conf entry for host \"10.0.0.5\", user \"app\", database \"app\", SSL encryption",
            ),
            2,
        ),
    );
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_via(front.port, &user, "pw-a", &db, out.path(), &[]);
    assert_exit(&o, 0);
    assert_eq!(front.met(), ["fatal 28000", "fatal 28000", "pass"]);
    assert!(
        stderr(&o).contains("authorization_rejected"),
        "{}",
        stderr(&o)
    );

    let front = Front::start(
        pg.port,
        n_times(
            Act::Fatal(
                "28000",
                "no pg_hba.conf entry for host \"10.0.0.1\", user \"app\", database \"app\", no encryption",
            ),
            5,
        ),
    );
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_via(
        front.port,
        &user,
        "pw-a",
        &db,
        out.path(),
        &["--sslmode", "disable"],
    );
    assert_exit(&o, 78);
    assert_eq!(front.met(), ["fatal 28000"], "failed on the first answer");
    assert!(stderr(&o).contains("tls_required"), "{}", stderr(&o));
    assert!(!out.path().join("pgpass").exists());

    // "PAM authentication failed" is how RDS refuses a user granted rds_iam: a password
    // cannot work, so no retry.
    let front = Front::start(
        pg.port,
        n_times(
            Act::Fatal("28000", "PAM authentication failed for user \"app\""),
            5,
        ),
    );
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_via(front.port, &user, "pw-a", &db, out.path(), &[]);
    assert_exit(&o, 77);
    assert_eq!(front.met(), ["fatal 28000"], "failed on the first answer");
    assert!(stderr(&o).contains("token_rejected"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--iam-auth"), "{}", stderr(&o));
    figure("fault_sqlstate_28000", 2 + 1 + 1);
}

/// 28P01 once (a rotation race): the secret is read again and the next login works. 28P01
/// every time: exactly --password-retries logins, then 77.
#[test]
fn password_rejected_is_re_resolved_then_fails_after_the_retries() {
    let pg = shared_pg();
    let (user, db) = pg.role_with_db("f", "pw-p");
    let rejected = Act::Fatal("28P01", "password authentication failed for user");
    let front = Front::start(pg.port, vec![rejected.clone()]);
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_via(front.port, &user, "pw-p", &db, out.path(), &[]);
    assert_exit(&o, 0);
    assert_eq!(front.met(), ["fatal 28P01", "pass"]);

    let front = Front::start(pg.port, n_times(rejected, 10));
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_via(
        front.port,
        &user,
        "pw-p",
        &db,
        out.path(),
        &["--password-retries", "3"],
    );
    assert_exit(&o, 77);
    // The first login and three retries, each after reading the secret again.
    assert_eq!(front.connections(), 4, "{:?}", front.met());
    assert!(stderr(&o).contains("rejected 4 times"), "{}", stderr(&o));
    figure("fault_sqlstate_28P01", 1 + 3);
}

/// Connections closed before any answer, and a TLS handshake cut off mid-way, are
/// transient; the sidecar does not fall back to plain text under `require`.
#[test]
fn dropped_connections_and_cut_tls_handshakes_are_retried() {
    let pg = shared_pg();
    let (user, db) = pg.role_with_db("f", "pw-d");
    let front = Front::start(pg.port, n_times(Act::Drop, 3));
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_via(front.port, &user, "pw-d", &db, out.path(), &[]);
    assert_exit(&o, 0);
    assert_eq!(front.met(), ["drop", "drop", "drop", "pass"]);

    let pki = Pki::new();
    let (tls_pg, ca) = tls_cluster(&pki);
    let (user, db) = tls_pg.role_with_db("f", "pw-c");
    let front = Front::start(tls_pg.port, n_times(Act::CutTls, 2));
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_via(
        front.port,
        &user,
        "pw-c",
        &db,
        out.path(),
        &[
            "--sslmode",
            "verify-ca",
            "--sslrootcert",
            &ca.to_string_lossy(),
        ],
    );
    assert_exit(&o, 0);
    assert_eq!(front.met(), ["cut-tls", "cut-tls", "pass"]);
    let q = psql_service(
        out.path(),
        "app",
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
    );
    assert_eq!(stdout(&q).trim(), "t", "{}", stderr(&q));
    figure("fault_drop", 3);
    figure("fault_cut_tls", 2);
}

fn tls_cluster(pki: &Pki) -> (Pg, std::path::PathBuf) {
    let ca = pki.ca("ca");
    let (cert, key) = pki.server("server", "ca", "IP:127.0.0.1");
    let pg = Pg::start(PgOptions {
        tls: Some((cert, key)),
        ..PgOptions::default()
    });
    (pg, ca)
}

/// A resume that holds the connect for 3 s is one attempt, not several piled up; a hold
/// longer than --attempt-timeout is cut and retried.
#[test]
fn a_held_connect_is_one_attempt_and_a_hung_one_is_cut_and_retried() {
    let pg = shared_pg();
    let (user, db) = pg.role_with_db("f", "pw-h");
    let front = Front::start(pg.port, vec![Act::Hold(Duration::from_secs(3))]);
    let out = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let o = once_via(front.port, &user, "pw-h", &db, out.path(), &[]);
    assert_exit(&o, 0);
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert_eq!(front.met(), ["hold"], "ready on its first attempt");

    let front = Front::start(pg.port, vec![Act::Hold(Duration::from_secs(30))]);
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_via(
        front.port,
        &user,
        "pw-h",
        &db,
        out.path(),
        &["--attempt-timeout", "1s"],
    );
    assert_exit(&o, 0);
    assert_eq!(front.met(), ["hold", "pass"]);
    assert!(stderr(&o).contains("timeout"), "{}", stderr(&o));
    figure("fault_hold", 2);
}

/// The README's fail-fast row: 3D000 on the maintenance database is a configuration error.
#[test]
fn missing_maintenance_database_fails_at_once() {
    let pg = shared_pg();
    let user = unique("f");
    pg.create_role(&user, "pw-m", true);
    let front = Front::start(
        pg.port,
        vec![
            Act::Pass,
            Act::Fatal("3D000", "database \"postgres\" does not exist"),
        ],
    );
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_via(
        front.port,
        &user,
        "pw-m",
        &format!("{user}_new"),
        out.path(),
        &[],
    );
    assert_exit(&o, 78);
    assert_eq!(front.met(), ["pass", "fatal 3D000"]);
    figure("fault_sqlstate_3D000", 1);
}

/// Restarts `pg` after `after` on a thread of its own.
fn restart_later(pg: &Arc<Pg>, after: Duration) -> std::thread::JoinHandle<()> {
    let pg = pg.clone();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        pg.start_server();
    })
}

/// PostgreSQL crashes (SIGKILL to every process) while the sidecar's login is in flight,
/// and again between the existence check and CREATE DATABASE; it comes back a second
/// later. The sidecar ends ready without help, with exactly one database.
#[test]
fn postgres_killed_during_the_wait_and_during_provisioning() {
    let pg = Arc::new(Pg::start(PgOptions::default()));
    let user = unique("k");
    pg.create_role(&user, "pw-k", true);
    let db = format!("{user}_db");

    // During the wait: the first startup message reaching the server crashes it.
    let front = Front::start(pg.port, vec![]);
    let (p, restarted) = (pg.clone(), Arc::new(std::sync::Mutex::new(None)));
    let r = restarted.clone();
    front.on_client_bytes(user.as_bytes(), move || {
        p.kill9();
        *r.lock().expect("lock") = Some(restart_later(&p, Duration::from_secs(1)));
    });
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_via(front.port, &user, "pw-k", &db, out.path(), &[]);
    if let Some(h) = restarted.lock().expect("lock").take() {
        h.join().expect("restart");
    }
    assert_exit(&o, 0);
    assert!(front.connections() >= 2, "{:?}", front.met());
    assert!(pg.database_exists(&db));

    // During provisioning: after the existence check (a query on pg_database, sent once
    // the app database answered 3D000) said "absent", the CREATE DATABASE statement
    // crashes the server before it runs.
    let db2 = format!("{user}_db2");
    let front = Front::start(pg.port, vec![]);
    let (p, restarted) = (pg.clone(), Arc::new(std::sync::Mutex::new(None)));
    let r = restarted.clone();
    front.on_client_bytes(b"CREATE DATABASE", move || {
        p.kill9();
        *r.lock().expect("lock") = Some(restart_later(&p, Duration::from_secs(1)));
    });
    let out = tempfile::tempdir().expect("tempdir");
    let o = once_via(front.port, &user, "pw-k", &db2, out.path(), &[]);
    assert!(
        restarted
            .lock()
            .expect("lock")
            .take()
            .map(|h| h.join())
            .is_some(),
        "the hook fired: the crash happened during provisioning"
    );
    assert_exit(&o, 0);
    assert!(pg.database_exists(&db2));
    let n = pg.sql(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{db2}'"),
    );
    assert_eq!(n, "1");
    assert_exit(&psql_service(out.path(), "app", "select 1"), 0);
    figure("fault_pg_kill_wait", 1);
    figure("fault_pg_kill_provisioning", 1);
}

/// `run` holds no connection while ready, so a crash of the server changes nothing it
/// publishes: health stays green throughout, and after the restart a rotation is
/// validated and published as usual.
#[test]
fn postgres_killed_while_run_is_ready() {
    let pg = Pg::start(PgOptions::default());
    let user = unique("r");
    pg.create_role(&user, "pw-r1", true);
    let db = format!("{user}_db");
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, secret) = (dir.path().join("out"), dir.path().join("secret.json"));
    std::fs::write(
        &secret,
        secret_json("127.0.0.1", pg.port, &user, "pw-r1", &db),
    )
    .expect("secret");
    let child = spawn_run_with_file(&secret, &out, "1s");
    wait_for("ready", 60, || health(&out).status.success());
    let before = std::fs::read(out.join("pgpass")).expect("pgpass");

    pg.kill9();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        assert_exit(&health(&out), 0);
    }
    assert_eq!(std::fs::read(out.join("pgpass")).expect("pgpass"), before);
    pg.start_server();

    pg.sql(
        "postgres",
        &format!("ALTER ROLE \"{user}\" PASSWORD 'pw-r2'"),
    );
    std::fs::write(
        &secret,
        secret_json("127.0.0.1", pg.port, &user, "pw-r2", &db),
    )
    .expect("rotate");
    wait_for("the rotation published", 60, || {
        status(&out)["generation"].as_u64() == Some(2)
    });
    assert_exit(&psql_service(&out, "app", "select 1"), 0);
    assert_exit(&health(&out), 0);
    assert_eq!(terminate(child).0, Some(0));
    figure("fault_pg_kill_ready", 1);
}

/// Throttling and 5xx from Secrets Manager are retried (the SDK's own retries, then the
/// wait loop's) until the secret is read: every fault answered, then one good read.
#[tokio::test]
async fn secrets_manager_throttling_and_5xx_are_retried() {
    use crate::common::front::{HttpAct, HttpFront};
    let pg = shared_pg();
    let (user, db) = pg.role_with_db("f", "pw-s");
    let moto = Moto::start();
    let name = unique("throttled/db");
    moto.client()
        .await
        .create_secret()
        .name(&name)
        .secret_string(secret_json("127.0.0.1", pg.port, &user, "pw-s", &db))
        .send()
        .await
        .expect("create");
    let front = HttpFront::start(
        moto.port,
        vec![
            HttpAct::Status(400, "ThrottlingException"),
            HttpAct::Status(500, "InternalServiceError"),
            HttpAct::Status(503, "ServiceUnavailable"),
            HttpAct::Status(400, "ThrottlingException"),
        ],
    );
    let out = tempfile::tempdir().expect("tempdir");
    let o = sidecar()
        .args(["once", "--secret-id", &name, "--wait-timeout", "60s"])
        .arg("--out-dir")
        .arg(out.path())
        .envs(moto.env())
        .env("AWS_ENDPOINT_URL", &front.endpoint)
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    assert_eq!(
        front.met(),
        [
            "GetSecretValue 400 ThrottlingException",
            "GetSecretValue 500 InternalServiceError",
            "GetSecretValue 503 ServiceUnavailable",
            "GetSecretValue 400 ThrottlingException",
            "GetSecretValue pass",
        ]
    );
    assert_exit(&psql_service(out.path(), "app", "select 1"), 0);
    figure("fault_secrets_manager_errors", 4);
}

/// A secret whose first version id is `version` (moto takes the request token as the id).
async fn create_versioned(moto: &Moto, name: &str, secret: &str, version: &str) {
    moto.client()
        .await
        .create_secret()
        .name(name)
        .secret_string(secret)
        .client_request_token(version)
        .send()
        .await
        .expect("create");
}

/// moto stops while `run` is ready: the next refresh check fails, `run` turns degraded
/// (still healthy), the files stay byte for byte; moto comes back with the same secret
/// version and the next check finds it unchanged: ready again, nothing rewritten.
#[tokio::test]
async fn secrets_manager_down_during_a_refresh_degrades_then_recovers() {
    let pg = shared_pg();
    let (user, db) = pg.role_with_db("f", "pw-down");
    let name = unique("outage/db");
    let secret = secret_json("127.0.0.1", pg.port, &user, "pw-down", &db);
    let version = "11111111-2222-3333-4444-555555555555";
    let moto = Moto::start();
    create_versioned(&moto, &name, &secret, version).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let child = sidecar()
        .args(["run", "--refresh-interval", "500ms", "--secret-id", &name])
        .arg("--out-dir")
        .arg(&out)
        .envs(moto.env())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for("ready", 60, || health(&out).status.success());
    let files = ["pgpass", "pg_service.conf", "application.profile", "ready"];
    let snapshot = || {
        files
            .iter()
            .map(|f| std::fs::read(out.join(f)).expect("file"))
            .collect::<Vec<_>>()
    };
    let before = snapshot();
    assert_eq!(status(&out)["secret_version"], version);

    let port = moto.port;
    drop(moto);
    wait_for("degraded", 60, || status(&out)["phase"] == "degraded");
    assert_eq!(status(&out)["last_error_class"], "secret_unavailable");
    assert_exit(&health(&out), 0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        snapshot(),
        before,
        "files untouched while Secrets Manager is down"
    );

    let moto = Moto::start_on(port);
    create_versioned(&moto, &name, &secret, version).await;
    wait_for("recovery", 60, || status(&out)["phase"] == "ready");
    assert_eq!(snapshot(), before, "the same version: nothing rewritten");
    assert_eq!(status(&out)["generation"], 1);
    assert_eq!(terminate(child).0, Some(0));
    figure("fault_secrets_manager_down", 1);
}
