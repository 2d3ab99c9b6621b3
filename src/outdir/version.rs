//! Version directories of the credential set (`..v.XXXXXX`): their names and how one is
//! written. Whoever else can write the out-dir may swap a fresh directory for a symlink
//! at any moment, so after `mkdir` nothing is done by path (see [`Writer::write_version`]).

use std::fs::{self, File as FsFile, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::{File, WriteError, Writer, dir_name, is_random};

/// Version directories are this prefix + six random characters.
const VERSION_PREFIX: &str = "..v.";

/// Whether `name` is a version directory's name.
pub(super) fn is_version(name: &str) -> bool {
    name.strip_prefix(VERSION_PREFIX).is_some_and(is_random)
}

impl Writer {
    /// A new version directory holding `set`, every file and the directory fsynced.
    ///
    /// Whoever else can write the out-dir (an emptyDir is 0777) may swap the fresh
    /// directory for a symlink at any moment, so after `mkdir` nothing is done by path:
    /// the directory is opened once with `O_NOFOLLOW` and must be ours (this uid), and its
    /// mode, its files (`O_CREAT|O_EXCL|O_NOFOLLOW`) and its
    /// fsync go through that descriptor. At the end the name must still be that very
    /// directory, or the version is refused.
    pub(super) fn write_version(&self, set: &[File]) -> Result<tempfile::TempDir, WriteError> {
        use rustix::fs::{Mode, OFlags, fchmod, fstat, openat};
        let dir = tempfile::Builder::new()
            .prefix(VERSION_PREFIX)
            .suffix("")
            // Private until it is whole; opened up through the descriptor below.
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(&self.dir)
            .map_err(self.error("create a version directory in", ""))?;
        let name = dir_name(dir.path());
        let failed = |op| {
            let err = self.error(op, &name);
            move |e: rustix::io::Errno| err(e.into())
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(dir.path(), flags, Mode::empty()).map_err(failed("open"))?;
        let made = fstat(&fd).map_err(failed("stat"))?;
        if made.st_uid != rustix::process::geteuid().as_raw() {
            return Err(self.error("write", &name)(io::Error::other(
                "the new version directory was replaced while it was written (another user can write the out-dir)",
            )));
        }
        // Readable by the app's user, whatever it is; each file's own mode guards it.
        fchmod(&fd, Mode::from_raw_mode(0o755)).map_err(failed("set the mode of"))?;
        for f in set {
            let create = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
            let file = openat(
                &fd,
                f.name,
                create | OFlags::CLOEXEC,
                Mode::from_raw_mode(f.mode),
            )
            .map_err(|e| self.error("create", f.name)(e.into()))?;
            self.fill(&mut FsFile::from(file), f, true)?;
        }
        rustix::fs::fsync(&fd).map_err(failed("fsync"))?;
        let now = fs::symlink_metadata(dir.path()).map_err(self.error("stat", &name))?;
        if now.dev() != made.st_dev || now.ino() != made.st_ino {
            return Err(self.error("write", &name)(io::Error::other(
                "the version directory was replaced while it was written (another user can write the out-dir)",
            )));
        }
        Ok(dir)
    }
}
