//! A version written ahead of its publish, on a thread of its own, while the first login
//! runs. A task's first start has an empty out-dir, so every file of the set is written
//! and fsynced (four or five fsyncs, a millisecond or more on a disk); written beside the
//! login, which mostly waits for the server, they cost the start nothing. The publish
//! swaps the version in as it is when the login proved the same credentials, and writes
//! anew otherwise. Only when the out-dir has no version yet, and only for a source read
//! without the network (env, file, libpq) and a password (an IAM token is signed per
//! attempt); what it buys is measured in docs/BENCHMARKS.md (the fresh out-dir row).

use std::thread::JoinHandle;

use super::{File, Writer};

/// The version being written ahead, and the set it holds.
pub struct Ahead {
    set: Vec<File>,
    writing: JoinHandle<Option<tempfile::TempDir>>,
}

impl Ahead {
    /// Starts writing the set `set` makes as a new version when the out-dir has none yet
    /// (a task's first start); a later start usually finds its files unchanged and writes
    /// nothing, so the set is not even made then. `None` then, when `set` has none, or
    /// when no thread can be had: the publish writes what it must.
    pub fn start(writer: &Writer, set: impl FnOnce() -> Option<Vec<File>>) -> Option<Self> {
        if writer.current_version().is_some() {
            return None;
        }
        let set = set()?;
        let (writer, copy) = (writer.clone(), set.clone());
        let writing = std::thread::Builder::new()
            .name("version-ahead".into())
            // A failure is the publish's to report, when it writes the set itself.
            .spawn(move || writer.write_version(&copy).ok())
            .ok()?;
        Some(Self { set, writing })
    }

    /// The version written for exactly `set`; anything else it wrote is removed here.
    pub(super) fn take(self, set: &[File]) -> Option<tempfile::TempDir> {
        let written = self.writing.join().ok().flatten()?;
        (self.set == set).then_some(written)
    }
}
