//! `doctor` against the real parts, one failure at a time: each test asserts the failing
//! step, its status, a word of its hint and the exit code; a healthy setup passes in
//! under a second; no password in either format; nothing left behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::front::{Act, Front, HttpAct, HttpFront};
use crate::common::*;
use crate::tls::tls;

const CANARY: &str = "doctor-canary-pw:3a9";

/// `doctor --format json` with `args` and `env`; the parsed report and the output.
fn doctor(args: &[&str], env: &[(&str, String)]) -> (serde_json::Value, Output) {
    let o = sidecar()
        .args(["doctor", "--format", "json", "--step-timeout", "2s"])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.clone())))
        .output()
        .expect("doctor runs");
    let report = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(&o), stderr(&o)));
    (report, o)
}

/// The step named `name`.
fn step<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {report}"))
}

/// The first failed step: its name, error class and hint.
fn failure(report: &serde_json::Value) -> (String, String, String) {
    let s = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["status"] == "fail")
        .unwrap_or_else(|| panic!("nothing failed: {report}"));
    (
        s["name"].as_str().unwrap_or_default().into(),
        s["error_class"].as_str().unwrap_or_default().into(),
        s["hint"].as_str().unwrap_or_default().into(),
    )
}

fn secret(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    db: &str,
) -> Vec<(&'static str, String)> {
    vec![("DB_SECRET", secret_json(host, port, user, password, db))]
}

fn out_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    (dir, out)
}

/// Asserts the first failure and the exit code, and that the canary is in neither format.
fn expect_failure(args: &[&str], env: &[(&str, String)], want: (&str, &str, &str), code: i32) {
    let (report, o) = doctor(args, env);
    let (name, class, hint) = failure(&report);
    assert_eq!(
        (name.as_str(), class.as_str()),
        (want.0, want.1),
        "{report}"
    );
    assert!(hint.contains(want.2), "hint {hint:?} lacks {:?}", want.2);
    assert_exit(&o, code);
    assert_eq!(report["exit_code"], code);
    let text = sidecar()
        .args(["doctor", "--step-timeout", "2s"])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.clone())))
        .output()
        .expect("doctor runs");
    for all in [
        format!("{}{}", stdout(&o), stderr(&o)),
        format!("{}{}", stdout(&text), stderr(&text)),
    ] {
        assert!(!all.contains(CANARY), "the password is in the output");
    }
    assert!(stdout(&text).contains("FAIL"), "{}", stdout(&text));
}

/// Everything passes against the TLS cluster, fast, leaving no file and no session.
#[test]
fn a_healthy_setup_passes_every_step_quickly_and_leaves_nothing() {
    let e = tls();
    let (_dir, out) = out_dir();
    let ca = e.ca.to_str().expect("utf-8").to_string();
    let started = Instant::now();
    let (report, o) = doctor(
        &[
            "--sslmode",
            "verify-full",
            "--sslrootcert",
            &ca,
            "--owner",
            "1000:1000",
            "--out-dir",
            out.to_str().expect("utf-8"),
        ],
        &secret("localhost", e.pg.port, "tls_app", "tls-pass", "tls_db"),
    );
    assert_exit(&o, 0);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    for s in report["steps"].as_array().expect("steps") {
        assert!(s["status"] == "ok" || s["status"] == "warn", "{s}");
    }
    // The test CA lives three days: the expiry warning is due, and names the cause.
    assert_eq!(step(&report, "tls")["status"], "warn");
    assert!(
        step(&report, "tls")["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("names [localhost, 127.0.0.1]")
    );
    assert_eq!(step(&report, "database")["status"], "ok");
    assert!(!out.exists(), "doctor created the out-dir");
    let sessions = e.pg.sql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'tls_app'",
    );
    assert_eq!(sessions, "0", "a session outlived doctor");
    figure(
        "doctor_healthy_ms",
        u64::try_from(started.elapsed().as_millis()).unwrap_or(0),
    );
}

#[test]
fn a_refused_port_fails_at_tcp() {
    let port = free_port();
    expect_failure(
        &[],
        &secret("127.0.0.1", port, "u", CANARY, "d"),
        ("tcp", "transient", "nothing listens"),
        69,
    );
}

#[test]
fn a_host_that_holds_the_connection_fails_at_the_step_timeout() {
    // Every connection held: doctor's TCP step connects, its TLS step then gets no answer.
    let front = Front::start(
        shared_pg().port,
        vec![Act::Hold(Duration::from_secs(30)); 6],
    );
    let started = Instant::now();
    expect_failure(
        &[],
        &secret("127.0.0.1", front.port, "u", CANARY, "d"),
        ("tls", "timeout", "security group"),
        69,
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "cut at --step-timeout, not the attempt timeout"
    );
}

#[test]
fn an_unresolvable_name_fails_at_dns() {
    expect_failure(
        &[],
        &secret("no-such-host.invalid", 5432, "u", CANARY, "d"),
        ("dns", "transient", "host name"),
        69,
    );
}

#[test]
fn a_certificate_for_another_name_or_from_another_ca_fails_at_tls() {
    let e = tls();
    let ca = e.ca.to_str().expect("utf-8").to_string();
    let other = e.other_ca.to_str().expect("utf-8").to_string();
    expect_failure(
        &["--sslmode", "verify-full", "--sslrootcert", &ca],
        &secret("127.0.0.2", e.pg.port, "tls_app", CANARY, "tls_db"),
        ("tls", "tls_verification", "does not name 127.0.0.2"),
        78,
    );
    expect_failure(
        &["--sslmode", "verify-ca", "--sslrootcert", &other],
        &secret("localhost", e.pg.port, "tls_app", CANARY, "tls_db"),
        ("tls", "tls_verification", "not signed by a CA"),
        78,
    );
}

#[test]
fn an_expired_certificate_fails_at_tls() {
    let pki = Pki::new();
    let ca = pki.ca("expiry-ca");
    let (cert, key) = expired_certificate(&pki, "expiry-ca");
    let pg = Pg::start(PgOptions {
        tls: Some((cert, key)),
        ..PgOptions::default()
    });
    expect_failure(
        &[
            "--sslmode",
            "verify-full",
            "--sslrootcert",
            ca.to_str().expect("utf-8"),
        ],
        &secret("localhost", pg.port, "postgres", CANARY, "postgres"),
        ("tls", "tls_verification", "expired"),
        78,
    );
}

/// A server certificate signed by `ca` that expired yesterday (OpenSSL 3.0's CLI cannot
/// make one; the moto venv's `cryptography` can).
fn expired_certificate(pki: &Pki, ca: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (pki.dir.join("expired.crt"), pki.dir.join("expired.key"));
    let script = r#"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
ca_cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
ca_key = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
key = ec.generate_private_key(ec.SECP256R1())
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder()
    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")]))
    .issuer_name(ca_cert.subject).public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(days=10))
    .not_valid_after(now - datetime.timedelta(days=1))
    .add_extension(x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    .sign(ca_key, hashes.SHA256()))
open(sys.argv[3], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(sys.argv[4], "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#;
    let python = std::env::var("MOTO_SERVER")
        .map(|m| Path::new(&m).with_file_name("python"))
        .unwrap_or_else(|_| PathBuf::from("python3"));
    let ok = Command::new(python)
        .args(["-c", script])
        .arg(pki.dir.join(format!("{ca}.crt")))
        .arg(pki.dir.join(format!("{ca}.key")))
        .args([&cert, &key])
        .status()
        .expect("python runs");
    assert!(ok.success(), "making an expired certificate");
    fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let chown = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(&key)
        .status()
        .expect("chown");
    assert!(chown.success());
    (cert, key)
}

#[test]
fn a_server_that_requires_tls_under_disable_fails_at_authentication() {
    let e = tls();
    expect_failure(
        &["--sslmode", "disable"],
        &secret("127.0.0.1", e.pg.port, "tls_app", CANARY, "tls_db"),
        ("authentication", "tls_required", "only accepts TLS"),
        78,
    );
}

#[test]
fn a_wrong_password_fails_at_authentication() {
    let pg = shared_pg();
    let (user, db) = pg.role_with_db("doc", "right-pw");
    expect_failure(
        &[],
        &secret("127.0.0.1", pg.port, &user, CANARY, &db),
        ("authentication", "password_rejected", "rotation"),
        77,
    );
}

#[test]
fn a_missing_database_is_a_warning_with_createdb_and_a_failure_without() {
    let pg = shared_pg();
    let (user, _) = pg.role_with_db("docdb", "pw-docdb");
    let (report, o) = doctor(
        &[],
        &secret("127.0.0.1", pg.port, &user, "pw-docdb", "docdb_missing"),
    );
    assert_exit(&o, 0);
    assert_eq!(step(&report, "database")["status"], "warn");
    assert!(
        step(&report, "database")["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("will be created")
    );
    assert!(
        !pg.database_exists("docdb_missing"),
        "doctor created nothing"
    );
    let plain = unique("docnocreate");
    pg.create_role(&plain, CANARY, false);
    expect_failure(
        &[],
        &secret("127.0.0.1", pg.port, &plain, CANARY, "nocreate_missing"),
        ("database", "no_privilege", "CREATEDB"),
        77,
    );
}

#[test]
fn an_out_dir_that_cannot_be_written_fails() {
    let pg = shared_pg();
    let (user, db) = pg.role_with_db("docout", CANARY);
    expect_failure(
        &["--out-dir", "/proc/aurora-sidecar-doctor/out"],
        &secret("127.0.0.1", pg.port, &user, CANARY, &db),
        ("out-dir", "out_dir", "writable volume"),
        73,
    );
}

#[tokio::test]
async fn a_missing_secret_and_access_denied_fail_at_credentials() {
    let moto = shared_moto();
    expect_failure(
        &["--secret-id", "no/such/secret"],
        &moto.env().into_iter().collect::<Vec<_>>(),
        ("credentials", "secret_not_found", "region"),
        78,
    );
    let client = moto.client().await;
    let name = unique("doctor/db");
    client
        .create_secret()
        .name(&name)
        .secret_string(secret_json("127.0.0.1", 5432, "u", CANARY, "d"))
        .send()
        .await
        .expect("create");
    // Both runs of expect_failure (JSON, then text) meet the denial.
    let front = HttpFront::start(
        moto.port,
        vec![HttpAct::Status(400, "AccessDeniedException"); 2],
    );
    let mut env: Vec<(&str, String)> = moto
        .env()
        .into_iter()
        .filter(|(k, _)| *k != "AWS_ENDPOINT_URL")
        .collect();
    env.push(("AWS_ENDPOINT_URL", front.endpoint.clone()));
    expect_failure(
        &["--secret-id", &name],
        &env,
        ("credentials", "secret_denied", "GetSecretValue"),
        77,
    );
}

/// The wait's final error and `health`'s line point to `doctor`.
#[test]
fn a_failed_wait_and_health_point_to_doctor() {
    let (_dir, out) = out_dir();
    let o = sidecar()
        .args(["once", "--wait-timeout", "1s", "--out-dir"])
        .arg(&out)
        .env(
            "DB_SECRET",
            secret_json("127.0.0.1", free_port(), "u", CANARY, "d"),
        )
        .output()
        .expect("runs");
    assert_exit(&o, 69);
    assert!(
        stderr(&o).contains("run `aurora-sidecar doctor` with the same flags"),
        "{}",
        stderr(&o)
    );
    let h = health(&out);
    assert_exit(&h, 1);
    assert!(
        stdout(&h).contains("aurora-sidecar doctor"),
        "{}",
        stdout(&h)
    );
}
