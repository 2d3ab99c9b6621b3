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
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::class::ErrorClass;
use crate::outdir::{Prestaged, WriteError, Writer};
use crate::report::chain;

pub const STATUS_FILE: &str = "status.json";
pub const READY_FILE: &str = "ready";

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
    /// The start-up writes while they run beside the first login (see [`State::begin`]).
    startup: Option<Startup>,
    /// What they staged ahead for the first publish.
    prestaged: Prestaged,
}

/// What a local source said at start-up: the start-up thread stages it ahead of the first
/// publish ([`State::begin`]).
pub struct Expected {
    /// The rendered files, as `(name, contents, mode)`.
    pub files: Vec<(&'static str, Vec<u8>, u32)>,
    /// The secret version they came from, as the first publish will record it.
    pub secret_version: Option<String>,
}

/// What the start-up writes leave: the files they staged ahead.
type StartupOutcome = Result<Prestaged, WriteError>;

/// The receiving ends of the start-up writes: their outcome for [`State::settle`], and a
/// copy of their error for the wait loop's `select!` ([`State::start_failure`]).
struct Startup {
    outcome: mpsc::Receiver<StartupOutcome>,
    failed: Option<tokio::sync::oneshot::Receiver<WriteError>>,
}

/// The sending ends, moved to the thread.
struct StartupEnds {
    outcome: mpsc::Sender<StartupOutcome>,
    failed: tokio::sync::oneshot::Sender<WriteError>,
}

impl Startup {
    fn new() -> (Self, StartupEnds) {
        let (outcome_tx, outcome) = mpsc::channel();
        let (failed_tx, failed) = tokio::sync::oneshot::channel();
        let ends = StartupEnds {
            outcome: outcome_tx,
            failed: failed_tx,
        };
        (
            Self {
                outcome,
                failed: Some(failed),
            },
            ends,
        )
    }
}

impl StartupEnds {
    /// A receiver gone (the run already ended) is nobody left to tell.
    fn report(self, result: StartupOutcome) {
        if let Err(e) = &result {
            let _ = self.failed.send(e.clone());
        }
        let _ = self.outcome.send(result);
    }
}

impl State {
    /// [`State::begin`], then waits for the start-up writes (tests).
    #[cfg(test)]
    pub(crate) fn start(writer: Writer) -> Result<Self, WriteError> {
        let mut state = Self::begin(writer, None);
        state.settle()?;
        Ok(state)
    }

    /// Starts the start-up writes on a thread of their own and returns at once: remove a
    /// stale `ready`, sweep temporaries a killed run left, publish phase `starting` (whose
    /// directory fsync also makes the removal durable). They are two fsyncs, about a
    /// millisecond on a disk, which the first login (several round trips and a backend
    /// start on the server) hides instead of waiting behind them (docs/BENCHMARKS.md,
    /// "Start-up writes"). Every later write of this state waits for them first
    /// ([`State::settle`]), so `status.json` never goes backwards; a failure ends the
    /// wait at once through [`State::start_failure`] (exit 73).
    ///
    /// `expected`: what a local source said at start-up. The same thread then stages,
    /// after `status.json`, the files rendered from it and the `status.json` (with its
    /// `ready` link) that a publish after a first login that works will write, so their
    /// fsyncs do not wait for the login either: a fresh volume (every new task) writes
    /// every file, and every start writes that status. [`State::publish_ready`] uses what
    /// was staged only if it publishes exactly those bytes (the same second, attempt 1),
    /// and writes them itself otherwise.
    pub fn begin(writer: Writer, expected: Option<Expected>) -> Self {
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
            },
            startup: None,
            prestaged: Prestaged::default(),
        };
        let (startup, ends) = Startup::new();
        let (writer, json) = (state.writer.clone(), state.status_json());
        let ahead = expected.map(|e| Prestage {
            ready_json: to_json(&state.ready_status(1, e.secret_version, SystemTime::now())),
            files: e.files,
        });
        let spawned = std::thread::Builder::new()
            .name("startup-writes".into())
            .spawn(move || ends.report(startup_writes(&writer, &json, ahead)));
        state.startup = Some(match spawned {
            Ok(_) => startup,
            // No thread to be had (a task at its limit): the same writes, in line, and
            // nothing staged ahead (it would only delay the login).
            Err(_) => {
                let (startup, ends) = Startup::new();
                let json = state.status_json();
                ends.report(startup_writes(&state.writer, &json, None));
                startup
            }
        });
        state
    }

    /// Waits for the start-up writes (blocking: they are a millisecond or two of file
    /// I/O, usually over by the time anyone asks) and returns their error, once.
    pub fn settle(&mut self) -> Result<(), WriteError> {
        let Some(s) = self.startup.take() else {
            return Ok(());
        };
        self.prestaged = s.outcome.recv().unwrap_or_else(|_| {
            Err(WriteError {
                op: "finish the start-up writes in",
                path: self.writer.dir().to_path_buf(),
                source: std::io::Error::other("the start-up thread ended without a result"),
            })
        })?;
        Ok(())
    }

    /// Completes with the start-up writes' error if they fail; never completes if they
    /// succeed (a `select!` branch beside the wait loop).
    pub fn start_failure(&mut self) -> impl Future<Output = WriteError> + use<> {
        let failed = self.startup.as_mut().and_then(|s| s.failed.take());
        async move {
            match failed {
                Some(rx) => match rx.await {
                    Ok(e) => e,
                    Err(_) => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        }
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    fn status_json(&mut self) -> Vec<u8> {
        self.status.updated_at = rfc3339(SystemTime::now());
        to_json(&self.status)
    }

    /// The status a publish at `now` records: phase `ready`, this attempt and secret
    /// version, the next generation, no error.
    fn ready_status(
        &self,
        attempt: u32,
        secret_version: Option<String>,
        now: SystemTime,
    ) -> Status {
        let now = rfc3339(now);
        Status {
            phase: Phase::Ready,
            attempt,
            secret_version,
            generation: self.status.generation + 1,
            ready_at: Some(now.clone()),
            updated_at: now,
            last_error_class: None,
            last_error: None,
            ..self.status.clone()
        }
    }

    pub fn save(&mut self) -> Result<(), WriteError> {
        self.settle()?;
        // Whatever this records, the first login did not simply work: the status staged
        // for that case will not be published.
        self.prestaged.discard(STATUS_FILE);
        let json = self.status_json();
        self.writer.write(STATUS_FILE, &json, 0o644).map(|_| ())
    }

    /// Records a failed attempt (phase waiting/provisioning) or a failed refresh (phase
    /// degraded). A status write failing here is logged, not fatal: the wait goes on and
    /// the final publish reports any persistent out-dir problem.
    pub fn record_failure(&mut self, phase: Phase, attempt: u32, class: ErrorClass, message: &str) {
        self.set_failure(phase, attempt, class, message);
        self.save_or_warn();
    }

    /// The in-memory half of [`State::record_failure`]: the wait loop probes a refusing
    /// server twenty times a second and saves only now and then (see `sidecar`).
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
        self.publish_ready(attempt, secret_version, []).map(|_| ())
    }

    /// Publishes `files`, then `status.json`, then the marker, as one set (all or none
    /// replaced, renamed in this order, one directory fsync): the marker is renamed last of
    /// all, and holds the `status.json` of that moment (phase `ready`, generation,
    /// `ready_at`). Returns the names of `files` that changed.
    pub fn publish_ready<'n, 'c>(
        &mut self,
        attempt: u32,
        secret_version: Option<String>,
        files: impl IntoIterator<Item = (&'n str, &'c [u8], u32)>,
    ) -> Result<Vec<&'n str>, WriteError> {
        self.settle()?;
        self.status = self.ready_status(attempt, secret_version, SystemTime::now());
        let json = to_json(&self.status);
        // The marker is the status it was published with: a second link to the same
        // fsynced file, renamed last (`Writer::write_all_with_alias`).
        self.writer.write_all_with_alias(
            files,
            (STATUS_FILE, &json, 0o644),
            READY_FILE,
            std::mem::take(&mut self.prestaged),
        )
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

/// What the start-up thread stages ahead: the files, and the `status.json` of a first
/// login that works.
struct Prestage {
    files: Vec<(&'static str, Vec<u8>, u32)>,
    ready_json: Vec<u8>,
}

fn to_json(status: &Status) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(status).unwrap_or_default();
    json.push(b'\n');
    json
}

/// What [`State::begin`] runs beside the first login.
fn startup_writes(writer: &Writer, status_json: &[u8], ahead: Option<Prestage>) -> StartupOutcome {
    writer.remove(READY_FILE)?;
    let swept = writer.sweep_temporaries()?;
    if swept > 0 {
        tracing::info!(
            files = swept,
            "removed temporary files an interrupted run left behind"
        );
    }
    writer.write(STATUS_FILE, status_json, 0o644)?;
    let Some(ahead) = ahead else {
        return Ok(Prestaged::default());
    };
    let mut staged = writer.prestage(ahead.files)?;
    writer.prestage_with_alias(
        &mut staged,
        (STATUS_FILE, ahead.ready_json, 0o644),
        READY_FILE,
    )?;
    Ok(staged)
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
    let status = std::fs::read(out_dir.join(STATUS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Status>(&b).ok());
    let Some(s) = status else {
        return Health {
            healthy: false,
            line: format!(
                "starting: no readable {STATUS_FILE} in {}",
                out_dir.display()
            ),
        };
    };
    let marker = out_dir.join(READY_FILE).is_file();
    let healthy = marker && matches!(s.phase, Phase::Ready | Phase::Degraded);
    let mut line = format!(
        "{} attempt={} generation={}",
        s.phase.as_str(),
        s.attempt,
        s.generation
    );
    if let Some(v) = &s.secret_version {
        line.push_str(&format!(" secret_version={v}"));
    }
    if let (Some(class), Some(msg)) = (&s.last_error_class, &s.last_error) {
        line.push_str(&format!(" last_error=[{class}] {msg}"));
    }
    if matches!(s.phase, Phase::Ready | Phase::Degraded) && !marker {
        line.push_str(&format!(" ({READY_FILE} marker missing)"));
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

    #[tokio::test]
    async fn startup_writes_failing_beside_the_wait_are_reported_to_both_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("out");
        let writer = Writer::new(&gone, None).expect("writer");
        // Root can write anywhere; a directory removed under the writer fails for all.
        std::fs::remove_dir(&gone).expect("rmdir");
        let mut state = State::begin(writer, None);
        let failure = state.start_failure();
        let e = tokio::time::timeout(Duration::from_secs(10), failure)
            .await
            .expect("the failure is reported without anyone settling");
        assert_eq!(e.source.kind(), std::io::ErrorKind::NotFound, "{e}");
        let again = state.settle().expect_err("settle reports the same error");
        assert_eq!(again.to_string(), e.to_string());
        assert_eq!(again.source.raw_os_error(), e.source.raw_os_error());
        state.settle().expect("reported once");
    }

    #[tokio::test]
    async fn startup_writes_that_succeed_never_end_the_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = State::begin(Writer::new(dir.path(), None).expect("writer"), None);
        let failure = state.start_failure();
        state.settle().expect("written");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), failure)
                .await
                .is_err()
        );
        assert!(health(dir.path()).line.starts_with("starting "));
    }

    #[test]
    fn a_save_right_after_begin_is_never_overtaken_by_the_startup_write() {
        for _ in 0..50 {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut state = State::begin(Writer::new(dir.path(), None).expect("writer"), None);
            state.record_failure(Phase::Waiting, 1, ErrorClass::Transient, "refused");
            let h = health(dir.path());
            assert!(h.line.starts_with("waiting attempt=1 "), "{}", h.line);
        }
    }

    fn inode(dir: &Path, name: &str) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.join(name)).expect(name))
    }

    /// The temporary file staged ahead for `name` (exactly one).
    fn staged(dir: &Path, name: &str) -> String {
        let found: Vec<String> = listing(dir)
            .into_iter()
            .filter(|n| n.starts_with(&format!(".{name}.")))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        found[0].clone()
    }

    /// A state begun with a local source's `pgpass` to stage ahead.
    fn begin_with_pgpass(dir: &Path) -> State {
        let expected = Expected {
            files: vec![("pgpass", b"h:1:*:u:p\n".to_vec(), 0o600)],
            secret_version: None,
        };
        State::begin(Writer::new(dir, None).expect("writer"), Some(expected))
    }

    #[test]
    fn files_and_status_staged_beside_the_login_are_published_when_they_match() {
        // The staged status.json holds the second of its staging: one that ticks over
        // before the publish is a mismatch (written anew, as the next test shows), so a
        // run that sees one is tried again.
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut state = begin_with_pgpass(dir.path());
            state.settle().expect("written");
            let (pgpass, status, ready) = (
                inode(dir.path(), &staged(dir.path(), "pgpass")),
                inode(dir.path(), &staged(dir.path(), STATUS_FILE)),
                inode(dir.path(), &staged(dir.path(), READY_FILE)),
            );
            assert_eq!(
                status, ready,
                "the marker is staged as the status's second link"
            );
            let changed = state
                .publish_ready(1, None, [("pgpass", &b"h:1:*:u:p\n"[..], 0o600)])
                .expect("published");
            assert_eq!(changed, ["pgpass"]);
            assert_eq!(listing(dir.path()), ["pgpass", READY_FILE, STATUS_FILE]);
            assert_eq!(
                inode(dir.path(), "pgpass"),
                pgpass,
                "the file staged ahead, not a second write"
            );
            if inode(dir.path(), STATUS_FILE) != status {
                continue;
            }
            assert_eq!(inode(dir.path(), READY_FILE), status);
            let h = health(dir.path());
            assert!(h.healthy, "{}", h.line);
            assert_eq!(h.line, "ready attempt=1 generation=1");
            return;
        }
        panic!("the staged status.json was never the one published");
    }

    #[test]
    fn a_status_staged_for_another_outcome_is_not_published() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = begin_with_pgpass(dir.path());
        state.settle().expect("written");
        staged(dir.path(), STATUS_FILE);
        // Ready on the second attempt: not what was staged (attempt 1), so written anew.
        state
            .publish_ready(2, None, [("pgpass", &b"h:1:*:u:p\n"[..], 0o600)])
            .expect("published");
        assert_eq!(
            inode(dir.path(), READY_FILE),
            inode(dir.path(), STATUS_FILE)
        );
        assert_eq!(health(dir.path()).line, "ready attempt=2 generation=1");
        assert_eq!(listing(dir.path()), ["pgpass", READY_FILE, STATUS_FILE]);
    }

    #[test]
    fn a_failure_recorded_drops_the_status_staged_for_a_first_login_that_works() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state = begin_with_pgpass(dir.path());
        state.record_failure(Phase::Waiting, 1, ErrorClass::Transient, "refused");
        let names = listing(dir.path());
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with(".status.json.") || n.starts_with(".ready.")),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n.starts_with(".pgpass.")), "{names:?}");
        assert!(!dir.path().join(READY_FILE).exists());
        assert!(health(dir.path()).line.starts_with("waiting attempt=1 "));
    }

    #[test]
    fn publish_ready_writes_the_files_status_and_marker_as_one_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("same"), "kept").expect("same");
        let mut state = State::begin(Writer::new(dir.path(), None).expect("writer"), None);
        let changed = state
            .publish_ready(
                2,
                None,
                [("same", &b"kept"[..], 0o644), ("new", &b"fresh"[..], 0o600)],
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
            listing(dir.path()),
            ["new", READY_FILE, "same", STATUS_FILE]
        );
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
                line: "waiting attempt=3 generation=0 last_error=[transient] connection refused"
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
