//! SIGKILL at random moments while the sidecar renders, 500 times over one out-dir whose
//! secret alternates between two logins, so every run replaces every credential file.
//! After each kill: every file present is byte for byte one of the two complete
//! renderings, and all of them of the same login (one rename publishes the whole set);
//! `ready` never exists without the full set of one login; temporary files and version
//! directories a kill left behind are swept by the next run, and none is left at the end.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::common::*;

const ITERATIONS: usize = 500;
const FILES: [&str; 3] = ["pgpass", "pg_service.conf", "application.profile"];
const RECALIBRATE: usize = 50;

fn once(out: &Path, secret: &Path) -> Command {
    let mut c = sidecar();
    c.args(["once", "--wait-timeout", "30s", "--secret-file"])
        .arg(secret)
        .arg("--out-dir")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Replaces the secret file atomically (the test's own writes must not be torn either).
fn put_secret(path: &Path, json: &str) {
    let tmp = path.with_extension("new");
    fs::write(&tmp, json).expect("secret");
    fs::rename(&tmp, path).expect("rename secret");
}

#[test]
fn five_hundred_kills_mid_render_leave_no_torn_file() {
    let pg = shared_pg();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret.json");
    let out = dir.path().join("out");

    // Two logins, their databases, and each one's complete rendering, made by runs that
    // were not interrupted.
    let mut logins = Vec::new();
    let mut renderings: Vec<BTreeMap<&str, Vec<u8>>> = Vec::new();
    for pw in ["pw-one", "pw-two"] {
        let (user, db) = pg.role_with_db("atom", pw);
        let json = secret_json("127.0.0.1", pg.port, &user, pw, &db);
        put_secret(&secret, &json);
        let status = once(&out, &secret).status().expect("runs");
        assert!(status.success(), "calibration run");
        renderings.push(
            FILES
                .iter()
                .map(|f| (*f, fs::read(out.join(f)).expect("rendered")))
                .collect(),
        );
        logins.push(json);
    }
    for f in FILES {
        assert_ne!(
            renderings[0][f], renderings[1][f],
            "{f} differs between logins"
        );
    }

    // How long one run takes here, to aim the kills inside it; measured again every
    // RECALIBRATE kills, because a shared machine's speed drifts (a span measured in a
    // slow minute sends later kills after the run has ended).
    let calibrate = || {
        let mut took = Vec::new();
        for i in 0..5 {
            put_secret(&secret, &logins[i % 2]);
            let start = Instant::now();
            assert!(once(&out, &secret).status().expect("runs").success());
            took.push(start.elapsed());
        }
        took.sort();
        took[took.len() / 2].mul_f64(1.2)
    };
    let mut span = calibrate();

    let (mut killed_before_ready, mut temps_seen, mut mixed_sets, mut killed_before_start) =
        (0, 0, 0, 0);
    let mut mid_render = 0;
    let mut versions_seen = 0;
    let mut rng = fastrand::Rng::with_seed(0x5eed_a70f);
    for i in 0..ITERATIONS {
        if i > 0 && i % RECALIBRATE == 0 {
            span = calibrate();
        }
        let which = (i + 1) % 2;
        put_secret(&secret, &logins[which]);
        let mut child = once(&out, &secret).spawn().expect("spawn");
        // Most of a run is exec, config and the login; aim at its second half, where
        // the files are written.
        std::thread::sleep(span.mul_f64(0.4 + 0.8 * rng.f64()));
        let _ = child.kill();
        let status = child.wait().expect("wait");
        if !status.success() {
            killed_before_ready += 1;
        }

        let mut owners = Vec::new();
        for f in FILES {
            let Ok(bytes) = fs::read(out.join(f)) else {
                continue;
            };
            let owner = renderings.iter().position(|r| r[f] == bytes);
            assert!(
                owner.is_some(),
                "iteration {i}: {f} is not a complete rendering ({} bytes)",
                bytes.len()
            );
            owners.extend(owner);
        }
        owners.dedup();
        if owners.len() > 1 {
            mixed_sets += 1;
        }
        let s: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("status.json")).expect("status.json"))
                .unwrap_or_else(|e| panic!("iteration {i}: status.json is not JSON: {e}"));
        if out.join("ready").exists() {
            // One login's full set: this run's, or the previous run's when the kill came
            // before this one removed the marker (a process killed during exec).
            assert_eq!(owners.len(), 1, "iteration {i}: ready with a mixed set");
            if owners != [which] {
                killed_before_start += 1;
            }
            assert_eq!(s["phase"], "ready", "iteration {i}");
            for f in FILES {
                assert!(out.join(f).exists(), "iteration {i}: ready without {f}");
            }
        }
        // At most one run's set (the links for `..data` and the visible names,
        // status.json and the marker are staged together) and one staged version
        // directory beside the current one; the next run sweeps them, so they never add
        // up.
        let names = listing(&out);
        let temps = names.iter().filter(|n| n.ends_with(".tmp")).count();
        assert!(
            temps <= FILES.len() + 3,
            "iteration {i}: {temps} temporary files pile up"
        );
        let versions = names.iter().filter(|n| n.starts_with("..v.")).count();
        versions_seen += versions.saturating_sub(1);
        assert!(
            versions <= 2,
            "iteration {i}: {versions} version directories pile up"
        );
        temps_seen += temps;
        // Caught writing: temporaries or a second version directory present, or some of
        // this run's files in place without its marker.
        if temps > 0 || versions > 1 || (owners.contains(&which) && !out.join("ready").exists()) {
            mid_render += 1;
        }
    }

    // One rename publishes a whole set: no kill leaves files of two logins side by side.
    assert_eq!(mixed_sets, 0, "kills left files of two logins side by side");
    // A run that is not interrupted sweeps whatever the last kill left: the current
    // version, the link to it and the visible names.
    assert!(once(&out, &secret).status().expect("runs").success());
    assert_eq!(
        listing(&out),
        [
            "..data",
            "..v.XXXXXX",
            "application.profile",
            "password",
            "pg_service.conf",
            "pgpass",
            "ready",
            "status.json"
        ]
    );
    assert!(
        mid_render >= ITERATIONS / 20,
        "only {mid_render} of {ITERATIONS} kills caught the files being written: the kills missed the render"
    );
    eprintln!(
        "{ITERATIONS} kills, {mid_render} while writing files, {killed_before_ready} before ready ({killed_before_start} before the run removed the previous marker), {temps_seen} temporary files and {versions_seen} version directories left by kills and swept, {mixed_sets} mixed sets, 0 torn files"
    );
    figure("kill_iterations", ITERATIONS);
    figure("kill_before_ready", killed_before_ready);
    figure("kill_temporaries_swept", temps_seen);
    figure("kill_versions_swept", versions_seen);
    figure("kill_mixed_sets", mixed_sets);
    figure("kill_before_start", killed_before_start);
    figure("kill_mid_render", mid_render);
    figure("kill_torn_files", 0);
}
