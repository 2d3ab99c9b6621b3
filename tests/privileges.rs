//! `--drop-to`: a sidecar started as root becomes a non-root user before it reads the
//! secret, keeps only CAP_CHOWN, and hands the files to the app's (different) uid, which
//! then logs in through them with the real psql. Needs root, as CI and the containers
//! that use the flag have.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const SIDECAR_UID: u32 = 65532;
const APP_UID: u32 = 4242;

fn proc_status(pid: u32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

#[test]
fn dropped_sidecar_runs_unprivileged_and_hands_pgpass_to_the_app_uid() {
    assert_eq!(
        std::fs::read_to_string("/proc/self/status")
            .expect("status")
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .map(|l| l.split_whitespace().nth(1) == Some("0")),
        Some(true),
        "this test needs root (CI runs as root); --drop-to exists for containers that start as root"
    );
    let pg = shared_pg();
    let user = unique("drop");
    pg.create_role(&user, "drop:pa$$", true);
    let dir = tempfile::tempdir().expect("tempdir");
    // Readable by the dropped user: the secret file and a writable out-dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let secret = dir.path().join("secret.json");
    std::fs::write(
        &secret,
        secret_json(
            "127.0.0.1",
            pg.port,
            &user,
            "drop:pa$$",
            &format!("{user}_db"),
        ),
    )
    .expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out");
    std::os::unix::fs::chown(&out, Some(SIDECAR_UID), Some(SIDECAR_UID)).expect("chown out");

    // Where fs.suid_dumpable is 1, setresuid leaves a process dumpable: its /proc files
    // then belong to its new uid, which could read its environment. The sidecar sets
    // "not dumpable" again after the drop; the setting is put back when the test ends.
    let _dumpable = SuidDumpable::set("1");
    let mut child = sidecar()
        .arg("run")
        .arg("--out-dir")
        .arg(&out)
        .arg("--secret-file")
        .arg(&secret)
        .args(["--drop-to", &SIDECAR_UID.to_string()])
        .args(["--owner", &format!("{APP_UID}:{APP_UID}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !out.join("ready").exists() {
        assert!(
            Instant::now() < deadline,
            "not ready: {:?}",
            std::fs::read_to_string(out.join("status.json"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The process: every uid and gid is the sidecar's, and CAP_CHOWN (bit 0) is all it has.
    let ids = format!("{SIDECAR_UID}\t{SIDECAR_UID}\t{SIDECAR_UID}\t{SIDECAR_UID}");
    assert_eq!(proc_status(pid, "Uid"), ids);
    assert_eq!(proc_status(pid, "Gid"), ids);
    assert_eq!(proc_status(pid, "CapEff"), "0000000000000001");
    assert_eq!(proc_status(pid, "CapPrm"), "0000000000000001");

    let environ = std::fs::metadata(format!("/proc/{pid}/environ")).expect("environ");
    assert_eq!(
        environ.uid(),
        0,
        "the dropped sidecar is dumpable: /proc/{pid} belongs to its uid"
    );

    // The files: the app's, pgpass 0600, so libpq accepts it.
    let pgpass = std::fs::metadata(out.join("pgpass")).expect("pgpass");
    assert_eq!(
        (pgpass.uid(), pgpass.gid(), pgpass.mode() & 0o777),
        (APP_UID, APP_UID, 0o600)
    );

    // The app, under its own uid, logs in through them.
    let o = Command::new("setpriv")
        .args([
            "--reuid",
            &APP_UID.to_string(),
            "--regid",
            &APP_UID.to_string(),
            "--clear-groups",
        ])
        .arg("psql")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGSERVICEFILE", out.join("pg_service.conf"))
        .env("PGPASSFILE", out.join("pgpass"))
        .args(["service=app", "-X", "-w", "-tAc", "select current_user"])
        .output()
        .expect("psql runs");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), user);

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert_eq!(child.wait().expect("wait").code(), Some(0));
}

/// `fs.suid_dumpable` set for a while, put back on drop.
struct SuidDumpable(String);

impl SuidDumpable {
    const PATH: &'static str = "/proc/sys/fs/suid_dumpable";

    fn set(value: &str) -> Self {
        let before = std::fs::read_to_string(Self::PATH).expect("read suid_dumpable");
        std::fs::write(Self::PATH, value).expect("root may set fs.suid_dumpable");
        Self(before.trim().to_string())
    }
}

impl Drop for SuidDumpable {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

#[test]
fn drop_to_root_is_refused_as_configuration() {
    let o = sidecar()
        .args(["render", "--drop-to", "0", "--host", "h"])
        .env("PGUSER", "u")
        .env("PGPASSWORD", "p")
        .output()
        .expect("runs");
    assert_exit(&o, 78);
    assert!(stderr(&o).contains("must not be 0"), "{}", stderr(&o));
}
