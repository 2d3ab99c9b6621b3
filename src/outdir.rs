//! The out-dir: atomic file replacement, used by the renderers' publisher and by
//! `state` alike. A leaf: it imports nothing of the crate.
//!
//! Invariants, for every file:
//! - the temporary file is created in the out-dir itself (so `rename` is atomic), with its
//!   final mode and owner set *before* any byte is written: pgpass is 0600 from birth;
//! - data is fsynced, renamed over the target, and the directory fsynced, so after a crash
//!   a reader sees the old file or the new one, never a torn one;
//! - a file whose bytes, mode and owner are already right is not touched (no mtime churn,
//!   no inotify noise for apps that watch the directory);
//! - a failed write leaves no temporary file behind (tempfile removes it on drop).

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `--owner UID[:GID]`: who owns the rendered files (the app's user, so libpq accepts a
/// 0600 pgpass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: check that --out-dir is a writable volume (and, with --owner, that the sidecar may chown)", path.display())]
pub struct WriteError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// `io::Error` is not `Clone`; an OS error is rebuilt from its code (the same text and
/// kind), anything else from its kind and text. For the start-up writes, whose one error
/// is reported to two places (`state`).
impl Clone for WriteError {
    fn clone(&self) -> Self {
        let source = match self.source.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.source.kind(), self.source.to_string()),
        };
        Self {
            op: self.op,
            path: self.path.clone(),
            source,
        }
    }
}

/// Temporary names are `.NAME.` + six random characters + this suffix.
const TEMP_SUFFIX: &str = ".tmp";

/// Whether `name` follows the temporary-file scheme of [`Writer`].
fn is_temporary(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(TEMP_SUFFIX) else {
        return false;
    };
    let Some((head, random)) = stem.rsplit_once('.') else {
        return false;
    };
    head.len() > 1
        && head.starts_with('.')
        && random.len() == 6
        && random.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A written and fsynced temporary file waiting for its rename.
struct Staged {
    tmp: tempfile::TempPath,
    path: PathBuf,
}

/// Files written and fsynced ahead of their publish ([`Writer::prestage`],
/// [`Writer::prestage_with_alias`]), each with the bytes and mode it was staged with: a
/// later set uses one only for exactly those. Dropping it removes what was not used.
#[derive(Default)]
pub struct Prestaged {
    files: Vec<Ahead>,
}

/// One file staged ahead, and its second link when it was staged with an alias.
struct Ahead {
    name: &'static str,
    contents: Vec<u8>,
    mode: u32,
    file: Staged,
    alias: Option<Staged>,
}

impl Prestaged {
    /// The file staged for exactly `name`, `contents` and `mode`, with a second link
    /// exactly when `alias` names one (and the same one). Anything else staged for `name`
    /// is removed here, before the caller writes the file anew: a name never has two
    /// temporary files, so a kill leaves one set at most.
    fn take(
        &mut self,
        name: &str,
        contents: &[u8],
        mode: u32,
        alias: Option<&Path>,
    ) -> Option<(Staged, Option<Staged>)> {
        let i = self.files.iter().position(|a| {
            a.name == name
                && a.contents == contents
                && a.mode == mode
                && a.alias.as_ref().map(|s| s.path.as_path()) == alias
        });
        let taken = i.map(|i| self.files.swap_remove(i));
        self.discard(name);
        taken.map(|a| (a.file, a.alias))
    }

    /// Drops (and so removes) what was staged for `name`.
    pub fn discard(&mut self, name: &str) {
        self.files.retain(|a| a.name != name);
    }
}

#[derive(Debug, Clone)]
pub struct Writer {
    dir: PathBuf,
    owner: Option<Owner>,
}

impl Writer {
    /// Creates the out-dir if needed (mode 0755, like a fresh ECS bind mount).
    pub fn new(dir: &Path, owner: Option<Owner>) -> Result<Self, WriteError> {
        fs::create_dir_all(dir).map_err(|source| WriteError {
            op: "create the out-dir",
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            owner,
        })
    }

    /// The out-dir, for messages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `name` atomically with `mode`. Returns whether the file changed.
    pub fn write(&self, name: &str, contents: &[u8], mode: u32) -> Result<bool, WriteError> {
        match self.stage(name, contents, mode)? {
            Some(staged) => self.commit(vec![staged]).map(|_| true),
            None => Ok(false),
        }
    }

    /// Writes a set of files so that a failure while writing any of them (a full disk)
    /// replaces none: every temporary file is written and fsynced first, then all are
    /// renamed, then the directory is fsynced once. Returns the names that changed.
    pub fn write_all<'n, 'c>(
        &self,
        files: impl IntoIterator<Item = (&'n str, &'c [u8], u32)>,
    ) -> Result<Vec<&'n str>, WriteError> {
        let (staged, names) = self.stage_all(files, &mut Prestaged::default())?;
        if !staged.is_empty() {
            self.commit(staged)?;
        }
        Ok(names)
    }

    /// [`Writer::write_all`] for `files`, then `last` (always written) under its own name
    /// and under `alias`, renamed in that order, in the same set. `alias` is a second hard
    /// link to `last`'s temporary file: the same bytes, mode and owner from one write and
    /// one fsync. `state` publishes `status.json` and the `ready` marker this way, one
    /// fsync fewer on the path every task start waits for. A file of `files` found in
    /// `prestaged` with the same bytes and mode is not written again. Returns the names of
    /// `files` that changed.
    pub fn write_all_with_alias<'n, 'c>(
        &self,
        files: impl IntoIterator<Item = (&'n str, &'c [u8], u32)>,
        (name, contents, mode): (&str, &[u8], u32),
        alias: &str,
        mut prestaged: Prestaged,
    ) -> Result<Vec<&'n str>, WriteError> {
        let (mut staged, names) = self.stage_all(files, &mut prestaged)?;
        let (first, second) =
            match prestaged.take(name, contents, mode, Some(&self.dir.join(alias))) {
                Some(ahead) => ahead,
                None => self.stage_new(name, contents, mode, Some(alias))?,
            };
        staged.push(first);
        staged.extend(second);
        self.commit(staged)?;
        Ok(names)
    }

    /// Stages, ahead of their publish, those of `files` that are not already right.
    pub fn prestage(
        &self,
        files: Vec<(&'static str, Vec<u8>, u32)>,
    ) -> Result<Prestaged, WriteError> {
        let mut out = Prestaged::default();
        for (name, contents, mode) in files {
            if let Some(file) = self.stage(name, &contents, mode)? {
                out.files.push(Ahead {
                    name,
                    contents,
                    mode,
                    file,
                    alias: None,
                });
            }
        }
        Ok(out)
    }

    /// Stages `name` (always: it is written whether or not the file in place has these
    /// bytes) with a second link for `alias`, ahead of a [`Writer::write_all_with_alias`]
    /// that will very likely publish exactly these bytes.
    pub fn prestage_with_alias(
        &self,
        prestaged: &mut Prestaged,
        (name, contents, mode): (&'static str, Vec<u8>, u32),
        alias: &str,
    ) -> Result<(), WriteError> {
        let (file, alias) = self.stage_new(name, &contents, mode, Some(alias))?;
        prestaged.files.push(Ahead {
            name,
            contents,
            mode,
            file,
            alias,
        });
        Ok(())
    }

    fn stage_all<'n, 'c>(
        &self,
        files: impl IntoIterator<Item = (&'n str, &'c [u8], u32)>,
        prestaged: &mut Prestaged,
    ) -> Result<(Vec<Staged>, Vec<&'n str>), WriteError> {
        let mut staged = Vec::new();
        let mut names = Vec::new();
        for (name, contents, mode) in files {
            let file = match prestaged.take(name, contents, mode, None) {
                Some((ahead, _)) => Some(ahead),
                None => self.stage(name, contents, mode)?,
            };
            if let Some(file) = file {
                staged.push(file);
                names.push(name);
            }
        }
        Ok((staged, names))
    }

    /// A complete, fsynced temporary file for `name`, or `None` when the file is already
    /// right. Dropping it removes the temporary file.
    fn stage(&self, name: &str, contents: &[u8], mode: u32) -> Result<Option<Staged>, WriteError> {
        if self.is_current(&self.dir.join(name), contents, mode) {
            return Ok(None);
        }
        self.stage_new(name, contents, mode, None)
            .map(|(staged, _)| Some(staged))
    }

    /// A second temporary name (hard link) for the file at `tmp_file`, to be renamed to
    /// `name`. tempfile picks the random name as it does for `stage_new`: link(2) never
    /// follows a symlink planted there, it fails with EEXIST and another name is tried.
    fn link_temporary(&self, tmp_file: &Path, name: &str) -> Result<Staged, WriteError> {
        let path = self.dir.join(name);
        match tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(TEMP_SUFFIX)
            .make_in(&self.dir, |link| fs::hard_link(tmp_file, link))
        {
            Ok(linked) => Ok(Staged {
                tmp: linked.into_temp_path(),
                path,
            }),
            Err(source) => Err(WriteError {
                op: "link a temporary file for",
                path,
                source,
            }),
        }
    }

    /// The temporary file for `name`, and with `alias` a second link to it.
    fn stage_new(
        &self,
        name: &str,
        contents: &[u8],
        mode: u32,
        alias: Option<&str>,
    ) -> Result<(Staged, Option<Staged>), WriteError> {
        let path = self.dir.join(name);
        let err = |op| {
            let path = path.clone();
            move |source| WriteError { op, path, source }
        };
        // O_CREAT|O_EXCL on a random name: a symlink planted at a temporary name is never
        // followed, and rename replaces a planted symlink at the final name itself.
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(TEMP_SUFFIX)
            .permissions(Permissions::from_mode(mode))
            .tempfile_in(&self.dir)
            .map_err(err("create a temporary file for"))?;
        // Linked while this process still owns the file: after the chown to --owner, a
        // sidecar dropped to another uid may not link it (fs.protected_hardlinks).
        let second = alias
            .map(|a| self.link_temporary(tmp.path(), a))
            .transpose()?;
        // The umask may have narrowed the mode at creation (never widened it): set it
        // exactly, still before any data.
        tmp.as_file()
            .set_permissions(Permissions::from_mode(mode))
            .map_err(err("set the mode of"))?;
        if let Some(o) = self.owner {
            std::os::unix::fs::fchown(tmp.as_file(), Some(o.uid), o.gid).map_err(err("chown"))?;
        }
        tmp.write_all(contents).map_err(err("write"))?;
        tmp.as_file().sync_all().map_err(err("fsync"))?;
        let first = Staged {
            tmp: tmp.into_temp_path(),
            path,
        };
        Ok((first, second))
    }

    /// Renames staged files into place, then fsyncs the directory once.
    fn commit(&self, staged: Vec<Staged>) -> Result<(), WriteError> {
        for Staged { tmp, path } in staged {
            tmp.persist(&path).map_err(|e| WriteError {
                op: "rename into place",
                path: path.clone(),
                source: e.error,
            })?;
        }
        self.sync_dir()
    }

    /// Removes temporary files a killed run left behind (names `.NAME.XXXXXX.tmp`, this
    /// writer's own scheme; nothing else is touched). Returns how many were removed.
    pub fn sweep_temporaries(&self) -> Result<usize, WriteError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| WriteError {
            op: "list",
            path: self.dir.clone(),
            source,
        })?;
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_temporary(name) {
                self.remove(name)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes `name` if present. Not fsynced on its own: the caller's next [`write`]
    /// fsyncs the directory, which makes the removal durable with it (one fsync, not two,
    /// on the start-up path).
    ///
    /// [`write`]: Writer::write
    pub fn remove(&self, name: &str) -> Result<(), WriteError> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(WriteError {
                op: "remove",
                path,
                source,
            }),
        }
    }

    fn sync_dir(&self) -> Result<(), WriteError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| WriteError {
                op: "fsync the directory",
                path: self.dir.clone(),
                source,
            })
    }

    fn is_current(&self, path: &Path, contents: &[u8], mode: u32) -> bool {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return false;
        };
        if !meta.file_type().is_file()
            || meta.mode() & 0o7777 != mode
            || meta.len() != contents.len() as u64
        {
            return false;
        }
        if let Some(o) = self.owner
            && (meta.uid() != o.uid || o.gid.is_some_and(|g| g != meta.gid()))
        {
            return false;
        }
        fs::read(path).is_ok_and(|existing| existing == contents)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::testing::listing;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).expect("exists").permissions().mode() & 0o7777
    }

    #[test]
    fn writes_with_the_requested_mode_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        assert!(w.write("pgpass", b"h:5432:*:u:p\n", 0o600).expect("write"));
        assert!(
            w.write("pg_service.conf", b"[app]\n", 0o644)
                .expect("write")
        );
        assert_eq!(mode_of(&dir.path().join("pgpass")), 0o600);
        assert_eq!(mode_of(&dir.path().join("pg_service.conf")), 0o644);
        assert_eq!(listing(dir.path()), ["pg_service.conf", "pgpass"]);
    }

    #[test]
    fn unchanged_files_are_not_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        let p = dir.path().join("f");
        w.write("f", b"same", 0o644).expect("write");
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&p)
            .expect("open")
            .set_modified(old)
            .expect("set mtime");
        assert!(!w.write("f", b"same", 0o644).expect("write"));
        assert_eq!(
            fs::metadata(&p).expect("meta").modified().expect("mtime"),
            old
        );
        // A different mode alone is a change.
        assert!(w.write("f", b"same", 0o600).expect("write"));
        assert_eq!(mode_of(&p), 0o600);
    }

    #[test]
    fn replacement_is_a_new_inode_so_readers_never_see_a_torn_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        let p = dir.path().join("f");
        w.write("f", b"old", 0o644).expect("write");
        let reader = File::open(&p).expect("open");
        let ino = fs::metadata(&p).expect("meta").ino();
        w.write("f", b"new contents", 0o644).expect("write");
        assert_ne!(fs::metadata(&p).expect("meta").ino(), ino);
        // The reader that opened the old file still reads the old bytes in full.
        assert_eq!(io::read_to_string(reader).expect("read"), "old");
        assert_eq!(fs::read_to_string(&p).expect("read"), "new contents");
    }

    #[test]
    fn unwritable_out_dir_reports_the_path() {
        let err =
            Writer::new(Path::new("/proc/aurora-sidecar-test"), None).expect_err("not creatable");
        assert!(
            err.to_string().contains("/proc/aurora-sidecar-test"),
            "{err}"
        );
    }

    #[test]
    fn an_alias_is_the_same_file_under_a_second_name_renamed_last() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        // A symlink planted at the alias is replaced, not written through.
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").expect("victim");
        std::os::unix::fs::symlink(&victim, dir.path().join("marker")).expect("symlink");
        let changed = w
            .write_all_with_alias(
                [("a", &b"1"[..], 0o600)],
                ("status", b"{}", 0o644),
                "marker",
                Prestaged::default(),
            )
            .expect("write");
        assert_eq!(changed, ["a"]);
        let (s, m) = (
            fs::symlink_metadata(dir.path().join("status")).expect("status"),
            fs::symlink_metadata(dir.path().join("marker")).expect("marker"),
        );
        assert!(m.file_type().is_file());
        assert_eq!((s.ino(), s.nlink()), (m.ino(), 2), "one inode, two names");
        assert_eq!(mode_of(&dir.path().join("marker")), 0o644);
        assert_eq!(fs::read(&victim).expect("victim"), b"keep");
        // Replacing the first name leaves the alias with what it had.
        w.write("status", b"{\"later\":1}", 0o644).expect("rewrite");
        assert_eq!(fs::read(dir.path().join("marker")).expect("marker"), b"{}");
        assert_eq!(listing(dir.path()), ["a", "marker", "status", "victim"]);
    }

    #[test]
    fn a_prestaged_file_is_used_only_for_the_same_bytes_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        let ahead = || {
            w.prestage(vec![
                ("a", b"1".to_vec(), 0o600),
                ("b", b"2".to_vec(), 0o600),
            ])
            .expect("prestage")
        };
        let temp_inode = |name: &str| {
            listing(dir.path())
                .iter()
                .find(|n| n.starts_with(&format!(".{name}.")))
                .map(|n| fs::metadata(dir.path().join(n)).expect("temp").ino())
                .expect("a temporary file")
        };
        let prestaged = ahead();
        let a = temp_inode("a");
        // `a` as staged; `b` with other bytes: staged anew, the early one dropped.
        let changed = w
            .write_all_with_alias(
                [("a", &b"1"[..], 0o600), ("b", &b"3"[..], 0o600)],
                ("status", b"{}", 0o644),
                "marker",
                prestaged,
            )
            .expect("write");
        assert_eq!(changed, ["a", "b"]);
        let ino = |name: &str| fs::metadata(dir.path().join(name)).expect(name).ino();
        assert_eq!(ino("a"), a, "the prestaged file itself was renamed");
        // The early `b` is removed before the new one is created (its inode number may
        // come back): the bytes tell them apart.
        assert_eq!(fs::read(dir.path().join("b")).expect("b"), b"3");
        assert_eq!(listing(dir.path()), ["a", "b", "marker", "status"]);
        // A file already right is not staged ahead; one that is not, until dropped.
        let again = ahead();
        assert_eq!(again.files.len(), 1);
        assert_eq!(again.files[0].name, "b");
        drop(again);
        assert_eq!(listing(dir.path()), ["a", "b", "marker", "status"]);
    }

    #[test]
    fn a_file_prestaged_with_an_alias_is_used_only_with_the_same_alias() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        let ino = |name: &str| fs::metadata(dir.path().join(name)).expect(name).ino();
        let ahead = |alias| {
            let mut p = Prestaged::default();
            w.prestage_with_alias(&mut p, ("status", b"{}".to_vec(), 0o644), alias)
                .expect("prestage");
            let staged = listing(dir.path())
                .into_iter()
                .find(|n| n.starts_with(".status."))
                .expect("staged");
            (p, ino(&staged))
        };
        // Another alias: written anew, the staged pair removed (nothing named `other`).
        let (p, _) = ahead("other");
        w.write_all_with_alias([], ("status", b"{}", 0o644), "marker", p)
            .expect("write");
        assert_eq!(ino("status"), ino("marker"));
        assert_eq!(listing(dir.path()), ["marker", "status"]);
        // The same alias and bytes: the staged pair itself, under both names.
        let (p, staged) = ahead("marker");
        w.write_all_with_alias([], ("status", b"{}", 0o644), "marker", p)
            .expect("write");
        assert_eq!((ino("status"), ino("marker")), (staged, staged));
        assert_eq!(listing(dir.path()), ["marker", "status"]);
        // As a plain file of the set it does not match: it has a second link to place.
        let (mut p, _) = ahead("marker");
        assert!(p.take("status", b"{}", 0o644, None).is_none());
        drop(p);
        assert_eq!(listing(dir.path()), ["marker", "status"]);
    }

    #[test]
    fn a_set_that_cannot_be_written_in_full_replaces_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        w.write("a", b"old a", 0o644).expect("write");
        // A directory where the second file's final name should be: its staging works,
        // its rename cannot, and staging the third fails outright on an invalid name.
        let err = w
            .write_all([("a", &b"new a"[..], 0o644), ("b/c", &b"new c"[..], 0o644)])
            .expect_err("b/c cannot be staged");
        assert!(err.to_string().contains("b/c"), "{err}");
        assert_eq!(fs::read(dir.path().join("a")).expect("a"), b"old a");
        assert_eq!(listing(dir.path()), ["a"], "no temporary file left");
    }

    #[test]
    fn sweep_removes_only_this_writers_temporaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        for name in [".pgpass.Ab3dE9.tmp", ".status.json.zzzzzz.tmp"] {
            fs::write(dir.path().join(name), "partial").expect("plant");
        }
        for name in [".keep.tmp", "app.tmp", ".x.toolong1.tmp", "pgpass"] {
            fs::write(dir.path().join(name), "other").expect("plant");
        }
        assert_eq!(w.sweep_temporaries().expect("sweep"), 2);
        assert_eq!(
            listing(dir.path()),
            [".keep.tmp", ".x.toolong1.tmp", "app.tmp", "pgpass"]
        );
    }

    #[test]
    fn remove_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        w.write("ready", b"1\n", 0o644).expect("write");
        w.remove("ready").expect("remove");
        w.remove("ready").expect("remove again");
        assert!(!dir.path().join("ready").exists());
    }
}
