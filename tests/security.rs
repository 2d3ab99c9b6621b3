//! Secure by default, tried as an attacker would: a server (or a man in the middle) that
//! strips TLS and asks for the password in clear text or as MD5, a co-tenant who plants
//! a symlink to `/dev/zero`, a FIFO, a huge file or a directory in the out-dir, server
//! text that tries to forge a log line, another process of the same uid reading the
//! sidecar's environment, and `exec`'s child inheriting the secret.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::front::{Act, Front};
use crate::common::*;

const CANARY: &str = "canary-pw-5f3c:@/%";

fn once_via(front: &Front, out: &Path, extra: &[&str]) -> Output {
    sidecar()
        .args(["once", "--wait-timeout", "20s", "--out-dir"])
        .arg(out)
        .args(extra)
        .env("AURORA_SIDECAR_LOG_FORMAT", "text")
        .env(
            "DB_SECRET",
            secret_json("127.0.0.1", front.port, "victim", CANARY, "victim_db"),
        )
        .output()
        .expect("runs")
}

/// The password never leaves for a server that declines TLS and asks for it in clear
/// text or as MD5, whether TLS was preferred or disabled; with --allow-insecure-auth it
/// does (so the guard, not luck, is what kept it).
#[test]
fn a_downgrading_server_never_gets_a_clear_text_or_md5_password() {
    let pg = shared_pg();
    for (auth, what) in [(3, "clear text"), (5, "MD5")] {
        for mode in ["prefer", "disable"] {
            let front = Front::start(pg.port, vec![Act::AskPassword(auth)]);
            let dir = tempfile::tempdir().expect("tempdir");
            let started = Instant::now();
            let o = once_via(&front, &dir.path().join("out"), &["--sslmode", mode]);
            assert_exit(&o, 78);
            assert!(started.elapsed() < Duration::from_secs(10), "not retried");
            wait_for("the front's record", 5, || !front.answers().is_empty());
            assert_eq!(front.answers(), ["nothing"], "{what} under {mode}");
            let err = stderr(&o);
            assert!(
                err.contains(&format!("asked for the password in {what}"))
                    && err.contains("it was not sent"),
                "{err}"
            );
            assert!(!err.contains(CANARY) && !stdout(&o).contains(CANARY));
            assert!(!dir.path().join("out/pgpass").exists());
            assert_eq!(
                status(&dir.path().join("out"))["last_error_class"],
                "tls_required"
            );
        }
        let front = Front::start(pg.port, vec![Act::AskPassword(auth)]);
        let dir = tempfile::tempdir().expect("tempdir");
        once_via(&front, &dir.path().join("out"), &["--allow-insecure-auth"]);
        wait_for("the front's record", 5, || !front.answers().is_empty());
        assert!(
            front.answers()[0].starts_with("got p"),
            "opted in, the {what} password is sent: {:?}",
            front.answers()
        );
    }
    figure("security_downgrade_refused", 4);
}

/// A server that answers the TLS request with a byte that is neither `S` nor `N` (which
/// tokio-postgres takes as "no TLS") and then asks for the password in clear text gets
/// nothing, from `once` under the default `prefer` and from `doctor`, even with
/// `--allow-insecure-auth` (the guard cannot follow such a stream at all).
#[test]
fn a_server_answering_the_tls_request_with_another_byte_never_gets_the_password() {
    let pg = shared_pg();
    for byte in [b'E', b'X'] {
        let front = Front::start(pg.port, vec![Act::AskPasswordAfter(byte, 3)]);
        let dir = tempfile::tempdir().expect("tempdir");
        let o = once_via(&front, &dir.path().join("out"), &[]);
        assert_exit(&o, 78);
        wait_for("the front's record", 5, || !front.answers().is_empty());
        assert_eq!(front.answers(), ["nothing"], "answer {byte:#04x}");
        assert!(stderr(&o).contains("neither S nor N"), "{}", stderr(&o));
        assert!(!dir.path().join("out/pgpass").exists());

        let front = Front::start(pg.port, vec![Act::AskPasswordAfter(byte, 3); 4]);
        let o = sidecar()
            .args(["doctor", "--format", "json", "--allow-insecure-auth"])
            .env(
                "DB_SECRET",
                secret_json("127.0.0.1", front.port, "victim", CANARY, "victim_db"),
            )
            .output()
            .expect("doctor runs");
        assert_exit(&o, 78);
        assert!(stdout(&o).contains("neither S nor N"), "{}", stdout(&o));
        wait_for("the front's record", 5, || !front.answers().is_empty());
        assert!(
            front.answers().iter().all(|a| a == "nothing"),
            "doctor: {:?}",
            front.answers()
        );
    }
}

/// A notice claiming 2 GiB is refused at its header: the sidecar closes the connection
/// after a few kernel buffers' worth instead of buffering what the server streams.
#[test]
fn a_notice_claiming_gigabytes_is_refused_at_its_header() {
    let pg = shared_pg();
    let front = Front::start(pg.port, vec![Act::HugeNotice(0x7fff_fff0)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let o = once_via(&front, &dir.path().join("out"), &[]);
    assert_exit(&o, 69);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(stderr(&o).contains("over the 16384"), "{}", stderr(&o));
    wait_for("the front's record", 5, || !front.answers().is_empty());
    let took: usize = front.answers()[0]
        .trim_start_matches("took ")
        .parse()
        .expect("a count");
    // Loopback buffers hold a few MB; a client buffering the message takes gigabytes in
    // the front's 3 s.
    assert!(took < 32 << 20, "the client took {took} bytes");
}

/// A hostile admin endpoint answering the bootstrap's first query with NULL, or with a
/// text where a boolean belongs, makes a clear error with its code, never a panic.
#[test]
fn null_or_mistyped_answers_to_the_bootstrap_are_errors_not_panics() {
    let pg = shared_pg();
    for (act, code) in [
        (Act::Answer(16, None), 77),
        (Act::Answer(25, Some("t")), 69),
    ] {
        let front = Front::start(pg.port, vec![act; 4]);
        let admin = serde_json::json!({
            "username": "fake_admin", "password": "fake-admin-pw",
            "host": "127.0.0.1", "port": front.port,
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let o = sidecar()
            .args([
                "once",
                "--wait-timeout",
                "20s",
                "--admin-secret-env",
                "ADMIN_SECRET",
            ])
            .arg("--out-dir")
            .arg(dir.path())
            .env("ADMIN_SECRET", admin.to_string())
            .env(
                "DB_SECRET",
                secret_json("127.0.0.1", pg.port, "no_such_role", CANARY, "no_such_db"),
            )
            .output()
            .expect("runs");
        assert_exit(&o, code);
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        assert!(!dir.path().join("pgpass").exists());
    }
}

/// A FIFO nobody writes as `--secret-file` or `--admin-secret-file` is refused at once
/// (not a regular file), instead of hanging the start past its deadline and SIGTERM.
#[test]
fn a_fifo_as_the_secret_file_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("secret.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let good = dir.path().join("secret.json");
    fs::write(&good, secret_json("127.0.0.1", 1, "app", CANARY, "db")).expect("secret");
    for flags in [
        vec!["--secret-file".to_string(), fifo.display().to_string()],
        vec![
            "--secret-file".to_string(),
            good.display().to_string(),
            "--admin-secret-file".to_string(),
            fifo.display().to_string(),
        ],
    ] {
        let started = Instant::now();
        let o = sidecar()
            .args(["once", "--wait-timeout", "2s", "--out-dir"])
            .arg(dir.path().join("out"))
            .args(&flags)
            .output()
            .expect("runs");
        assert_exit(&o, 78);
        assert!(started.elapsed() < Duration::from_secs(5), "{flags:?}");
        assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    }
}

/// A resolver that never answers (a DNS server that reads and stays silent, in a mount
/// namespace of the test's own) does not stretch `--wait-timeout` or `--step-timeout`:
/// the blocking lookup is left behind when the deadline ends the process.
#[test]
fn a_silent_resolver_does_not_stretch_the_deadlines() {
    require_root("it bind-mounts resolv.conf in a mount namespace of its own");
    let silent = std::net::UdpSocket::bind("127.0.0.77:53").expect("bind a silent resolver");
    let dir = tempfile::tempdir().expect("tempdir");
    let resolv = dir.path().join("resolv.conf");
    fs::write(
        &resolv,
        "nameserver 127.0.0.77\noptions timeout:5 attempts:3\n",
    )
    .expect("conf");
    for (args, code) in [
        (&["once", "--wait-timeout", "2s"][..], 69),
        (&["doctor", "--step-timeout", "1s"][..], 69),
    ] {
        let started = Instant::now();
        let o = Command::new("unshare")
            .args([
                "-m",
                "sh",
                "-c",
                "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
            ])
            .arg(&resolv)
            .arg(sidecar_bin())
            .args(args)
            .arg("--out-dir")
            .arg(dir.path().join("out"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "DB_SECRET",
                secret_json("db.silent-resolver.test", 5432, "app", CANARY, "db"),
            )
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        let took = started.elapsed();
        assert_exit(&o, code);
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
    drop(silent);
}

/// `health` reads at most a small regular file: a symlink to /dev/zero, a FIFO nobody
/// writes and a 100 MB status.json each answer "not ready" at once.
#[test]
fn health_answers_at_once_for_a_planted_symlink_fifo_or_huge_file() {
    type Plant = fn(&Path);
    let plants: [(&str, Plant); 3] = [
        ("symlink to /dev/zero", |p| {
            symlink("/dev/zero", p).expect("symlink")
        }),
        ("fifo", |p| {
            let ok = Command::new("mkfifo").arg(p).status().expect("mkfifo");
            assert!(ok.success());
        }),
        ("100 MB file", |p| {
            let f = fs::File::create(p).expect("file");
            f.set_len(100_000_000).expect("sparse");
        }),
    ];
    for (what, plant) in plants {
        let dir = tempfile::tempdir().expect("tempdir");
        plant(&dir.path().join("status.json"));
        fs::write(dir.path().join("ready"), "{}").expect("marker");
        let started = Instant::now();
        let o = sidecar()
            .args(["health", "--out-dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .output()
            .expect("health runs");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{what}: {:?}",
            started.elapsed()
        );
        assert_exit(&o, 1);
        assert!(stdout(&o).contains("no readable status.json"), "{what}");
    }
    figure("security_health_plants", 3);
}

/// A directory planted at a temporary name is swept like any leftover, not a reason to
/// fail every start.
#[test]
fn a_directory_planted_at_a_temporary_name_does_not_stop_the_start() {
    let pg = shared_pg();
    let (user, db) = pg.role_with_db("sec", "pw-sec");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    fs::create_dir_all(out.join(".pgpass.Ab3dE9.tmp/inside")).expect("plant");
    let o = sidecar()
        .args(["once", "--out-dir"])
        .arg(&out)
        .env(
            "DB_SECRET",
            secret_json("127.0.0.1", pg.port, &user, "pw-sec", &db),
        )
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    assert!(!out.join(".pgpass.Ab3dE9.tmp").exists());
}

/// A server message with a newline and an escape sequence cannot forge a log line, reach
/// a terminal raw, or do either through `health`.
#[test]
fn server_text_cannot_forge_a_log_line_or_an_escape_sequence() {
    const FORGED: &str =
        "boom\n2026-12-01T00:00:00.000000Z  INFO aurora_sidecar::sidecar: ready\x1b[2J";
    let front = Front::start(shared_pg().port, vec![Act::Fatal("XX000", FORGED)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let o = once_via(&front, &out, &["--sslmode", "disable"]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(!err.contains('\x1b'), "a raw escape byte: {err:?}");
    assert!(
        !err.lines().any(|l| l.starts_with("2026-12-01T00:00:00")),
        "a forged line: {err}"
    );
    assert!(err.contains("boom\\n2026-12-01"), "shown escaped: {err}");
    let h = stdout(&health(&out));
    assert_eq!(h.lines().count(), 1, "{h:?}");
    assert!(!h.contains('\x1b'), "{h:?}");
}

/// The sidecar is not dumpable: another process of the same uid cannot read the secret
/// JSON from /proc/PID/environ (it can read an ordinary process's).
#[test]
fn another_process_of_the_same_uid_cannot_read_the_environment() {
    require_root("it runs the sidecar and the reader as another uid");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    fs::create_dir(&out).expect("out");
    std::os::unix::fs::chown(&out, Some(65534), Some(65534)).expect("chown");
    let as_nobody = |program: &str| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
        c
    };
    // Waits on a closed port: alive long enough to be looked at.
    let mut sidecar = as_nobody(&sidecar_bin())
        .args(["run", "--out-dir"])
        .arg(&out)
        .env_clear()
        .env(
            "DB_SECRET",
            secret_json("127.0.0.1", free_port(), "u", CANARY, "d"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sidecar");
    let mut ordinary = as_nobody("sleep")
        .arg("30")
        .env("DB_SECRET", CANARY)
        .spawn()
        .expect("sleep");
    wait_for("the sidecar's status", 20, || {
        out.join("status.json").exists()
    });
    let read = |pid: u32| {
        as_nobody("cat")
            .arg(format!("/proc/{pid}/environ"))
            .output()
            .expect("cat runs")
    };
    // The control: an ordinary process's environment is readable. setpriv drops to nobody
    // and execs `sleep` in its own time (under load, after the sidecar's status appeared);
    // until then the environ is root's.
    wait_for(
        "the control: an ordinary process's environment readable",
        10,
        || String::from_utf8_lossy(&read(ordinary.id()).stdout).contains(CANARY),
    );
    let ours = read(sidecar.id());
    assert!(!ours.status.success(), "the sidecar's environ was readable");
    assert!(!String::from_utf8_lossy(&ours.stdout).contains(CANARY));
    for child in [&mut sidecar, &mut ordinary] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `exec`'s child gets DATABASE_URL and the libpq variables, not the variable the secret
/// came from (unless --keep-secret-env).
#[test]
fn the_exec_child_does_not_inherit_the_secret_variable() {
    let pg = shared_pg();
    let (user, db) = pg.role_with_db("secexec", "pw-exec");
    for (keep, present) in [(false, false), (true, true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = sidecar();
        c.args(["exec", "--out-dir"]).arg(dir.path().join("out"));
        if keep {
            c.arg("--keep-secret-env");
        }
        let o = c
            .args(["--", "sh", "-c", "env"])
            .env(
                "DB_SECRET",
                secret_json("127.0.0.1", pg.port, &user, "pw-exec", &db),
            )
            .output()
            .expect("runs");
        assert_exit(&o, 0);
        let env = stdout(&o);
        assert!(env.contains("DATABASE_URL="), "{env}");
        assert_eq!(
            env.lines().any(|l| l.starts_with("DB_SECRET=")),
            present,
            "--keep-secret-env {keep}"
        );
    }
    // The libpq source: PGPASSWORD is what it consumed.
    let dir = tempfile::tempdir().expect("tempdir");
    let o = sidecar()
        .args(["exec", "--out-dir"])
        .arg(dir.path().join("out"))
        .args(["--", "sh", "-c", "env"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port.to_string())
        .env("PGUSER", &user)
        .env("PGPASSWORD", "pw-exec")
        .env("PGDATABASE", &db)
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    let env = stdout(&o);
    assert!(!env.lines().any(|l| l.starts_with("PGPASSWORD=")), "{env}");
    assert!(env.contains("PGPASSFILE="), "{env}");
}
