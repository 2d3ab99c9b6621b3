//! doctor's out-dir step: a probe file created and removed, and who will own pgpass.

use std::path::Path;

use crate::class::ErrorClass;
use crate::config::Config;

use super::report::Outcome;

/// Whether the out-dir (or, when it does not exist yet, its nearest existing parent) can
/// be written: a temporary file is created and removed there.
pub(super) async fn out_dir(config: &Config) -> (Outcome, Option<()>) {
    let dir = &config.out_dir;
    let probe_in = dir
        .ancestors()
        .find(|p| p.is_dir())
        .unwrap_or(Path::new("/"));
    if let Err(e) = tempfile::Builder::new()
        .prefix(".doctor.")
        .tempfile_in(probe_in)
    {
        return (
            Outcome::Fail(ErrorClass::OutDir, format!("cannot write in {}: {e}", probe_in.display()), Some("mount a writable volume at --out-dir (read-write in the sidecar, read-only in the app)".into())),
            None,
        );
    }
    let free = rustix::fs::statvfs(probe_in)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize) / 1024)
        .unwrap_or(0);
    let mut d = format!(
        "{} writable{}; {free} KiB free",
        dir.display(),
        if probe_in == dir {
            ""
        } else {
            " (its parent; it will be created)"
        }
    );
    let uid = rustix::process::geteuid().as_raw();
    let owner = match config.owner {
        Some(o) => format!("; pgpass will belong to uid {} (--owner)", o.uid),
        None => format!(
            "; pgpass will belong to uid {uid}: the app must run as it to read pgpass (0600)"
        ),
    };
    d.push_str(&owner);
    if config.owner.is_none() && uid == 0 {
        return (Outcome::Warn(d, "pgpass will belong to root: an app running as another uid cannot read it; pass --owner with the app's uid".into()), Some(()));
    }
    (Outcome::Ok(d), Some(()))
}
