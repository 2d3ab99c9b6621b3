//! `exec`'s process handling: finding the program as `execvp` would, and replacing this
//! process with it. A leaf: errors are plain `io::Error`s whose kind tells a shell's exit
//! code apart (NotFound → 127, anything else → 126; decided in `error`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// `PATH` lookup as `execvp` does it; a name with a `/` is taken as a path. `path` is the
/// value of `PATH` (a parameter for tests).
pub fn find_program(program: &OsStr, path: Option<&OsStr>) -> io::Result<PathBuf> {
    let executable =
        |p: &Path| std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let not_executable =
        || io::Error::new(io::ErrorKind::PermissionDenied, "not an executable file");
    let not_found = || io::Error::new(io::ErrorKind::NotFound, "command not found");
    if program.as_bytes().contains(&b'/') {
        let p = PathBuf::from(program);
        return match executable(&p) {
            Ok(true) => Ok(p),
            Ok(false) => Err(not_executable()),
            Err(_) => Err(not_found()),
        };
    }
    let mut found_non_exec = false;
    for dir in std::env::split_paths(path.unwrap_or_default()) {
        let candidate = dir.join(program);
        match executable(&candidate) {
            Ok(true) => return Ok(candidate),
            Ok(false) => found_non_exec = true,
            Err(_) => {}
        }
    }
    Err(if found_non_exec {
        not_executable()
    } else {
        not_found()
    })
}

/// Replaces this process with `path`, `arg0` as its name, `vars` added to the
/// environment and `remove` taken out of it. Only returns on failure.
pub fn replace_process(
    path: &Path,
    arg0: &OsStr,
    args: &[OsString],
    vars: Vec<(&'static str, String)>,
    remove: &[&str],
) -> io::Error {
    let mut command = std::process::Command::new(path);
    for name in remove {
        command.env_remove(name);
    }
    command.arg0(arg0).args(args).envs(vars).exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_follows_path_and_tells_missing_from_not_executable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let plain = dir.path().join("data");
        std::fs::write(&plain, "x").expect("write");
        let path = Some(dir.path().as_os_str());
        assert_eq!(find_program(OsStr::new("tool"), path).expect("found"), exe);
        let kind = |p: &str| find_program(OsStr::new(p), path).expect_err(p).kind();
        assert_eq!(kind("data"), io::ErrorKind::PermissionDenied);
        assert_eq!(kind("nope"), io::ErrorKind::NotFound);
        assert_eq!(
            find_program(plain.as_os_str(), None)
                .expect_err("plain")
                .kind(),
            io::ErrorKind::PermissionDenied
        );
    }
}
