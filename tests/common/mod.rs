//! Test harness, a file for each thing it stands up: a real PostgreSQL (`pg`), moto's
//! Secrets Manager (`moto`), a PKI (`pki`), the binary under test and what it leaves
//! (`binary`), and the fronts that stand between a client and a server (`front`: the
//! Aurora resume simulator and the fault injectors). Here: what they share. Every server
//! gets a watchdog shell that stops it when the test process exits, so a panicking test
//! binary leaves nothing running. Figures for `docs/RELIABILITY.md` are recorded by
//! `src/testing.rs`, the unit tests' own recorder, included here.

mod binary;
pub mod front;
mod moto;
mod pg;
mod pki;
// The unit tests' support file, shared so figures are recorded one way; its property-case
// counter is theirs alone.
#[allow(dead_code)]
#[path = "../../src/testing.rs"]
mod testing;

pub use binary::*;
pub use moto::*;
pub use pg::*;
pub use pki::*;
pub use testing::figure;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Whether the tests run as root (CI does): the one root check of the harness.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

pub fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `stop_cmd` (a shell command) once this test process is gone: statics are never
/// dropped, so servers and files that live as long as a test binary are cleaned up here.
// Never waited for on purpose: it must outlive this process; init reaps it.
#[allow(clippy::zombie_processes)]
pub fn watchdog(stop_cmd: &str) {
    let me = std::process::id();
    let script = format!("while kill -0 {me} 2>/dev/null; do sleep 1; done; {stop_cmd}");
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("watchdog shell");
}

/// Unique names for roles and databases within one test binary.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `ok` every 50 ms until it holds; fails after `secs` seconds naming `what`.
pub fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Fails unless the tests run as root (CI does), naming what needs it.
pub fn require_root(why: &str) {
    assert!(is_root(), "this test needs root (CI runs as root): {why}");
}
