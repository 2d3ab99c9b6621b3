//! The out-dir: atomic publishing of the rendered files, used by `render`'s callers and
//! by `status` alike. A leaf: it imports nothing of the crate.
//!
//! Two schemes, one for each kind of file:
//! - **a set of files** (the credential files: `pgpass`, `pg_service.conf`, …) is published
//!   the way the kubelet publishes Secret and ConfigMap volumes: every version is written
//!   into a fresh hidden directory `..v.XXXXXX`, fsynced, and made current by replacing
//!   one symlink, `..data`, with a single `rename`. The visible names are symlinks
//!   (`pgpass` → `..data/pgpass`), made once. A reader never sees files of two versions
//!   side by side, even when the process is killed between two steps; the previous
//!   version's directory is removed after the swap;
//! - **a single file** (`status.json`, and `ready`, a second hard link to it) is replaced
//!   on its own: a temporary file in the out-dir, renamed over the name. It describes the
//!   running sidecar and is not fsynced: after a crash it may be stale or empty, which
//!   `health` reads as "not ready" (the safe side), and the next start publishes again.
//!
//! Invariants, for every file:
//! - a temporary file is created with its final mode and owner set *before* any byte is
//!   written: pgpass is 0600 from birth;
//! - a version of the set is fsynced, then swapped in, then the out-dir is fsynced, so
//!   after a crash the app sees the old version or the new one, never a torn file;
//! - a set whose every file already has the right bytes, mode and owner is not written
//!   again (no mtime churn, no inotify noise for apps that watch the directory);
//! - a failed write leaves nothing behind (tempfile removes its files and directories on
//!   drop), and what a killed run left is swept by the next one ([`Writer::sweep`]);
//! - a symlink planted at any name is replaced, never followed.

use std::fs::{self, File as FsFile, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

mod ahead;
mod sweep;
mod version;

pub use ahead::Ahead;
use version::is_version;

/// `--owner UID[:GID]`: who owns the rendered files (the app's user, so libpq accepts a
/// 0600 pgpass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: Option<u32>,
}

/// One file to publish: the renderers produce it, the [`Writer`] writes it.
#[derive(Clone, PartialEq, Eq)]
pub struct File {
    pub name: &'static str,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// The contents stay out: pgpass, the profile and `password` hold the password.
impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("name", &self.name)
            .field("contents", &format_args!("<{} bytes>", self.contents.len()))
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: check that --out-dir is a writable volume (and, with --owner, that the sidecar may chown)", path.display())]
pub struct WriteError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// The symlink whose target is the current version's directory.
pub const DATA_LINK: &str = "..data";
/// Temporary names are `.NAME.` + six random characters + this suffix.
const TEMP_SUFFIX: &str = ".tmp";

/// tempfile's six random characters.
fn is_random(s: &str) -> bool {
    s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A temporary name waiting for its rename. Dropping it removes the temporary.
struct Staged {
    tmp: tempfile::TempPath,
    path: PathBuf,
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

    /// Whether this process runs as root and another user may rename or replace what is
    /// in the out-dir (writable by group or others, without the sticky bit, like an
    /// emptyDir): the writes stay inside it, but the app may be shown someone else's files.
    pub fn exposed_to_other_users(&self) -> bool {
        let Ok(meta) = fs::metadata(&self.dir) else {
            return false;
        };
        let mode = meta.mode();
        rustix::process::geteuid().is_root() && mode & 0o022 != 0 && mode & 0o1000 == 0
    }

    /// An exclusive lock on the out-dir (flock on the directory itself), released on
    /// drop: two sidecars given one out-dir take turns sweeping and publishing, so one's
    /// start-up sweep never removes a version the other is about to swap in.
    fn lock(&self) -> Result<std::os::fd::OwnedFd, WriteError> {
        use rustix::fs::{FlockOperation, Mode, OFlags, flock, open};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir =
            open(&self.dir, flags, Mode::empty()).map_err(|e| self.error("open", "")(e.into()))?;
        flock(&dir, FlockOperation::LockExclusive).map_err(|e| self.error("lock", "")(e.into()))?;
        Ok(dir)
    }

    fn error(&self, op: &'static str, name: &str) -> impl FnOnce(io::Error) -> WriteError {
        let path = self.dir.join(name);
        move |source| WriteError { op, path, source }
    }

    /// Replaces a single file (not part of the set) atomically, but without making it
    /// durable: no fsync, of the file or the directory. For what describes the running
    /// process (`status.json`): after a crash it is stale or empty at worst, which reads as
    /// "not ready", and the next start replaces it. Returns whether the file changed.
    pub fn replace(&self, file: &File) -> Result<bool, WriteError> {
        // Under the lock: another sidecar's start-up sweep would take the temporary.
        let _lock = self.lock()?;
        if self.is_current(&self.dir, file) {
            return Ok(false);
        }
        let (staged, _) = self.stage_file(file, None, false)?;
        self.commit(vec![staged], false).map(|()| true)
    }

    /// Publishes `set` as the current version (see the module doc). Returns the names
    /// whose bytes, mode or owner changed; nothing is written when none did.
    pub fn publish(&self, set: &[File]) -> Result<Vec<&'static str>, WriteError> {
        self.publish_then(set, None, None)
    }

    /// [`Writer::publish`], then `last` under its own name and as `alias`, a second hard
    /// link to the same file (one write), renamed after the set: `status` publishes
    /// `status.json` and the `ready` marker this way, so the marker appears only once
    /// everything else is in place. One out-dir fsync for all of it; `last` itself is not
    /// fsynced ([`Writer::replace`] says why). A version written [`ahead`] for this very
    /// set is swapped in as it is.
    pub fn publish_with_marker(
        &self,
        set: &[File],
        last: &File,
        alias: &str,
        ahead: Option<Ahead>,
    ) -> Result<Vec<&'static str>, WriteError> {
        self.publish_then(set, Some((last, alias)), ahead)
    }

    fn publish_then(
        &self,
        set: &[File],
        last: Option<(&File, &str)>,
        ahead: Option<Ahead>,
    ) -> Result<Vec<&'static str>, WriteError> {
        let _lock = self.lock()?;
        let current = self.current_version();
        let changed: Vec<&'static str> = set
            .iter()
            .filter(|f| !current.as_ref().is_some_and(|v| self.is_current(v, f)))
            .map(|f| f.name)
            .collect();
        let (mut renames, version) = self.stage_version(set, !changed.is_empty(), ahead)?;
        // Only a new version or new links need the out-dir fsynced.
        let durable = !renames.is_empty();
        if let Some((file, alias)) = last {
            // Not fsynced: see `Writer::replace` (a status lost in a crash reads as "not
            // ready", which is safe, and the next start publishes again).
            let (first, second) = self.stage_file(file, Some(alias), false)?;
            renames.push(first);
            renames.extend(second);
        }
        // Kept from here on: once `..data` is renamed to it, it must outlive any later
        // failure (a status rename, the directory fsync).
        let version = version.map(tempfile::TempDir::keep);
        if let Err(e) = self.commit(renames, durable) {
            // A version that did not become current goes; one that did stays.
            if let Some(v) = version.filter(|v| self.current_version().as_ref() != Some(v)) {
                let _ = fs::remove_dir_all(v);
            }
            return Err(e);
        }
        if version.is_some() {
            // The previous version and any link to a name this set no longer has are
            // removed; whatever a failure here leaves, the next start sweeps.
            if let Some(old) = current {
                let _ = fs::remove_dir_all(old);
            }
            self.remove_links_outside(set);
        }
        Ok(changed)
    }

    /// Stages what makes `set` current: when a file `changed`, a version directory (the one
    /// written ahead for exactly this set if it is still whole: another sidecar's sweep may
    /// have removed it; else dropped, and written anew) and `..data` pointing at it; and
    /// every per-file link not in place yet.
    fn stage_version(
        &self,
        set: &[File],
        changed: bool,
        ahead: Option<Ahead>,
    ) -> Result<(Vec<Staged>, Option<tempfile::TempDir>), WriteError> {
        let mut renames = Vec::new();
        let mut version = None;
        // Joined in every case, so nothing it wrote outlives the publish.
        let ahead = ahead
            .and_then(|a| a.take(set))
            .filter(|dir| set.iter().all(|f| self.is_current(dir.path(), f)));
        if changed {
            let dir = match ahead {
                Some(dir) => dir,
                None => self.write_version(set)?,
            };
            renames.push(self.stage_symlink(DATA_LINK, Path::new(&dir_name(dir.path())))?);
            version = Some(dir);
        }
        for f in set {
            if !self.links_into_data(f.name) {
                renames.push(self.stage_symlink(f.name, &Path::new(DATA_LINK).join(f.name))?);
            }
        }
        Ok((renames, version))
    }

    /// Mode (exactly: the umask may have narrowed it at creation), owner, then the bytes,
    /// then (when `durable`) fsync.
    fn fill(&self, file: &mut FsFile, f: &File, durable: bool) -> Result<(), WriteError> {
        file.set_permissions(Permissions::from_mode(f.mode))
            .map_err(self.error("set the mode of", f.name))?;
        if let Some(o) = self.owner {
            std::os::unix::fs::fchown(&*file, Some(o.uid), o.gid)
                .map_err(self.error("chown", f.name))?;
        }
        file.write_all(&f.contents)
            .map_err(self.error("write", f.name))?;
        if durable {
            file.sync_all().map_err(self.error("fsync", f.name))?;
        }
        Ok(())
    }

    /// The temporary file for a single file (fsynced when `durable`), and with `alias` a
    /// second link to it.
    fn stage_file(
        &self,
        f: &File,
        alias: Option<&str>,
        durable: bool,
    ) -> Result<(Staged, Option<Staged>), WriteError> {
        // O_CREAT|O_EXCL on a random name: a symlink planted at a temporary name is never
        // followed, and rename replaces a planted symlink at the final name itself.
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", f.name))
            .suffix(TEMP_SUFFIX)
            .permissions(Permissions::from_mode(f.mode))
            .tempfile_in(&self.dir)
            .map_err(self.error("create a temporary file for", f.name))?;
        // Linked while this process still owns the file: after the chown to --owner, a
        // sidecar dropped to another uid may not link it (fs.protected_hardlinks).
        let second = alias
            .map(|a| self.stage_name(a, |link| fs::hard_link(tmp.path(), link)))
            .transpose()?;
        self.fill(tmp.as_file_mut(), f, durable)?;
        let first = Staged {
            tmp: tmp.into_temp_path(),
            path: self.dir.join(f.name),
        };
        Ok((first, second))
    }

    /// A symlink to `target` at a temporary name, to be renamed to `name`.
    fn stage_symlink(&self, name: &str, target: &Path) -> Result<Staged, WriteError> {
        self.stage_name(name, |link| std::os::unix::fs::symlink(target, link))
    }

    /// Makes something (a link) at a fresh temporary name for `name`. tempfile picks the
    /// random name and retries on EEXIST: link(2) and symlink(2) never follow a symlink
    /// planted there.
    fn stage_name(
        &self,
        name: &str,
        make: impl Fn(&Path) -> io::Result<()>,
    ) -> Result<Staged, WriteError> {
        let made = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(TEMP_SUFFIX)
            .make_in(&self.dir, |p| make(p))
            .map_err(self.error("link a temporary name for", name))?;
        Ok(Staged {
            tmp: made.into_temp_path(),
            path: self.dir.join(name),
        })
    }

    /// Renames staged names into place in order, then, when `durable`, fsyncs the out-dir
    /// once.
    fn commit(&self, staged: Vec<Staged>, durable: bool) -> Result<(), WriteError> {
        for Staged { tmp, path } in staged {
            tmp.persist(&path).map_err(|e| WriteError {
                op: "rename into place",
                path: path.clone(),
                source: e.error,
            })?;
        }
        if durable { self.sync_dir() } else { Ok(()) }
    }

    /// The current version's directory: where `..data` points, when that is one of ours
    /// (a bare `..v.XXXXXX` name that is a real directory).
    fn current_version(&self) -> Option<PathBuf> {
        let target = fs::read_link(self.dir.join(DATA_LINK)).ok()?;
        let name = target.to_str().filter(|n| is_version(n))?;
        let path = self.dir.join(name);
        fs::symlink_metadata(&path)
            .is_ok_and(|m| m.is_dir())
            .then_some(path)
    }

    /// Whether the visible `name` is already our symlink into `..data`.
    fn links_into_data(&self, name: &str) -> bool {
        fs::read_link(self.dir.join(name)).is_ok_and(|t| t == Path::new(DATA_LINK).join(name))
    }

    /// Removes `name` if present. Not fsynced: a crash can only bring back what the next
    /// start removes again (the stale `ready`), and the next publish fsyncs the directory.
    pub fn remove(&self, name: &str) -> Result<(), WriteError> {
        match fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(self.error("remove", name)(e)),
            _ => Ok(()),
        }
    }

    fn sync_dir(&self) -> Result<(), WriteError> {
        FsFile::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(self.error("fsync the directory", ""))
    }

    /// Whether `dir/NAME` is a regular file (not followed if a symlink) with exactly these
    /// bytes, mode and owner.
    fn is_current(&self, dir: &Path, f: &File) -> bool {
        let Ok((meta, existing)) = read_regular(&dir.join(f.name), f.contents.len() as u64) else {
            return false;
        };
        let owner_ok = self
            .owner
            .is_none_or(|o| meta.uid() == o.uid && o.gid.is_none_or(|g| g == meta.gid()));
        meta.mode() & 0o7777 == f.mode && owner_ok && existing == f.contents
    }
}

/// Reads the regular file at `path`, of at most `max` bytes, without following a symlink
/// at that name or blocking on a FIFO (`O_NOFOLLOW | O_NONBLOCK`; `fstat` of what was
/// opened says what it is). A symlink, FIFO, device, directory or larger file is an error:
/// whoever else can write the out-dir cannot make a reader hang or fill its memory.
pub fn read_regular(path: &Path, max: u64) -> io::Result<(fs::Metadata, Vec<u8>)> {
    use rustix::fs::OFlags;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.len() > max {
        return Err(io::Error::other(format!("larger than {max} bytes")));
    }
    let mut bytes = Vec::new();
    // Bounded again while reading: the file may grow after the fstat.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::other(format!("larger than {max} bytes")));
    }
    Ok((meta, bytes))
}

fn dir_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::testing::listing;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).expect("exists").permissions().mode() & 0o7777
    }

    fn file(name: &'static str, contents: &[u8], mode: u32) -> File {
        File {
            name,
            contents: contents.to_vec(),
            mode,
        }
    }

    /// The names in `dir`, sorted, with the version directory's random part as `XXXXXX`.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = listing(dir)
            .into_iter()
            .map(|n| {
                if is_version(&n) {
                    "..v.XXXXXX".into()
                } else {
                    n
                }
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_with_the_requested_mode_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        let set = [
            file("pgpass", b"h:5432:*:u:p\n", 0o600),
            file("pg_service.conf", b"[app]\n", 0o644),
        ];
        assert_eq!(
            w.publish(&set).expect("publish"),
            ["pgpass", "pg_service.conf"]
        );
        assert!(
            w.replace(&file("status.json", b"{}", 0o644))
                .expect("write")
        );
        assert_eq!(mode_of(&dir.path().join("pgpass")), 0o600);
        assert_eq!(mode_of(&dir.path().join("pg_service.conf")), 0o644);
        assert_eq!(mode_of(&dir.path().join("status.json")), 0o644);
        assert_eq!(
            names(dir.path()),
            [
                "..data",
                "..v.XXXXXX",
                "pg_service.conf",
                "pgpass",
                "status.json"
            ]
        );
        assert_eq!(
            fs::read_link(dir.path().join("pgpass")).expect("a symlink"),
            Path::new("..data/pgpass")
        );
    }

    #[test]
    fn unchanged_files_are_not_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        let p = dir.path().join("f");
        let set = |mode| [file("f", b"same", mode), file("g", b"other", 0o644)];
        w.publish(&set(0o644)).expect("publish");
        let old = SystemTime::now() - Duration::from_secs(3600);
        FsFile::options()
            .write(true)
            .open(&p)
            .expect("open")
            .set_modified(old)
            .expect("set mtime");
        let version = fs::read_link(dir.path().join(DATA_LINK)).expect("..data");
        assert!(w.publish(&set(0o644)).expect("publish").is_empty());
        assert_eq!(
            fs::metadata(&p).expect("meta").modified().expect("mtime"),
            old
        );
        assert_eq!(
            fs::read_link(dir.path().join(DATA_LINK)).expect("..data"),
            version
        );
        // A different mode alone is a change, and only that file is named.
        assert_eq!(w.publish(&set(0o600)).expect("publish"), ["f"]);
        assert_eq!(mode_of(&p), 0o600);
        // A single file likewise.
        let single = file("s", b"x", 0o644);
        assert!(w.replace(&single).expect("write"));
        assert!(!w.replace(&single).expect("write"));
    }

    #[test]
    fn replacement_is_a_new_inode_so_readers_never_see_a_torn_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        let p = dir.path().join("f");
        w.publish(&[file("f", b"old", 0o644)]).expect("publish");
        let reader = FsFile::open(&p).expect("open");
        let ino = fs::metadata(&p).expect("meta").ino();
        w.publish(&[file("f", b"new contents", 0o644)])
            .expect("publish");
        assert_ne!(fs::metadata(&p).expect("meta").ino(), ino);
        // The reader that opened the old file still reads the old bytes in full.
        assert_eq!(io::read_to_string(reader).expect("read"), "old");
        assert_eq!(fs::read_to_string(&p).expect("read"), "new contents");
        // The old version's directory is gone; one version is left.
        assert_eq!(names(dir.path()), ["..data", "..v.XXXXXX", "f"]);
    }

    #[test]
    fn a_new_version_replaces_every_file_of_the_set_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        w.publish(&[file("a", b"a1", 0o644), file("b", b"b1", 0o600)])
            .expect("publish");
        // What a reader resolving `..data` once sees: both files of one version.
        let before = fs::read_link(dir.path().join(DATA_LINK)).expect("..data");
        w.publish(&[file("a", b"a2", 0o644), file("b", b"b2", 0o600)])
            .expect("publish");
        let after = fs::read_link(dir.path().join(DATA_LINK)).expect("..data");
        assert_ne!(before, after);
        let read = |name: &str| fs::read(dir.path().join(&after).join(name)).expect(name);
        assert_eq!((read("a"), read("b")), (b"a2".to_vec(), b"b2".to_vec()));
        assert!(!dir.path().join(before).exists(), "the old version removed");
    }

    #[test]
    fn a_name_dropped_from_the_set_loses_its_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        w.publish(&[file("a", b"1", 0o644), file("password", b"t", 0o600)])
            .expect("publish");
        // A symlink of someone else's pointing elsewhere is not ours to remove.
        std::os::unix::fs::symlink("elsewhere", dir.path().join("theirs")).expect("symlink");
        w.publish(&[file("a", b"2", 0o644)]).expect("publish");
        assert_eq!(names(dir.path()), ["..data", "..v.XXXXXX", "a", "theirs"]);
    }

    #[test]
    fn files_of_the_earlier_single_file_layout_become_links() {
        // What an earlier release left: regular files at the visible names.
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("pgpass"), "h:1:*:u:old\n").expect("old pgpass");
        let w = Writer::new(dir.path(), None).expect("writer");
        let changed = w
            .publish(&[file("pgpass", b"h:1:*:u:old\n", 0o600)])
            .expect("publish");
        assert_eq!(changed, ["pgpass"], "not in a version yet: published anew");
        assert_eq!(
            fs::read_link(dir.path().join("pgpass")).expect("a symlink now"),
            Path::new("..data/pgpass")
        );
        assert_eq!(mode_of(&dir.path().join("pgpass")), 0o600);
    }

    #[test]
    fn a_planted_data_link_is_replaced_never_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("elsewhere");
        fs::write(elsewhere.path().join("pgpass"), "h:1:*:u:p\n").expect("decoy");
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join(DATA_LINK)).expect("plant");
        let w = Writer::new(dir.path(), None).expect("writer");
        // The decoy has the very bytes to publish: it must not count as current.
        let changed = w
            .publish(&[file("pgpass", b"h:1:*:u:p\n", 0o600)])
            .expect("publish");
        assert_eq!(changed, ["pgpass"]);
        let target = fs::read_link(dir.path().join(DATA_LINK)).expect("..data");
        assert!(is_version(&target.to_string_lossy()), "{target:?}");
        assert_eq!(listing(elsewhere.path()), ["pgpass"], "the decoy untouched");
    }

    #[test]
    fn read_regular_refuses_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = |n: &str| dir.path().join(n);
        fs::write(p("small"), "{}").expect("small");
        assert_eq!(read_regular(&p("small"), 2).expect("read").1, b"{}");
        assert!(read_regular(&p("small"), 1).is_err(), "over the bound");
        std::os::unix::fs::symlink("/dev/zero", p("zero")).expect("symlink");
        std::os::unix::fs::symlink(p("small"), p("link")).expect("symlink");
        let fifo = std::process::Command::new("mkfifo")
            .arg(p("fifo"))
            .status()
            .expect("mkfifo runs");
        assert!(fifo.success());
        let started = std::time::Instant::now();
        for name in ["zero", "link", "fifo", "missing"] {
            assert!(read_regular(&p(name), 65_536).is_err(), "{name}");
        }
        assert!(read_regular(dir.path(), 65_536).is_err(), "a directory");
        assert!(started.elapsed() < Duration::from_secs(1), "nothing blocks");
    }

    #[test]
    fn a_version_written_ahead_is_swapped_in_only_for_the_same_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        let set = |p: &[u8]| {
            vec![
                file("pgpass", p, 0o600),
                file("pg_service.conf", b"[app]", 0o644),
            ]
        };
        let versions = || -> Vec<String> {
            listing(dir.path())
                .into_iter()
                .filter(|n| is_version(n))
                .collect()
        };
        // The same set: the directory written ahead is the one made current.
        let ahead = Ahead::start(&w, || Some(set(b"one"))).expect("a thread");
        let started = std::time::Instant::now();
        while versions().is_empty() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let written_ahead = versions();
        let status = file("status", b"{}", 0o644);
        let changed = w
            .publish_with_marker(&set(b"one"), &status, "marker", Some(ahead))
            .expect("publish");
        assert_eq!(changed, ["pgpass", "pg_service.conf"]);
        assert_eq!(versions(), written_ahead);
        assert_eq!(
            fs::read_link(dir.path().join(DATA_LINK)).expect("..data"),
            Path::new(&written_ahead[0])
        );
        // Another set than the one written ahead (the secret changed during the wait):
        // that one is removed, the new one written.
        let fresh = tempfile::tempdir().expect("tempdir");
        let w2 = Writer::new(fresh.path(), None).expect("writer");
        let ahead = Ahead::start(&w2, || Some(set(b"stale"))).expect("a thread");
        w2.publish_with_marker(&set(b"two"), &status, "marker", Some(ahead))
            .expect("publish");
        let versions2: Vec<String> = listing(fresh.path())
            .into_iter()
            .filter(|n| is_version(n))
            .collect();
        assert_eq!(versions2.len(), 1, "{:?}", listing(fresh.path()));
        assert_eq!(
            fs::read(fresh.path().join("pgpass")).expect("pgpass"),
            b"two"
        );
        // Once a version exists, nothing is written ahead: a later start usually finds
        // its files unchanged, and one that does not writes them at the publish.
        assert!(Ahead::start(&w, || Some(set(b"three"))).is_none());
    }

    #[test]
    fn a_failure_after_the_swap_keeps_the_version_it_made_current() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        // A directory at the marker's name: the version and status.json are renamed into
        // place, then renaming the marker fails.
        fs::create_dir(dir.path().join("marker")).expect("plant");
        fs::write(dir.path().join("marker/keep"), "x").expect("plant");
        let err = w
            .publish_with_marker(
                &[file("pgpass", b"h:1:*:u:p\n", 0o600)],
                &file("status", b"{}", 0o644),
                "marker",
                None,
            )
            .expect_err("the marker cannot replace a directory");
        assert!(err.to_string().contains("marker"), "{err}");
        assert_eq!(
            fs::read(dir.path().join("pgpass")).expect("the current version is intact"),
            b"h:1:*:u:p\n"
        );
        // A set that never became current is removed.
        let w2_dir = tempfile::tempdir().expect("tempdir");
        let w2 = Writer::new(w2_dir.path(), None).expect("writer");
        fs::create_dir(w2_dir.path().join(DATA_LINK)).expect("a directory at ..data");
        fs::write(w2_dir.path().join("..data/x"), "x").expect("plant");
        w2.publish(&[file("pgpass", b"p", 0o600)])
            .expect_err("..data cannot replace a directory");
        assert_eq!(names(w2_dir.path()), ["..data"], "no version left behind");
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
            .publish_with_marker(
                &[file("a", b"1", 0o600)],
                &file("status", b"{}", 0o644),
                "marker",
                None,
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
        w.replace(&file("status", b"{\"later\":1}", 0o644))
            .expect("rewrite");
        assert_eq!(fs::read(dir.path().join("marker")).expect("marker"), b"{}");
        assert_eq!(
            names(dir.path()),
            ["..data", "..v.XXXXXX", "a", "marker", "status", "victim"]
        );
    }

    #[test]
    fn a_set_that_cannot_be_written_in_full_replaces_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        w.publish(&[file("a", b"old a", 0o644)]).expect("publish");
        // Staging the second file fails outright on an invalid name.
        let err = w
            .publish(&[file("a", b"new a", 0o644), file("b/c", b"new c", 0o644)])
            .expect_err("b/c cannot be staged");
        assert!(err.to_string().contains("b/c"), "{err}");
        assert_eq!(fs::read(dir.path().join("a")).expect("a"), b"old a");
        assert_eq!(
            names(dir.path()),
            ["..data", "..v.XXXXXX", "a"],
            "no temporary file or version left"
        );
    }

    #[test]
    fn sweep_removes_only_this_writers_temporaries_and_stale_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        w.publish(&[file("a", b"1", 0o644)]).expect("publish");
        for name in [".pgpass.Ab3dE9.tmp", ".status.json.zzzzzz.tmp"] {
            fs::write(dir.path().join(name), "partial").expect("plant");
        }
        // A directory at a temporary name, and a version a killed run staged.
        fs::create_dir_all(dir.path().join(".pgpass.DIR123.tmp/inside")).expect("plant dir");
        fs::create_dir(dir.path().join("..v.Stale1")).expect("plant version");
        fs::write(dir.path().join("..v.Stale1/pgpass"), "old").expect("plant");
        for name in [
            ".keep.tmp",
            "app.tmp",
            ".x.toolong1.tmp",
            "pgpass",
            "..v.other",
        ] {
            fs::write(dir.path().join(name), "other").expect("plant");
        }
        assert_eq!(w.sweep().expect("sweep"), 4);
        assert_eq!(
            names(dir.path()),
            [
                "..data",
                "..v.XXXXXX",
                "..v.other",
                ".keep.tmp",
                ".x.toolong1.tmp",
                "a",
                "app.tmp",
                "pgpass"
            ]
        );
        assert_eq!(fs::read(dir.path().join("a")).expect("a"), b"1");
    }

    #[test]
    fn remove_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Writer::new(dir.path(), None).expect("writer");
        w.replace(&file("ready", b"1\n", 0o644)).expect("write");
        w.remove("ready").expect("remove");
        w.remove("ready").expect("remove again");
        assert!(!dir.path().join("ready").exists());
    }
}
