//! A version written ahead of its publish, on a thread of its own, while the first login
//! runs. A task's first start has an empty out-dir, so every file of the set is written
//! and fsynced (four or five fsyncs, a millisecond or more on a disk); written beside the
//! login, which mostly waits for the server, they cost the start nothing. The publish
//! swaps the version in as it is when the login proved the same credentials, and writes
//! anew otherwise. Only for a source read without the network (env, file, libpq) and a
//! password (an IAM token is signed per attempt); what it buys is measured in
//! docs/BENCHMARKS.md (the fresh out-dir row).

use std::thread::JoinHandle;

use super::{File, Writer};

/// The version being written ahead, and the set it holds.
pub struct Ahead {
    set: Vec<File>,
    writing: JoinHandle<Option<tempfile::TempDir>>,
}

impl Ahead {
    /// Starts writing `set` as a new version, unless the current version already holds
    /// it. `None` when no thread can be had: the publish then writes it, as it would.
    pub fn start(writer: &Writer, set: Vec<File>) -> Option<Self> {
        let (writer, copy) = (writer.clone(), set.clone());
        let writing = std::thread::Builder::new()
            .name("version-ahead".into())
            .spawn(move || {
                let current = writer.current_version();
                let unchanged =
                    current.is_some_and(|v| copy.iter().all(|f| writer.is_current(&v, f)));
                // A failure is the publish's to report, when it writes the set itself.
                (!unchanged)
                    .then(|| writer.write_version(&copy).ok())
                    .flatten()
            })
            .ok()?;
        Some(Self { set, writing })
    }

    /// The version written for exactly `set`; anything else it wrote is removed here.
    pub(super) fn take(self, set: &[File]) -> Option<tempfile::TempDir> {
        let written = self.writing.join().ok().flatten()?;
        (self.set == set).then_some(written)
    }
}
