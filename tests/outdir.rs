//! The out-dir under faults: missing, read-only and full file systems (real tmpfs mounts),
//! symlinks planted where the sidecar writes, any umask, a pgpass owned by someone else.
//! Mounting and chown need root, as CI has; a non-root run fails with that reason.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

const CREDENTIAL_FILES: [&str; 3] = ["pgpass", "pg_service.conf", "application.profile"];

/// A tmpfs of `kib` KiB mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(kib: u32) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(ok.success(), "mount tmpfs");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, opts: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(self.path())
            .status()
            .expect("mount runs");
        assert!(ok.success(), "remount {opts}");
    }

    /// Writes a filler file until the file system is full, then gives back `spare` pages.
    fn fill(&self, spare_pages: u64) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = fs::File::create(&path).expect("filler");
        let page = [0u8; 4096];
        while f.write_all(&page).is_ok() {}
        let len = fs::metadata(&path).expect("filler").len();
        f.set_len((len / 4096).saturating_sub(spare_pages) * 4096)
            .expect("truncate filler");
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn snapshot(out: &Path) -> Vec<Option<Vec<u8>>> {
    CREDENTIAL_FILES
        .iter()
        .map(|f| fs::read(out.join(f)).ok())
        .collect()
}

fn once(out: &Path, secret: &str, extra: &[&str]) -> Output {
    sidecar()
        .args(["once", "--wait-timeout", "30s"])
        .args(extra)
        .arg("--out-dir")
        .arg(out)
        .env("AURORA_SIDECAR_LOG_FORMAT", "text")
        .env("DB_SECRET", secret)
        .output()
        .expect("runs")
}

fn role(password: &str) -> (String, String) {
    let user = unique("od");
    shared_pg().create_role(&user, password, true);
    let db = format!("{user}_db");
    (user, db)
}

#[test]
fn an_out_dir_that_cannot_be_created_exits_73_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a-file");
    fs::write(&file, "x").expect("file");
    let out = file.join("out");
    let o = once(&out, &secret_json("127.0.0.1", 1, "u", "p", "d"), &[]);
    assert_exit(&o, 73);
    assert!(
        stderr(&o).contains(&out.display().to_string()),
        "{}",
        stderr(&o)
    );
    // A missing out-dir under a writable parent is created, as an ECS bind mount is.
    let (user, db) = role("pw-new");
    let out = dir.path().join("new/nested/out");
    let o = once(
        &out,
        &secret_json("127.0.0.1", shared_pg().port, &user, "pw-new", &db),
        &[],
    );
    assert_exit(&o, 0);
    figure("fault_outdir_missing", 2);
}

/// Read-only and full: the second run exits 73 naming the out-dir, and the files the
/// first run wrote are byte for byte what they were.
#[test]
fn read_only_and_full_out_dirs_exit_73_and_keep_the_previous_files() {
    require_root("it mounts tmpfs and chowns files");
    let (user, db) = role("pw-1");
    let (user2, db2) = role("pw-2");
    let port = shared_pg().port;
    for fault in ["read-only", "full"] {
        let fs_ = Tmpfs::mount(256);
        let out = fs_.path().join("out");
        assert_exit(
            &once(
                &out,
                &secret_json("127.0.0.1", port, &user, "pw-1", &db),
                &[],
            ),
            0,
        );
        let before = snapshot(&out);
        match fault {
            "read-only" => fs_.remount("ro"),
            _ => {
                fs_.fill(0);
            }
        }
        // Another login that works: only the out-dir can stop this run.
        let o = once(
            &out,
            &secret_json("127.0.0.1", port, &user2, "pw-2", &db2),
            &[],
        );
        assert_exit(&o, 73);
        assert!(
            stderr(&o).contains(&out.display().to_string()),
            "{fault}: {}",
            stderr(&o)
        );
        assert_eq!(snapshot(&out), before, "{fault}: previous files untouched");
        assert!(
            listing(&out).iter().all(|n| !n.ends_with(".tmp")),
            "{fault}: {:?}",
            listing(&out)
        );
    }
    figure("fault_outdir_read_only", 1);
    figure("fault_outdir_full_at_start", 1);
}

/// A full disk during run's refresh: the new set cannot be written in full, so none of it
/// replaces the old one; run turns degraded; freeing space publishes the new set.
#[test]
fn a_full_disk_during_a_refresh_keeps_the_old_files_and_degrades() {
    require_root("it mounts tmpfs and chowns files");
    let pg = shared_pg();
    let (user, db) = role("pw-a");
    let fs_ = Tmpfs::mount(256);
    let out = fs_.path().join("out");
    let secret_dir = tempfile::tempdir().expect("tempdir");
    let secret = secret_dir.path().join("secret.json");
    fs::write(
        &secret,
        secret_json("127.0.0.1", pg.port, &user, "pw-a", &db),
    )
    .expect("secret");
    let child = spawn_run_with_file(&secret, &out, "300ms");
    wait_for("ready", 60, || health(&out).status.success());
    let before = snapshot(&out);

    // One spare page: status.json can still be rewritten, a set of two files cannot.
    let filler = fs_.fill(1);
    pg.sql(
        "postgres",
        &format!("ALTER ROLE \"{user}\" PASSWORD 'pw-b'"),
    );
    fs::write(
        &secret,
        secret_json("127.0.0.1", pg.port, &user, "pw-b", &db),
    )
    .expect("rotate");
    wait_for("degraded", 60, || status(&out)["phase"] == "degraded");
    let s = status(&out);
    assert_eq!(s["last_error_class"], "out_dir", "{s}");
    assert_eq!(snapshot(&out), before, "old files kept, none replaced");
    assert_exit(&health(&out), 0);

    fs::remove_file(filler).expect("free space");
    wait_for("recovery", 60, || status(&out)["generation"] == 2);
    assert_eq!(status(&out)["phase"], "ready");
    assert_exit(&psql_service(&out, "app", "select 1"), 0);
    assert_eq!(terminate(child).0, Some(0));
    figure("fault_outdir_full_during_refresh", 1);
}

/// Symlinks planted at the final names and at temporary names are replaced or removed,
/// never followed: the files they point at keep their bytes.
#[test]
fn planted_symlinks_are_replaced_never_followed() {
    let (user, db) = role("pw-sym");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    fs::create_dir(&out).expect("out");
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious\n").expect("victim");
    let planted = [
        "pgpass",
        "application.profile",
        "status.json",
        "ready",
        ".pgpass.AAAAAA.tmp",
        ".status.json.x1y2z3.tmp",
    ];
    for name in planted {
        symlink(&victim, out.join(name)).expect("plant");
    }
    let o = once(
        &out,
        &secret_json("127.0.0.1", shared_pg().port, &user, "pw-sym", &db),
        &[],
    );
    assert_exit(&o, 0);
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious\n");
    for name in ["status.json", "ready"] {
        let meta = fs::symlink_metadata(out.join(name)).expect("exists");
        assert!(meta.file_type().is_file(), "{name} is a regular file now");
    }
    // The credential files are our own links into the current version now, and what
    // they lead to is a regular file.
    for name in ["pgpass", "application.profile"] {
        let link = fs::read_link(out.join(name)).expect("a symlink");
        assert_eq!(link, Path::new("..data").join(name), "{name}");
        let meta = fs::metadata(out.join(name)).expect("resolves");
        assert!(meta.file_type().is_file(), "{name} leads to a regular file");
    }
    assert!(
        listing(&out).iter().all(|n| !n.ends_with(".tmp")),
        "{:?}",
        listing(&out)
    );
    assert_exit(&psql_service(&out, "app", "select 1"), 0);
    figure("fault_symlinks_planted", planted.len());
}

/// Files holding secrets are 0600 and the others 0644 under umask 000 and 077 alike.
#[test]
fn modes_do_not_depend_on_the_umask() {
    let (user, db) = role("pw-umask");
    for umask in ["000", "077", "022"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let o = Command::new("sh")
            .args([
                "-c",
                &format!("umask {umask}; exec \"$0\" once --out-dir \"$1\""),
                &sidecar_bin(),
            ])
            .arg(&out)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "DB_SECRET",
                secret_json("127.0.0.1", shared_pg().port, &user, "pw-umask", &db),
            )
            .output()
            .expect("runs");
        assert_exit(&o, 0);
        for (name, want) in [
            ("pgpass", 0o600),
            ("application.profile", 0o600),
            ("pg_service.conf", 0o644),
            ("status.json", 0o644),
            ("ready", 0o644),
        ] {
            assert_eq!(mode(&out.join(name)), want, "{name} under umask {umask}");
        }
    }
    figure("fault_umasks", 3);
}

/// A pgpass left by another user (say, an earlier image's uid, world-readable) is
/// replaced by one owned by the sidecar's user, or by --owner's.
#[test]
fn a_foreign_pgpass_is_replaced_with_the_right_owner() {
    require_root("it mounts tmpfs and chowns files");
    let (user, db) = role("pw-own");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    fs::create_dir(&out).expect("out");
    let pgpass = out.join("pgpass");
    for (flags, uid, gid) in [(&[][..], 0, 0), (&["--owner", "4242:4243"][..], 4242, 4243)] {
        fs::write(&pgpass, "stale:5432:*:someone:old\n").expect("plant");
        std::os::unix::fs::chown(&pgpass, Some(31337), Some(31337)).expect("chown");
        fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .expect("chmod");
        let o = once(
            &out,
            &secret_json("127.0.0.1", shared_pg().port, &user, "pw-own", &db),
            flags,
        );
        assert_exit(&o, 0);
        let meta = fs::metadata(&pgpass).expect("pgpass");
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{flags:?}");
        assert_eq!(mode(&pgpass), 0o600);
        assert!(
            fs::read_to_string(&pgpass).expect("pgpass").contains(&user),
            "the new content"
        );
    }
    figure("fault_foreign_pgpass", 2);
}

/// Two sidecars started together on one out-dir, 40 times: both become ready, and
/// `health`'s ready always comes with a whole set behind `..data` (a start-up sweep of one
/// no longer removes the version the other is about to swap in).
#[test]
fn two_sidecars_on_one_out_dir_never_leave_a_torn_set_marked_ready() {
    let pg = shared_pg();
    let (user, db) = role("pair-pw");
    let secret = secret_json("127.0.0.1", pg.port, &user, "pair-pw", &db);
    let root = tempfile::tempdir().expect("tempdir");
    for pair in 0..40 {
        let out = root.path().join(format!("out{pair}"));
        let start = || {
            sidecar()
                .args(["once", "--wait-timeout", "30s", "--out-dir"])
                .arg(&out)
                .env("DB_SECRET", &secret)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        };
        let (a, b) = (start(), start());
        for child in [a, b] {
            let o = child.wait_with_output().expect("wait");
            assert_exit(&o, 0);
        }
        assert!(health(&out).status.success(), "pair {pair}: not ready");
        for f in CREDENTIAL_FILES {
            let meta = fs::metadata(out.join("..data").join(f));
            assert!(meta.is_ok_and(|m| m.is_file()), "pair {pair}: {f} missing");
        }
    }
    figure("outdir_concurrent_pairs", 40);
}

/// An out-dir anyone may write (an emptyDir is 0777) with a root sidecar: another user
/// who swaps each new `..v.*` directory for a symlink into a directory of root's cannot
/// make the sidecar write or chmod there; each start is ready (the race lost) or fails
/// with 73, and the sidecar warns about such an out-dir.
#[test]
fn a_version_directory_swapped_for_a_symlink_is_never_written_through() {
    require_root("the sidecar runs as root beside an attacker");
    let pg = shared_pg();
    let (user, db) = role("race-pw");
    let secret = secret_json("127.0.0.1", pg.port, &user, "race-pw", &db);
    let root = tempfile::tempdir().expect("tempdir");
    let private = root.path().join("private");
    fs::create_dir(&private).expect("private");
    fs::write(private.join("keep"), "root's").expect("keep");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).expect("chmod");
    fs::set_permissions(private.join("keep"), fs::Permissions::from_mode(0o600)).expect("chmod");
    let (mut ready, mut refused, mut warned) = (0, 0, 0);
    for run in 0..20 {
        let out = root.path().join(format!("out{run}"));
        fs::create_dir(&out).expect("out");
        fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).expect("chmod");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The attacker: polls the out-dir and swaps every new version directory.
        let attacker = {
            let (out, private, stop) = (out.clone(), private.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut swapped = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    for e in fs::read_dir(&out).into_iter().flatten().flatten() {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let is_dir = fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_dir());
                        if name.starts_with("..v.") && is_dir {
                            let aside = out.join(format!("aside{swapped}"));
                            if fs::rename(e.path(), &aside).is_ok() {
                                let _ = symlink(&private, e.path());
                                swapped += 1;
                            }
                        }
                    }
                }
                swapped
            })
        };
        let o = once(&out, &secret, &[]);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let swapped = attacker.join().expect("attacker");
        match o.status.code() {
            Some(0) => ready += 1,
            Some(73) => refused += 1,
            other => panic!("run {run}: exit {other:?}: {}", stderr(&o)),
        }
        warned += usize::from(stderr(&o).contains("writable by other users"));
        let names: Vec<String> = fs::read_dir(&private)
            .expect("private")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["keep"],
            "run {run} ({swapped} swaps): written through"
        );
        let mode = fs::metadata(&private).expect("private").mode() & 0o777;
        assert_eq!(mode, 0o700, "run {run}: the private directory was chmodded");
    }
    assert_eq!(warned, 20, "every start warns about the out-dir");
    assert_eq!(ready + refused, 20);
    figure("outdir_swaps_refused", refused);
}
