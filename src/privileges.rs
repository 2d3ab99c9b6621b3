//! `--drop-to UID[:GID]`: started as root, become an ordinary user at once, keeping only
//! `CAP_CHOWN` when `--owner` needs it. A leaf.
//!
//! Why: libpq only reads a `pgpass` that its own user owns with mode 0600, so when the app
//! runs under a different uid than the sidecar, somebody must `chown` the rendered files.
//! A non-root container cannot hold `CAP_CHOWN` in Docker or ECS (capabilities added to a
//! non-root container never become effective), so the sidecar starts as root and drops
//! to a non-root uid before it reads a secret or opens a socket; what remains is
//! `CAP_CHOWN` alone (or nothing without `--owner`), and it is lost again at `exec`.
//!
//! Invariant: this runs before the async runtime exists. The uid and capability calls are
//! per-thread on Linux, so they must happen while the process has one thread.

use std::fmt;

use rustix::process::{Gid, Uid, getuid};
use rustix::thread::{
    CapabilitySet, CapabilitySets, set_capabilities, set_keep_capabilities, set_thread_groups,
    set_thread_res_gid, set_thread_res_uid,
};

/// Marks the process non-dumpable (`PR_SET_DUMPABLE` 0): no core dump holds the secret,
/// and `/proc/<pid>/environ` (where `DB_SECRET` arrives) and `mem` are closed to other
/// processes of the same uid. `exec`'s child is dumpable again: the kernel resets the
/// flag at execve.
pub fn no_dumps() -> std::io::Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(std::io::Error::from)
}

/// The user to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "--drop-to {target} needs the sidecar to start as root (it runs as uid {uid}); drop the flag, or start the container as user 0"
    )]
    NotRoot { target: RunAs, uid: u32 },
    #[error("--drop-to {target}: uid and gid must not be 0 (that would not drop anything)")]
    ToRoot { target: RunAs },
    #[error("--drop-to {target}: {step} failed")]
    Syscall {
        target: RunAs,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Becomes `target` for good (real, effective and saved ids; no supplementary groups).
/// With `keep_chown`, `CAP_CHOWN` stays effective so `--owner` can hand files to the app's
/// uid; every other capability is gone.
pub fn drop_to(target: RunAs, keep_chown: bool) -> Result<(), PrivilegeError> {
    let uid = getuid().as_raw();
    if uid != 0 {
        return Err(PrivilegeError::NotRoot { target, uid });
    }
    if target.uid == 0 || target.gid == 0 {
        return Err(PrivilegeError::ToRoot { target });
    }
    let step = |step: &'static str| {
        move |e: rustix::io::Errno| PrivilegeError::Syscall {
            target,
            step,
            source: e.into(),
        }
    };
    // Without this, setresuid away from 0 clears the permitted set too, and CAP_CHOWN
    // could not be kept.
    set_keep_capabilities(keep_chown).map_err(step("prctl(PR_SET_KEEPCAPS)"))?;
    let gid = Gid::from_raw(target.gid);
    set_thread_groups(&[gid]).map_err(step("setgroups"))?;
    set_thread_res_gid(gid, gid, gid).map_err(step("setresgid"))?;
    let uid = Uid::from_raw(target.uid);
    set_thread_res_uid(uid, uid, uid).map_err(step("setresuid"))?;
    let keep = if keep_chown {
        CapabilitySet::CHOWN
    } else {
        CapabilitySet::empty()
    };
    set_capabilities(
        None,
        CapabilitySets {
            effective: keep,
            permitted: keep,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(step("capset"))?;
    if keep_chown {
        set_keep_capabilities(false).map_err(step("prctl(PR_SET_KEEPCAPS)"))?;
    }
    // setresuid resets "dumpable" to fs.suid_dumpable; where that is 1 the dropped process
    // would be dumpable again, its environment readable by its new uid.
    no_dumps().map_err(|e| PrivilegeError::Syscall {
        target,
        step: "prctl(PR_SET_DUMPABLE)",
        source: e,
    })?;
    Ok(())
}
