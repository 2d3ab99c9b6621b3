//! `--pgbouncer` against a real PgBouncer (Debian's, `PGBOUNCER` to pick another) in
//! front of the real PostgreSQL: the app's files reach the database through PgBouncer
//! with the local login; idle server connections close while clients stay connected;
//! a rotation is validated, published and RELOADed under a query loop with no client
//! error; PgBouncer absent → degraded, and told once it is back; what PgBouncer cannot
//! carry is refused before it sees it; a resume held by the Aurora simulator costs the
//! first query its length and no error.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::front::{Act, Front};
use crate::common::*;

fn pg() -> &'static Pg {
    shared_pg()
}

fn pgbouncer_bin() -> String {
    std::env::var("PGBOUNCER").unwrap_or_else(|_| "/usr/sbin/pgbouncer".into())
}

/// PgBouncer refuses to run as root: as root (CI), it and the files it reads belong to
/// the `postgres` user (`--owner`).
pub(crate) fn owner_flags() -> Vec<String> {
    if !is_root() {
        return vec![];
    }
    let id = |flag: &str| {
        let out = run_ok(Command::new("id").args([flag, "postgres"]), "id postgres");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    vec!["--owner".into(), format!("{}:{}", id("-u"), id("-g"))]
}

/// A temp dir PgBouncer (the `postgres` user) can walk into.
pub(crate) fn shared_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// PgBouncer as the user it runs as here. setpriv execs (runuser would fork): the child
/// is PgBouncer itself, to kill.
fn pgbouncer_command() -> Command {
    if !is_root() {
        return Command::new(pgbouncer_bin());
    }
    let mut c = Command::new("setpriv");
    c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(pgbouncer_bin());
    c
}

/// A PgBouncer reading the rendered `pgbouncer.ini`, stopped when dropped.
pub(crate) struct Bouncer {
    child: Child,
    log: PathBuf,
}

impl Bouncer {
    /// PgBouncer on the rendered `pgbouncer.ini`.
    pub(crate) fn start(out: &Path) -> Bouncer {
        Bouncer::start_on(
            &out.join("pgbouncer.ini"),
            &out.with_extension("pgbouncer.log"),
        )
    }

    fn start_on(ini: &Path, log: &Path) -> Bouncer {
        let log = log.to_path_buf();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let child = pgbouncer_command()
            .arg(ini)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("pgbouncer starts");
        // A test binary killed before its drops run leaves no PgBouncer behind.
        watchdog(&format!("kill -9 {} 2>/dev/null", child.id()));
        let b = Bouncer { child, log };
        wait_for("PgBouncer listening", 10, || b.log().contains("process up"));
        b
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn reloads(&self) -> usize {
        self.log().matches("RELOAD command issued").count()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sidecar_with(command: &str, out: &Path, secret: &Path, extra: &[&str]) -> Command {
    let mut c = sidecar();
    c.arg(command)
        .args(["--secret-file"])
        .arg(secret)
        .arg("--out-dir")
        .arg(out)
        .args(["--pgbouncer", "--pgbouncer-port"])
        .arg(free_port().to_string())
        .args(owner_flags())
        .args(extra);
    c
}

/// One test's own role and database, and a directory PgBouncer can read holding the
/// secret file naming them (upstream at 127.0.0.1:`port`) and the out-dir to be.
struct Case {
    user: String,
    db: String,
    dir: tempfile::TempDir,
    secret: PathBuf,
    out: PathBuf,
}

impl Case {
    fn new(prefix: &str, password: &str, port: u16) -> Case {
        let (user, db) = pg().role_with_db(prefix, password);
        let dir = shared_dir();
        let secret = dir.path().join("secret.json");
        write_secret(&secret, &user, password, &db, port);
        let out = dir.path().join("out");
        Case {
            user,
            db,
            dir,
            secret,
            out,
        }
    }

    /// `once --pgbouncer` with `extra`.
    fn once(&self, extra: &[&str]) -> std::process::Output {
        sidecar_with("once", &self.out, &self.secret, extra)
            .output()
            .expect("once")
    }

    /// `run --pgbouncer`, checking on SIGHUP only, once it is ready; its log in `log()`.
    fn run(&self) -> Child {
        let log = std::fs::File::create(self.log()).expect("log");
        let run = sidecar_with("run", &self.out, &self.secret, &["--refresh-interval", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run");
        wait_for("ready", 30, || phase_is(&self.out, "ready"));
        run
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("run.log")
    }

    /// A rotation as it reaches the sidecar: the database first, then the secret, then
    /// SIGHUP to `run`.
    fn rotate(&self, run: &Child, password: &str) {
        let user = &self.user;
        pg().sql(
            "postgres",
            &format!("ALTER ROLE \"{user}\" PASSWORD '{password}'"),
        );
        write_secret(&self.secret, user, password, &self.db, pg().port);
        let _ = Command::new("kill")
            .args(["-HUP", &run.id().to_string()])
            .status();
    }
}

fn write_secret(path: &Path, user: &str, password: &str, db: &str, port: u16) {
    std::fs::write(path, secret_json("127.0.0.1", port, user, password, db)).expect("secret");
}

/// Server connections of `user` in `pg_stat_activity`.
fn server_connections(user: &str) -> u32 {
    pg().sql(
        "postgres",
        &format!("select count(*) from pg_stat_activity where usename = '{user}'"),
    )
    .parse()
    .expect("a count")
}

#[test]
fn once_points_the_app_at_pgbouncer_with_a_local_login_and_keeps_the_password_upstream() {
    let c = Case::new("pgb", "up-pass-1", pg().port);
    let (user, db, out) = (&c.user, &c.db, c.out.as_path());
    assert_exit(&c.once(&["--url-scheme", "postgres"]), 0);
    for f in [
        "pgbouncer.ini",
        "pgbouncer.users",
        "pgpass",
        "password",
        "application.profile",
    ] {
        assert_eq!(mode(&out.join(f)), 0o600, "{f}");
    }
    let read = |f: &str| std::fs::read_to_string(out.join(f)).expect(f);
    // The upstream password is in PgBouncer's auth file and nowhere else.
    assert!(read("pgbouncer.users").contains("\"up-pass-1\""));
    for f in [
        "pgbouncer.ini",
        "pgpass",
        "password",
        "application.profile",
        "pg_service.conf",
    ] {
        assert!(
            !read(f).contains("up-pass-1"),
            "{f} holds the upstream password"
        );
    }
    assert!(read("pg_service.conf").contains("user=app_local\nsslmode=disable\n"));
    assert_eq!(
        read("password").len(),
        48,
        "a local password of 24 random bytes"
    );

    let bouncer = Bouncer::start(out);
    let via = psql_service(out, "app", "select current_user, current_database()");
    assert!(via.status.success(), "{}", stderr(&via));
    assert_eq!(stdout(&via).trim(), format!("{user}|{db}"));
    let profile = with_profile(out, "psql -X -w -tAc 'select 2' \"$DATABASE_URL\"");
    assert!(profile.status.success(), "{}", stderr(&profile));
    drop(bouncer);
}

/// The upstream leg verified as the sidecar verifies it: PgBouncer logs in over TLS
/// (verify-full against the CA the sidecar copied into the out-dir) to a server that
/// takes TLS only.
#[test]
fn pgbouncer_logs_in_upstream_over_the_tls_the_sidecar_chose() {
    let env = crate::tls::tls();
    let dir = shared_dir();
    let secret = dir.path().join("secret.json");
    std::fs::write(
        &secret,
        secret_json("127.0.0.1", env.pg.port, "tls_app", "tls-pass", "tls_db"),
    )
    .expect("secret");
    let out = dir.path().join("out");
    let ca = env.ca.to_str().expect("utf-8");
    let o = sidecar_with(
        "once",
        &out,
        &secret,
        &["--sslmode", "verify-full", "--sslrootcert", ca],
    )
    .output()
    .expect("once");
    assert_exit(&o, 0);
    let ini = std::fs::read_to_string(out.join("pgbouncer.ini")).expect("ini");
    assert!(ini.contains("server_tls_sslmode = verify-full\n"), "{ini}");
    assert!(
        ini.contains(&format!(
            "server_tls_ca_file = {}\n",
            out.join("rds-ca.pem").display()
        )),
        "{ini}"
    );
    let bouncer = Bouncer::start(&out);
    let via = psql_service(
        &out,
        "app",
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
    );
    assert!(
        via.status.success(),
        "{}\nPgBouncer: {}",
        stderr(&via),
        bouncer.log()
    );
    assert_eq!(
        stdout(&via).trim(),
        "t",
        "PgBouncer's server connection uses TLS"
    );
    drop(bouncer);
}

/// Ten client connections held open and idle: PgBouncer closes their server connections
/// after `server_idle_timeout`, so the database sees none; the clients' next queries work.
#[test]
fn idle_clients_keep_their_connections_while_the_database_sees_none() {
    let c = Case::new("pgbidle", "idle-pass", pg().port);
    let (user, out) = (&c.user, c.out.as_path());
    assert_exit(&c.once(&["--pgbouncer-idle-timeout", "2s"]), 0);
    let bouncer = Bouncer::start(out);
    let mut clients: Vec<(Child, ChildStdin)> = (0..10).map(|_| idle_psql(out)).collect();
    for (_, stdin) in clients.iter_mut() {
        writeln!(stdin, "select pg_sleep(0.2);").expect("query");
    }
    wait_for("server connections opened", 10, || {
        server_connections(user) > 0
    });
    let idle_since = Instant::now();
    wait_for("no server connection (idle timeout 2 s + 2 s)", 4, || {
        server_connections(user) == 0
    });
    figure(
        "pgbouncer_idle_to_zero_server_connections_ms",
        idle_since.elapsed().as_millis() as u64,
    );
    for (child, _) in clients.iter_mut() {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "a client was disconnected"
        );
    }
    for (mut child, mut stdin) in clients {
        writeln!(stdin, "select 1;").expect("query after idle");
        drop(stdin);
        assert!(
            child.wait().expect("psql").success(),
            "a query after idle failed"
        );
    }
    drop(bouncer);
}

/// A psql session through the rendered files, held open on its stdin.
fn idle_psql(out: &Path) -> (Child, ChildStdin) {
    let mut child = Command::new("psql")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGSERVICEFILE", out.join("pg_service.conf"))
        .env("PGPASSFILE", out.join("pgpass"))
        .args(["service=app", "-X", "-w", "-q", "-v", "ON_ERROR_STOP=1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("psql");
    let stdin = child.stdin.take().expect("stdin");
    (child, stdin)
}

/// A query loop through PgBouncer while the password is rotated: no client error, one
/// RELOAD, new server logins with the new password, the old one refused upstream.
#[test]
fn a_rotation_under_a_query_loop_is_reloaded_without_a_client_error() {
    let c = Case::new("pgbrot", "old-pass", pg().port);
    let (user, db, out) = (&c.user, &c.db, c.out.as_path());
    let run = c.run();
    let bouncer = Bouncer::start(out);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looper = {
        let (out, stop) = (c.out.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let o = psql_service(&out, "app", "select 1");
                if o.status.success() {
                    ok += 1;
                } else {
                    failed.push(stderr(&o));
                }
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    c.rotate(&run, "new-pass");
    wait_for("RELOAD", 20, || bouncer.reloads() == 1);
    // Existing server connections stay logged in; a fresh one must use the new password.
    let killed = pgbouncer_admin(out, &format!("RECONNECT \"{db}\""));
    assert!(killed.status.success(), "{}", stderr(&killed));
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = looper.join().expect("loop");
    assert!(
        failed.is_empty(),
        "client errors during the rotation: {failed:?}"
    );
    assert!(ok > 5, "the loop ran ({ok} queries)");
    let after = psql_service(out, "app", "select 3");
    assert!(after.status.success(), "{}", stderr(&after));
    let old = Command::new("psql")
        .env("PGPASSWORD", "old-pass")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg().port.to_string(),
            "-U",
            user,
            "-X",
            "-w",
            "-c",
            "select 1",
            db,
        ])
        .output()
        .expect("psql");
    assert!(
        !old.status.success(),
        "the old password still works upstream"
    );
    figure("pgbouncer_rotation_loop_queries", ok);
    assert!(phase_is(out, "ready"));
    let (code, _) = terminate(run);
    assert_eq!(code, Some(0));
    let log = std::fs::read_to_string(c.log()).expect("log");
    for secret in ["old-pass", "new-pass", &admin_password(out)] {
        assert!(
            !log.contains(secret) && !bouncer.log().contains(secret),
            "a password in a log"
        );
    }
    drop(bouncer);
}

/// `sql` on PgBouncer's admin console, as the sidecar's admin user.
pub(crate) fn pgbouncer_admin(out: &Path, sql: &str) -> std::process::Output {
    Command::new("psql")
        .env("PGPASSWORD", admin_password(out))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &bouncer_port(out),
            "-U",
            "aurora_sidecar",
        ])
        .args(["-X", "-tAc", sql, "pgbouncer"])
        .output()
        .expect("psql on the admin console")
}

/// A field of the rendered files: the admin console's password (from the auth file).
fn admin_password(out: &Path) -> String {
    let users = std::fs::read_to_string(out.join("pgbouncer.users")).expect("users");
    let line = users
        .lines()
        .find(|l| l.starts_with("\"aurora_sidecar\""))
        .expect("the admin line");
    line.split('"').nth(3).expect("its password").to_string()
}

fn bouncer_port(out: &Path) -> String {
    let ini = std::fs::read_to_string(out.join("pgbouncer.ini")).expect("ini");
    ini.lines()
        .find_map(|l| l.strip_prefix("listen_port = "))
        .expect("listen_port")
        .to_string()
}

/// PgBouncer absent when a rotation is published: degraded, saying why, files published;
/// PgBouncer started again reads the current files, and the next check tells it.
#[test]
fn pgbouncer_absent_degrades_then_a_restarted_one_serves_the_current_login() {
    let c = Case::new("pgbgone", "first-pass", pg().port);
    let out = c.out.as_path();
    let run = c.run();
    let bouncer = Bouncer::start(out);
    assert!(psql_service(out, "app", "select 1").status.success());
    bouncer.stop();

    c.rotate(&run, "second-pass");
    wait_for("degraded", 20, || phase_is(out, "degraded"));
    let s = status(out);
    let why = s["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("RELOAD") && why.contains("(re)starts"),
        "{why}"
    );
    assert_eq!(s["last_error_class"], "transient");
    assert_eq!(health(out).status.code(), Some(0), "degraded stays healthy");
    assert!(
        std::fs::read_to_string(out.join("pgbouncer.users"))
            .expect("users")
            .contains("second-pass"),
        "the validated login is published"
    );

    let bouncer = Bouncer::start(out);
    let via = psql_service(out, "app", "select current_user");
    assert!(via.status.success(), "{}", stderr(&via));
    wait_for("ready again once PgBouncer answers", 30, || {
        phase_is(out, "ready")
    });
    assert_eq!(
        status(out)["generation"],
        2,
        "the rotation is recorded once told"
    );
    assert!(bouncer.reloads() >= 1);
    let (code, _) = terminate(run);
    assert_eq!(code, Some(0));
    let log = std::fs::read_to_string(c.log()).expect("log");
    assert!(
        !log.contains("second-pass") && !log.contains("first-pass"),
        "{log}"
    );
    drop(bouncer);
}

/// A PgBouncer whose admin console refuses the sidecar (another admin password in its
/// auth file): the first check's RELOAD fails, `degraded` says why, nothing secret is
/// logged; the app's logins through PgBouncer go on.
#[test]
fn an_admin_console_that_refuses_the_sidecar_degrades_and_says_why() {
    let c = Case::new("pgbrefuse", "refuse-pass", pg().port);
    let (dir, out) = (c.dir.path(), c.out.as_path());
    let run = c.run();
    // The same PgBouncer, but its admin console knows another password.
    let users = std::fs::read_to_string(out.join("pgbouncer.users")).expect("users");
    let admin = admin_password(out);
    let other_users = dir.join("other.users");
    std::fs::write(&other_users, users.replace(&admin, "not-the-sidecars")).expect("users");
    let ini = std::fs::read_to_string(out.join("pgbouncer.ini")).expect("ini");
    let other_ini = dir.join("other.ini");
    let auth_file = format!("auth_file = {}", out.join("pgbouncer.users").display());
    let other_auth = format!("auth_file = {}", other_users.display());
    std::fs::write(&other_ini, ini.replace(&auth_file, &other_auth)).expect("ini");
    if is_root() {
        for f in [&other_users, &other_ini] {
            run_ok(Command::new("chown").arg("postgres").arg(f), "chown");
        }
    }
    let bouncer = Bouncer::start_on(&other_ini, &dir.join("other.log"));
    let _ = Command::new("kill")
        .args(["-HUP", &run.id().to_string()])
        .status();
    wait_for("degraded", 20, || phase_is(out, "degraded"));
    let why = status(out)["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains("RELOAD") && why.contains("authentication failed"),
        "{why}"
    );
    let via = psql_service(out, "app", "select 1");
    assert!(via.status.success(), "{}", stderr(&via));
    assert_eq!(terminate(run).0, Some(0));
    let log = std::fs::read_to_string(c.log()).expect("log");
    assert!(
        !log.contains(&admin) && !log.contains("refuse-pass"),
        "{log}"
    );
    drop(bouncer);
}

/// A password longer than the configured PgBouncer carries: 78 before anything is
/// written for PgBouncer, the message naming the limit and not the password.
#[test]
fn a_password_pgbouncer_cannot_carry_is_refused_before_it_sees_it() {
    let long = "L".repeat(1100);
    let c = Case::new("pgblong", &long, pg().port);
    let out = c.out.as_path();
    let o = c.once(&[]);
    assert_exit(&o, 78);
    let err = stderr(&o);
    assert!(
        err.contains("1100 bytes") && err.contains("--pgbouncer-max-password"),
        "{err}"
    );
    assert!(!err.contains(&long[..32]), "the password is in the message");
    assert!(!out.join("pgbouncer.users").exists() && !out.join("ready").exists());
    // With a PgBouncer that carries it, the same login is served.
    assert_exit(&c.once(&["--pgbouncer-max-password", "4096"]), 0);
}

/// The default `--pgbouncer-max-password` (1,024) is what the PgBouncer under test carries:
/// a 1,024-byte password logs in through it, a 1,025-byte one (let through with a higher
/// limit) does not (Debian's 1.18 crashes; 1.24.1 never finishes the server login).
#[test]
fn the_default_password_limit_is_what_pgbouncer_carries() {
    let through = |len: usize, extra: &[&str]| {
        let password = "p".repeat(len);
        let c = Case::new("pgblen", &password, pg().port);
        let out = c.out.as_path();
        assert_exit(&c.once(extra), 0);
        let bouncer = Bouncer::start(out);
        let o = Command::new("psql")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PGSERVICEFILE", out.join("pg_service.conf"))
            .env("PGPASSFILE", out.join("pgpass"))
            .env("PGCONNECT_TIMEOUT", "5")
            .args(["service=app", "-X", "-w", "-tAc", "select 1"])
            .output()
            .expect("psql");
        drop(bouncer);
        o.status.success()
    };
    assert!(through(1024, &[]), "1,024 bytes did not go through");
    assert!(
        !through(1025, &["--pgbouncer-max-password", "4096"]),
        "1,025 bytes went through: this PgBouncer carries more than the default says"
    );
}

/// `--pgbouncer-max-prepared-statements`: PgBouncer 1.21+ tracks named prepared
/// statements in transaction mode, so `pgbench -M prepared` with 4 clients works through
/// it; an older PgBouncer refuses to start with the setting, which is why it is left out
/// unless asked for.
#[test]
fn prepared_statements_go_through_a_pgbouncer_that_tracks_them() {
    let version = run_ok(
        Command::new(pgbouncer_bin()).arg("--version"),
        "pgbouncer --version",
    );
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    let minor: u32 = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("a version in {version:?}"));
    let c = Case::new("pgbprep", "prep-pass", pg().port);
    let (user, db, out) = (c.user.as_str(), &c.db, c.out.as_path());
    assert_exit(&c.once(&["--pgbouncer-max-prepared-statements", "100"]), 0);
    if minor < 21 {
        let o = pgbouncer_command()
            .arg(out.join("pgbouncer.ini"))
            .output()
            .expect("pgbouncer");
        assert!(
            !o.status.success(),
            "{version}: started with max_prepared_statements"
        );
        assert!(
            stderr(&o).contains("max_prepared_statements"),
            "{}",
            stderr(&o)
        );
        return;
    }
    let pgbench = |target: &[&str], password: &str, args: &[&str]| {
        let mut pgbench = Command::new("pgbench");
        pgbench
            .env("PGPASSWORD", password)
            .args(args)
            .args(target)
            .arg(db);
        run_ok(&mut pgbench, "pgbench")
    };
    let port = pg().port.to_string();
    pgbench(
        &["-h", "127.0.0.1", "-p", &port, "-U", user],
        "prep-pass",
        &["-q", "-i", "-s", "1"],
    );
    let bouncer = Bouncer::start(out);
    let local = std::fs::read_to_string(out.join("password")).expect("password");
    let through = [
        "-h",
        "127.0.0.1",
        "-p",
        &bouncer_port(out),
        "-U",
        "app_local",
    ];
    let o = pgbench(
        &through,
        &local,
        &[
            "-n", "-M", "prepared", "-S", "-c", "4", "-j", "2", "-t", "200",
        ],
    );
    assert!(
        stdout(&o).contains("number of failed transactions: 0"),
        "{}",
        stdout(&o)
    );
    drop(bouncer);
}

/// Aurora resuming from 0 ACU, simulated: PgBouncer's next server login after the idle
/// close is held 3 s; the client's first query waits that long and succeeds.
#[test]
fn the_first_query_after_a_pause_waits_for_the_resume_and_succeeds() {
    // The sidecar's login and PgBouncer's first server login pass; the next one is held.
    let front = Front::start(
        pg().port,
        vec![Act::Pass, Act::Pass, Act::Hold(Duration::from_secs(3))],
    );
    let c = Case::new("pgbres", "resume-pass", front.port);
    let (user, out) = (&c.user, c.out.as_path());
    assert_exit(&c.once(&["--pgbouncer-idle-timeout", "1s"]), 0);
    let bouncer = Bouncer::start(out);
    let (mut child, mut stdin) = idle_psql(out);
    writeln!(stdin, "select 1;").expect("first query");
    wait_for("a server connection", 10, || server_connections(user) > 0);
    wait_for("paused: no server connection", 10, || {
        server_connections(user) == 0
    });
    let resumed = Instant::now();
    writeln!(stdin, "select 2;").expect("query after the pause");
    drop(stdin);
    assert!(
        child.wait().expect("psql").success(),
        "the first query after the pause failed"
    );
    let took = resumed.elapsed();
    assert!(
        took >= Duration::from_millis(2900),
        "the resume was not held: {took:?}"
    );
    figure(
        "pgbouncer_first_query_after_3s_resume_ms",
        took.as_millis() as u64,
    );
    assert_eq!(front.met(), ["pass", "pass", "hold"]);
    drop(bouncer);
}
