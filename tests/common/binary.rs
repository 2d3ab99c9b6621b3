//! The binary under test: how it is started (a clean environment), what it printed, and
//! what it left in the out-dir.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The program the tests run: this build's binary, or the one `AURORA_SIDECAR_TEST_BIN`
/// names — another build of it, or a wrapper that runs one under emulation
/// (`scripts/test-aarch64` runs the aarch64 binary through qemu-aarch64-static this way).
pub fn sidecar_bin() -> String {
    std::env::var("AURORA_SIDECAR_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_aurora-sidecar").to_owned())
}

/// The binary under test with a clean environment: nothing from the developer's shell
/// (PG*, DB_SECRET, AWS_*) can leak into a test.
pub fn sidecar() -> Command {
    let mut c = Command::new(sidecar_bin());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AURORA_SIDECAR_LOG_FORMAT", "json")
        .stdin(Stdio::null());
    c
}

/// `aurora-sidecar health --out-dir OUT`.
pub fn health(out_dir: &Path) -> Output {
    sidecar()
        .arg("health")
        .arg("--out-dir")
        .arg(out_dir)
        .output()
        .expect("health runs")
}

/// The secret JSON as RDS writes it (port as a number).
pub fn secret_json(host: &str, port: u16, user: &str, password: &str, db: &str) -> String {
    serde_json::json!({
        "engine": "postgres",
        "host": host,
        "port": port,
        "username": user,
        "password": password,
        "dbname": db,
        "dbClusterIdentifier": "test-cluster",
    })
    .to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with the sidecar's own output when the exit code is not the expected one.
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}, got {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// `psql` against the rendered files, as the app container would use them.
pub fn psql_service(out_dir: &Path, service: &str, sql: &str) -> Output {
    Command::new("psql")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGSERVICEFILE", out_dir.join("pg_service.conf"))
        .env("PGPASSFILE", out_dir.join("pgpass"))
        .arg(format!("service={service}"))
        .args(["-X", "-w", "-tAc", sql])
        .output()
        .expect("psql runs")
}

/// Sources `application.profile` in a POSIX shell, then runs `script`.
pub fn with_profile(out_dir: &Path, script: &str) -> Output {
    Command::new("sh")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(out_dir)
        .args(["-c", &format!(". ./application.profile && {script}")])
        .output()
        .expect("sh runs")
}

/// Reads `status.json` from an out-dir.
pub fn status(out_dir: &Path) -> serde_json::Value {
    let bytes = std::fs::read(out_dir.join("status.json")).expect("status.json exists");
    serde_json::from_slice(&bytes).expect("status.json is JSON")
}

/// Whether `status.json` says `phase` now (false while it is missing or being replaced).
pub fn phase_is(out: &Path, phase: &str) -> bool {
    std::fs::read(out.join("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|s| s["phase"] == phase)
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Names in a directory, sorted (to prove no temporary or partial file is left). A
/// version directory of the credential files (`..v.` and six random characters) is
/// listed as `..v.XXXXXX`.
pub fn listing(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut names: Vec<String> = super::testing::listing(dir)
        .into_iter()
        .map(|n| match n.strip_prefix("..v.") {
            Some(r) if r.len() == 6 => "..v.XXXXXX".to_string(),
            _ => n,
        })
        .collect();
    names.sort();
    names
}

/// SIGTERM, then the exit status and how long it took.
pub fn terminate(mut child: std::process::Child) -> (Option<i32>, Duration) {
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return (st.code(), sent.elapsed());
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `run --secret-file SECRET --out-dir OUT --refresh-interval INTERVAL`, output discarded.
pub fn spawn_run_with_file(secret: &Path, out: &Path, interval: &str) -> std::process::Child {
    sidecar()
        .args(["run", "--refresh-interval", interval, "--secret-file"])
        .arg(secret)
        .arg("--out-dir")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn run")
}

/// `c` started with its output discarded (a `run` left running while a test looks on).
pub fn spawn_quiet(c: &mut Command) -> std::process::Child {
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}
