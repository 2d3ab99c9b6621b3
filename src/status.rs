//! `status.json`, the `ready` marker, and the `health` check that reads them.
//!
//! Invariants:
//! - `ready` is removed before anything else at start-up, so a marker left by an earlier
//!   run can never gate an app; it is written last, after every rendered file is in place;
//! - `status.json` carries classes and messages, never a password or secret JSON (the
//!   messages come from errors, which carry none);
//! - `health` reads only these two files: it never opens a database connection, which
//!   would keep Aurora Serverless v2 from pausing.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::class::ErrorClass;
use crate::display::{chain, printable};
use crate::outdir::{Ahead, File, WriteError, Writer, read_regular};

pub const STATUS_FILE: &str = "status.json";
pub const READY_FILE: &str = "ready";
/// More than any status this sidecar writes (about 600 bytes); `health` reads no further.
const MAX_STATUS_BYTES: u64 = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Starting,
    Waiting,
    Provisioning,
    Ready,
    Degraded,
    Stopping,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Waiting => "waiting",
            Phase::Provisioning => "provisioning",
            Phase::Ready => "ready",
            Phase::Degraded => "degraded",
            Phase::Stopping => "stopping",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub phase: Phase,
    /// Login attempts in the current wait.
    pub attempt: u32,
    pub last_error_class: Option<ErrorClass>,
    pub last_error: Option<String>,
    /// Secrets Manager `VersionId` of the credentials in use.
    pub secret_version: Option<String>,
    /// Bumped each time a new set of files is published; 0 until the first.
    pub generation: u64,
    pub pid: u32,
    pub version: String,
    pub started_at: String,
    pub updated_at: String,
    pub ready_at: Option<String>,
    /// Refresh checks done by `run` (DescribeSecret calls or file re-reads).
    #[serde(default)]
    pub checks: u64,
    #[serde(default)]
    pub last_check_at: Option<String>,
    /// `password` (from the secret) or `iam` (tokens signed by the sidecar).
    #[serde(default)]
    pub auth: Auth,
    /// With IAM: when the published token expires (never the token itself).
    #[serde(default)]
    pub token_expires_at: Option<String>,
    /// With IAM: tokens signed and published after the first.
    #[serde(default)]
    pub token_renewals: u64,
    /// The role the published files log in as.
    #[serde(default)]
    pub role: Option<String>,
    /// Whether this run set that role up with the admin credentials (never a password).
    #[serde(default)]
    pub bootstrapped: bool,
}

/// How the published credentials authenticate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    #[default]
    Password,
    Iam,
}

/// Owns `status.json` and `ready` for one run.
pub struct State {
    writer: Writer,
    pub status: Status,
}

impl State {
    /// The start-up writes: remove a stale `ready`, sweep what a killed run left, replace
    /// `status.json` with phase `starting`.
    pub fn start(writer: Writer) -> Result<Self, WriteError> {
        let now = rfc3339(SystemTime::now());
        let mut state = Self {
            writer,
            status: Status {
                phase: Phase::Starting,
                attempt: 0,
                last_error_class: None,
                last_error: None,
                secret_version: None,
                generation: 0,
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_at: now.clone(),
                updated_at: now,
                ready_at: None,
                checks: 0,
                last_check_at: None,
                auth: Auth::Password,
                token_expires_at: None,
                token_renewals: 0,
                role: None,
                bootstrapped: false,
            },
        };
        state.writer.remove(READY_FILE)?;
        let swept = state.writer.sweep()?;
        if swept > 0 {
            tracing::info!(
                entries = swept,
                "removed temporary files an interrupted run left behind"
            );
        }
        state.save()?;
        Ok(state)
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// `status.json` as it is now, stamped now.
    fn status_file(&mut self) -> File {
        self.status.updated_at = rfc3339(SystemTime::now());
        let mut contents = serde_json::to_vec_pretty(&self.status).unwrap_or_default();
        contents.push(b'\n');
        File {
            name: STATUS_FILE,
            contents,
            mode: 0o644,
        }
    }

    /// Replaces `status.json` with the status as it is now. Not fsynced: it describes the
    /// running process (`Writer::replace` says why that is safe).
    pub fn save(&mut self) -> Result<(), WriteError> {
        let file = self.status_file();
        self.writer.replace(&file).map(|_| ())
    }

    /// Records a failed attempt (phase waiting/provisioning) or a failed refresh (phase
    /// degraded). A status write failing here is logged, not fatal: the wait goes on and
    /// the final publish reports any persistent out-dir problem.
    pub fn record_failure(&mut self, phase: Phase, attempt: u32, class: ErrorClass, message: &str) {
        self.set_failure(phase, attempt, class, message);
        self.save_or_warn();
    }

    /// The in-memory half of [`State::record_failure`]: the wait loop probes a refusing
    /// server twenty times a second and saves only now and then (see `flows::observe`).
    pub fn set_failure(&mut self, phase: Phase, attempt: u32, class: ErrorClass, message: &str) {
        self.status.phase = phase;
        self.status.attempt = attempt;
        self.status.last_error_class = Some(class);
        self.status.last_error = Some(message.to_string());
    }

    /// Saves `status.json`; a failure is logged, not returned: the wait goes on and the
    /// final publish reports a persistent out-dir problem.
    pub fn save_or_warn(&mut self) {
        if let Err(e) = self.save() {
            tracing::warn!(error = %chain(&e), "could not update status.json");
        }
    }

    /// Publishes readiness alone (the files are already in place).
    pub fn mark_ready(
        &mut self,
        attempt: u32,
        secret_version: Option<String>,
    ) -> Result<(), WriteError> {
        self.publish_ready(attempt, secret_version, &[], None)
            .map(|_| ())
    }

    /// Publishes `files`, then `status.json`, then the marker, as one set (nothing
    /// replaced if any of them cannot be written, one directory fsync): the marker is
    /// renamed last of all, and is a second link to the `status.json` of that moment
    /// (phase `ready`, generation, `ready_at`). Returns the names of `files` that changed.
    pub fn publish_ready(
        &mut self,
        attempt: u32,
        secret_version: Option<String>,
        files: &[File],
        ahead: Option<Ahead>,
    ) -> Result<Vec<&'static str>, WriteError> {
        let now = rfc3339(SystemTime::now());
        self.status = Status {
            phase: Phase::Ready,
            attempt,
            secret_version,
            generation: self.status.generation + 1,
            ready_at: Some(now),
            last_error_class: None,
            last_error: None,
            ..self.status.clone()
        };
        let status = self.status_file();
        self.writer
            .publish_with_marker(files, &status, READY_FILE, ahead)
    }

    /// Records the expiry of the token now published (IAM), never the token.
    pub fn set_token_expiry(&mut self, expires_at: Option<SystemTime>) {
        self.status.token_expires_at = expires_at.map(rfc3339);
    }

    /// A renewed token was published: counted, its expiry recorded, and the check done.
    pub fn record_renewal(&mut self, expires_at: SystemTime) {
        self.status.token_renewals += 1;
        self.set_token_expiry(Some(expires_at));
        self.record_check(false);
    }

    /// Counts a refresh check. A check that found nothing to do ends a degraded episode:
    /// the files in place match what the source says again.
    pub fn record_check(&mut self, failed: bool) {
        self.status.checks += 1;
        self.status.last_check_at = Some(rfc3339(SystemTime::now()));
        if !failed && self.status.phase == Phase::Degraded {
            self.status.phase = Phase::Ready;
            self.status.last_error_class = None;
            self.status.last_error = None;
        }
    }

    /// Best effort on the way out: a stopping sidecar must not fail on its status file.
    pub fn mark_stopping(&mut self) {
        self.status.phase = Phase::Stopping;
        self.save_or_warn();
    }
}

/// The result of `health`: exit code and the one line it prints.
#[derive(Debug, PartialEq, Eq)]
pub struct Health {
    pub healthy: bool,
    pub line: String,
}

/// Healthy when this run published its files: `ready` exists and `status.json` says
/// `ready` or `degraded` (old files still in place are the best available).
pub fn health(out_dir: &Path) -> Health {
    // Bounded, no symlink followed, no FIFO waited on: anyone who can write the volume
    // could plant one, and `health` often runs as root.
    let status = read_regular(&out_dir.join(STATUS_FILE), MAX_STATUS_BYTES)
        .ok()
        .and_then(|(_, b)| serde_json::from_slice::<Status>(&b).ok());
    let Some(s) = status else {
        return Health {
            healthy: false,
            line: format!(
                "starting: no readable {STATUS_FILE} in {}",
                out_dir.display()
            ),
        };
    };
    let marker = std::fs::symlink_metadata(out_dir.join(READY_FILE)).is_ok_and(|m| m.is_file());
    let healthy = marker && matches!(s.phase, Phase::Ready | Phase::Degraded);
    let mut line = format!(
        "{} attempt={} generation={}",
        s.phase.as_str(),
        s.attempt,
        s.generation
    );
    // The file's text is shown escaped: it may hold a server's words, or anyone's.
    if let Some(v) = &s.secret_version {
        line.push_str(&format!(" secret_version={}", printable(v)));
    }
    if let (Some(class), Some(msg)) = (&s.last_error_class, &s.last_error) {
        line.push_str(&format!(" last_error=[{class}] {}", printable(msg)));
    }
    if matches!(s.phase, Phase::Ready | Phase::Degraded) && !marker {
        line.push_str(&format!(" ({READY_FILE} marker missing)"));
    }
    if !healthy && s.last_error.is_some() {
        line.push_str(" (run `aurora-sidecar doctor` with the same flags)");
    }
    Health { healthy, line }
}

/// RFC 3339 UTC timestamp with second precision, e.g. `2026-11-24T16:20:19Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::listing;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_537_219)),
            "2026-11-24T16:20:19Z"
        );
    }

    #[test]
    fn start_removes_a_stale_marker_and_health_then_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(READY_FILE), "generation=7\n").expect("stale marker");
        let writer = Writer::new(dir.path(), None).expect("writer");
        let _state = State::start(writer).expect("start");
        assert!(!dir.path().join(READY_FILE).exists());
        let h = health(dir.path());
        assert!(!h.healthy);
        assert!(h.line.starts_with("starting attempt=0"), "{}", h.line);
    }

    #[test]
    fn start_fails_when_the_out_dir_cannot_be_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("out");
        let writer = Writer::new(&gone, None).expect("writer");
        // Root can write anywhere; a directory removed under the writer fails for all.
        std::fs::remove_dir(&gone).expect("rmdir");
        let e = State::start(writer)
            .err()
            .expect("the start-up writes fail");
        assert_eq!(e.source.kind(), std::io::ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn start_sweeps_what_a_killed_run_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".pgpass.aB3dE9.tmp"), "partial").expect("plant");
        std::fs::create_dir(dir.path().join("..v.Xy12Z9")).expect("plant version");
        let _state = State::start(Writer::new(dir.path(), None).expect("writer")).expect("start");
        assert_eq!(listing(dir.path()), [STATUS_FILE]);
    }

    #[test]
    fn publish_ready_writes_the_files_status_and_marker_as_one_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state =
            State::start(Writer::new(dir.path(), None).expect("writer")).expect("start");
        let file = |name, contents: &[u8], mode| File {
            name,
            contents: contents.to_vec(),
            mode,
        };
        state
            .writer()
            .publish(&[file("same", b"kept", 0o644)])
            .expect("published");
        let changed = state
            .publish_ready(
                2,
                None,
                &[file("same", b"kept", 0o644), file("new", b"fresh", 0o600)],
                None,
            )
            .expect("published");
        assert_eq!(
            changed,
            ["new"],
            "status.json and ready are not rendered files"
        );
        assert_eq!(
            std::fs::read(dir.path().join("new")).expect("new"),
            b"fresh"
        );
        let h = health(dir.path());
        assert!(h.healthy, "{}", h.line);
        assert_eq!(h.line, "ready attempt=2 generation=1");
        let read = |name: &str| std::fs::read(dir.path().join(name)).expect(name);
        let published = read(STATUS_FILE);
        assert_eq!(
            read(READY_FILE),
            published,
            "the marker is the status of that moment"
        );
        // Later status writes replace status.json; the marker keeps what it was.
        state.record_check(false);
        state.save().expect("save");
        assert_ne!(read(STATUS_FILE), published);
        assert_eq!(read(READY_FILE), published);
        assert_eq!(
            listing(dir.path())[2..],
            ["new", READY_FILE, "same", STATUS_FILE]
        );
        assert_eq!(listing(dir.path())[0], "..data");
    }

    #[test]
    fn health_reports_waiting_with_the_last_error_then_ready() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state =
            State::start(Writer::new(dir.path(), None).expect("writer")).expect("start");
        state.record_failure(
            Phase::Waiting,
            3,
            ErrorClass::Transient,
            "connection refused",
        );
        let h = health(dir.path());
        assert_eq!(
            h,
            Health {
                healthy: false,
                line: "waiting attempt=3 generation=0 last_error=[transient] connection refused (run `aurora-sidecar doctor` with the same flags)"
                    .into()
            }
        );
        state.mark_ready(4, Some("v1".into())).expect("ready");
        let h = health(dir.path());
        assert!(h.healthy);
        assert_eq!(h.line, "ready attempt=4 generation=1 secret_version=v1");
    }

    #[test]
    fn degraded_stays_healthy_with_the_reason_and_a_clean_check_recovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state =
            State::start(Writer::new(dir.path(), None).expect("writer")).expect("start");
        state.mark_ready(1, Some("v1".into())).expect("ready");
        state.record_check(true);
        state.record_failure(
            Phase::Degraded,
            1,
            ErrorClass::PasswordRejected,
            "new password rejected",
        );
        let h = health(dir.path());
        assert!(h.healthy, "old files are still the best available");
        assert!(
            h.line.starts_with("degraded ") && h.line.contains("new password rejected"),
            "{}",
            h.line
        );
        state.record_check(false);
        state.save().expect("save");
        let h = health(dir.path());
        assert_eq!(h.line, "ready attempt=1 generation=1 secret_version=v1");
        assert_eq!(state.status.checks, 2);
    }

    #[test]
    fn ready_status_without_the_marker_is_unhealthy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state =
            State::start(Writer::new(dir.path(), None).expect("writer")).expect("start");
        state.mark_ready(1, None).expect("ready");
        std::fs::remove_file(dir.path().join(READY_FILE)).expect("rm");
        let h = health(dir.path());
        assert!(!h.healthy);
        assert!(h.line.contains("marker missing"), "{}", h.line);
    }

    #[test]
    fn missing_out_dir_is_unhealthy_with_a_reason() {
        let h = health(Path::new("/nonexistent/aurora-sidecar"));
        assert!(!h.healthy);
        assert!(h.line.contains("no readable status.json"), "{}", h.line);
    }
}
