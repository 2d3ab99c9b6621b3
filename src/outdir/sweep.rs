//! Housekeeping of the out-dir: what a killed run left behind (temporary names, version
//! directories `..data` does not point to) and links an earlier set had that this one has
//! not. Nothing else is ever touched.

use std::fs;
use std::io;

use super::version::is_version;
use super::{DATA_LINK, File, TEMP_SUFFIX, WriteError, Writer, is_random};

/// Whether `name` follows the temporary-file scheme of [`Writer`].
fn is_temporary(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(TEMP_SUFFIX) else {
        return false;
    };
    let Some((head, random)) = stem.rsplit_once('.') else {
        return false;
    };
    head.len() > 1 && head.starts_with('.') && is_random(random)
}

impl Writer {
    /// Removes what a killed run left behind: temporary names (`.NAME.XXXXXX.tmp`) and
    /// version directories `..data` does not point to; nothing else is touched. Returns
    /// how many were removed.
    pub fn sweep(&self) -> Result<usize, WriteError> {
        let _lock = self.lock()?;
        let entries = fs::read_dir(&self.dir).map_err(self.error("list", ""))?;
        let current = self.current_version();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if !(is_temporary(name) || is_version(name) && Some(&path) != current.as_ref()) {
                continue;
            }
            // Never followed: a symlink is removed itself, a directory with what is in it.
            let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            let result = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match result {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Another sidecar on this out-dir is filling it (a version written ahead
                // outside the lock): left for it, which checks it is whole before use.
                Err(e) if is_dir && e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
                Err(source) => return Err(self.error("remove", name)(source)),
            }
        }
        Ok(removed)
    }

    /// Removes visible symlinks into `..data` for names `set` does not have (the
    /// `password` file when IAM authentication was turned off): they would dangle.
    pub(super) fn remove_links_outside(&self, set: &[File]) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name != DATA_LINK
                && !set.iter().any(|f| f.name == name)
                && self.links_into_data(name)
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}
