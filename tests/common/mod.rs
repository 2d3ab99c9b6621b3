//! Test harness: a real PostgreSQL from the machine's packages, `moto_server` for the
//! Secrets Manager API, and the real binary.
//!
//! - PostgreSQL: `initdb` into a temp dir with scram-sha-256 for TCP, a free port on
//!   127.0.0.1, fsync off (tests do not need durability). PostgreSQL refuses to run as
//!   root, so when the tests run as root the server runs as the `postgres` user.
//! - moto: `MOTO_SERVER` (set by scripts/test, which creates the venv) or `moto_server` on
//!   PATH. A missing moto is a test failure with instructions, never a skip.
//! - Every server gets a watchdog shell that stops it when the test process exits, so a
//!   panicking test binary leaves nothing running.

pub mod front;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};

pub const SUPERUSER: &str = "postgres";

pub fn pg_bin(name: &str) -> PathBuf {
    let dir = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    PathBuf::from(dir).join(name)
}

/// Whether the tests run as root (CI does): the one root check of the harness.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

/// Runs a PostgreSQL server program as the user that may run it.
fn pg_command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `stop_cmd` (a shell command) once this test process is gone: statics are never
/// dropped, so servers and files that live as long as a test binary are cleaned up here.
// Never waited for on purpose: it must outlive this process; init reaps it.
#[allow(clippy::zombie_processes)]
pub fn watchdog(stop_cmd: &str) {
    let me = std::process::id();
    let script = format!("while kill -0 {me} 2>/dev/null; do sleep 1; done; {stop_cmd}");
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("watchdog shell");
}

#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// `(cert, key)` to serve TLS with.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Extra lines placed *before* the default pg_hba rules.
    pub hba_prepend: Vec<String>,
    /// Replace the pg_hba TCP rules entirely.
    pub hba_replace: Option<Vec<String>>,
    /// `listen_addresses` [default: 127.0.0.1].
    pub listen: Option<String>,
    /// Extra `-c name=value` server settings (e.g. `log_connections=on`).
    pub settings: Vec<String>,
}

pub struct Pg {
    pub port: u16,
    root: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    options: PgOptions,
}

impl Pg {
    pub fn start(options: PgOptions) -> Pg {
        let root = tempfile::Builder::new()
            .prefix("aurora-sidecar-pg.")
            .tempdir()
            .expect("tempdir")
            .keep();
        let data = root.join("data");
        let socket_dir = root.join("sock");
        std::fs::create_dir_all(&socket_dir).expect("socket dir");
        let pwfile = root.join("pwfile");
        std::fs::write(&pwfile, "superpass\n").expect("pwfile");
        if is_root() {
            run_ok(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(&root),
                "chown",
            );
        }
        let mut initdb = pg_command(&pg_bin("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        run_ok(&mut initdb, "initdb");
        let pg = Pg {
            port: free_port(),
            root,
            data,
            socket_dir,
            options,
        };
        pg.write_hba();
        pg.start_server();
        let stop = format!(
            "{} -D {} -m immediate stop; rm -rf {}",
            if is_root() {
                format!("runuser -u postgres -- {}", pg_bin("pg_ctl").display())
            } else {
                pg_bin("pg_ctl").display().to_string()
            },
            pg.data.display(),
            pg.root.display()
        );
        watchdog(&stop);
        pg
    }

    fn write_hba(&self) {
        let mut lines = vec!["local all all trust".to_string()];
        lines.extend(self.options.hba_prepend.iter().cloned());
        match &self.options.hba_replace {
            Some(rules) => lines.extend(rules.iter().cloned()),
            None => {
                lines.push("host all all 127.0.0.1/32 scram-sha-256".into());
                lines.push("host all all ::1/128 scram-sha-256".into());
            }
        }
        let path = self.data.join("pg_hba.conf");
        std::fs::write(&path, lines.join("\n") + "\n").expect("pg_hba.conf");
        if is_root() {
            run_ok(
                Command::new("chown").args(["postgres:postgres"]).arg(&path),
                "chown hba",
            );
        }
    }

    pub fn start_server(&self) {
        let mut opts = format!(
            "-c listen_addresses={} -c port={} -c unix_socket_directories={} -c fsync=off -c max_connections=150 -c password_encryption=scram-sha-256",
            self.options.listen.as_deref().unwrap_or("127.0.0.1"),
            self.port,
            self.socket_dir.display()
        );
        for setting in &self.options.settings {
            opts.push_str(&format!(" -c {setting}"));
        }
        if let Some((cert, key)) = &self.options.tls {
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            ));
        }
        let log = self.root.join("server.log");
        run_ok(
            pg_command(&pg_bin("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(opts)
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        );
    }

    pub fn stop_server(&self) {
        run_ok(
            pg_command(&pg_bin("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "stop"]),
            "pg_ctl stop",
        );
    }

    /// Crashes the whole instance: SIGKILL to the postmaster and every backend, as when
    /// the host dies. The next [`start_server`] runs crash recovery.
    ///
    /// [`start_server`]: Pg::start_server
    pub fn kill9(&self) {
        let pidfile = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .expect("postmaster.pid (is the server running?)");
        let pid = pidfile.lines().next().expect("pid line").trim().to_string();
        // Freeze the postmaster so it cannot react, kill its children, then it.
        run_ok(
            Command::new("kill").args(["-STOP", &pid]),
            "stop postmaster",
        );
        let children = String::from_utf8_lossy(
            &Command::new("pgrep")
                .args(["-P", &pid])
                .output()
                .expect("pgrep")
                .stdout,
        )
        .split_whitespace()
        .map(str::to_string)
        .collect::<Vec<_>>();
        for c in &children {
            let _ = Command::new("kill").args(["-KILL", c]).status();
        }
        run_ok(
            Command::new("kill").args(["-KILL", &pid]),
            "kill postmaster",
        );
        // Gone means no /proc entry or a zombie (nothing attached to shared memory).
        let alive = |p: &String| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(&pid) || children.iter().any(alive) {
            assert!(Instant::now() < deadline, "postgres did not die");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Without a reaping init (as in this container) the dead postmaster stays a zombie
        // whose pid still answers kill(pid, 0), so PostgreSQL would take the lock files
        // for a live server. After a real crash that pid is gone: remove them, as a
        // restarted host would find them stale.
        let _ = std::fs::remove_file(self.data.join("postmaster.pid"));
        let _ = std::fs::remove_file(self.socket_dir.join(format!(".s.PGSQL.{}.lock", self.port)));
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    /// Runs SQL as the superuser over the Unix socket; returns trimmed unaligned output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = run_ok(
            Command::new("psql")
                .arg("-h")
                .arg(&self.socket_dir)
                .arg("-p")
                .arg(self.port.to_string())
                .args([
                    "-U",
                    SUPERUSER,
                    "-d",
                    db,
                    "-X",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-tAc",
                    sql,
                ])
                .env_remove("PGSERVICE")
                .env_remove("PGSERVICEFILE")
                .env_remove("PGPASSFILE"),
            &format!("psql {sql}"),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A role of its own for one test (tests share the cluster).
    pub fn create_role(&self, name: &str, password: &str, createdb: bool) {
        let pw = password.replace('\'', "''");
        let createdb = if createdb { "CREATEDB" } else { "NOCREATEDB" };
        self.sql(
            "postgres",
            &format!("CREATE ROLE \"{name}\" LOGIN {createdb} PASSWORD '{pw}'"),
        );
    }

    /// A role of its own with CREATEDB and an existing database it owns, named
    /// `PREFIX_…` and `PREFIX_…_db`: a good login is then exactly one connection.
    pub fn role_with_db(&self, prefix: &str, password: &str) -> (String, String) {
        let user = unique(prefix);
        self.create_role(&user, password, true);
        let db = format!("{user}_db");
        self.sql(
            "postgres",
            &format!("CREATE DATABASE \"{db}\" OWNER \"{user}\""),
        );
        (user, db)
    }

    pub fn database_exists(&self, name: &str) -> bool {
        let n = name.replace('\'', "''");
        self.sql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{n}'"),
        ) == "1"
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = pg_command(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The cluster one test binary shares (each test its own role and database).
pub fn shared_pg() -> &'static Pg {
    static PG: std::sync::OnceLock<Pg> = std::sync::OnceLock::new();
    PG.get_or_init(|| Pg::start(PgOptions::default()))
}

/// The moto server one test binary shares (each test its own secret names).
pub fn shared_moto() -> &'static Moto {
    static MOTO: std::sync::OnceLock<Moto> = std::sync::OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

/// Unique names for roles and databases within one test binary.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// moto's Secrets Manager on a free port.
pub struct Moto {
    pub endpoint: String,
    pub port: u16,
    /// Over HTTPS: the CA (PEM) that signed its certificate.
    ca: Option<Vec<u8>>,
    child: std::process::Child,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_on(free_port())
    }

    /// On a given port: a moto "restarted" where the old one was (its state is gone).
    pub fn start_on(port: u16) -> Moto {
        Moto::spawn(port, None)
    }

    /// Over HTTPS, at `https://localhost:PORT`, with a certificate signed by the CA
    /// `ca` of `pki` (for `DNS:localhost`).
    pub fn start_tls(pki: &Pki, ca: &str) -> Moto {
        let (crt, key) = pki.server("moto", ca, "DNS:localhost");
        Moto::spawn(
            free_port(),
            Some((crt, key, pki.dir.join(format!("{ca}.crt")))),
        )
    }

    fn spawn(port: u16, tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Moto {
        let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((crt, key, _)) = &tls {
            cmd.arg("-c").arg(crt).arg("-k").arg(key);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin:?} ({e}): run the tests through scripts/test, which installs moto[server] in a venv and sets MOTO_SERVER")
            });
        watchdog(&format!("kill {}", child.id()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (endpoint, ca) = match tls {
            Some((_, _, ca)) => (
                format!("https://localhost:{port}"),
                Some(std::fs::read(ca).expect("read the CA")),
            ),
            None => (format!("http://127.0.0.1:{port}"), None),
        };
        Moto {
            endpoint,
            port,
            ca,
            child,
        }
    }

    pub async fn client(&self) -> aws_sdk_secretsmanager::Client {
        let creds = aws_sdk_secretsmanager::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        );
        let conf = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(creds)
            .http_client(match &self.ca {
                // The same hyper client on ring as the sidecar's, trusting this CA alone.
                Some(pem) => aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .tls_context(
                        TlsContext::builder()
                            .with_trust_store(
                                TrustStore::empty()
                                    .with_native_roots(false)
                                    .with_pem_certificate(pem.clone()),
                            )
                            .build()
                            .expect("TLS context"),
                    )
                    .build_https(),
                None => aurora_sidecar::crypto::https_client(),
            })
            .build();
        aws_sdk_secretsmanager::Client::from_conf(conf)
    }

    /// The environment the sidecar needs to reach this moto.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            // No shared config files or IMDS lookups from the test machine.
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The program the tests run: this build's binary, or the one `AURORA_SIDECAR_TEST_BIN`
/// names — another build of it, or a wrapper that runs one under emulation
/// (`scripts/test-aarch64` runs the aarch64 binary through qemu-aarch64-static this way).
pub fn sidecar_bin() -> String {
    std::env::var("AURORA_SIDECAR_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_aurora-sidecar").to_owned())
}

/// The binary under test with a clean environment: nothing from the developer's shell
/// (PG*, DB_SECRET, AWS_*) can leak into a test.
pub fn sidecar() -> Command {
    let mut c = Command::new(sidecar_bin());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AURORA_SIDECAR_LOG_FORMAT", "json")
        .stdin(Stdio::null());
    c
}

/// `aurora-sidecar health --out-dir OUT`.
pub fn health(out_dir: &Path) -> Output {
    sidecar()
        .arg("health")
        .arg("--out-dir")
        .arg(out_dir)
        .output()
        .expect("health runs")
}

/// The secret JSON as RDS writes it (port as a number).
pub fn secret_json(host: &str, port: u16, user: &str, password: &str, db: &str) -> String {
    serde_json::json!({
        "engine": "postgres",
        "host": host,
        "port": port,
        "username": user,
        "password": password,
        "dbname": db,
        "dbClusterIdentifier": "test-cluster",
    })
    .to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with the sidecar's own output when the exit code is not the expected one.
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}, got {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// `psql` against the rendered files, as the app container would use them.
pub fn psql_service(out_dir: &Path, service: &str, sql: &str) -> Output {
    Command::new("psql")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PGSERVICEFILE", out_dir.join("pg_service.conf"))
        .env("PGPASSFILE", out_dir.join("pgpass"))
        .arg(format!("service={service}"))
        .args(["-X", "-w", "-tAc", sql])
        .output()
        .expect("psql runs")
}

/// Sources `application.profile` in a POSIX shell, then runs `script`.
pub fn with_profile(out_dir: &Path, script: &str) -> Output {
    Command::new("sh")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(out_dir)
        .args(["-c", &format!(". ./application.profile && {script}")])
        .output()
        .expect("sh runs")
}

/// Reads `status.json` from an out-dir.
pub fn status(out_dir: &Path) -> serde_json::Value {
    let bytes = std::fs::read(out_dir.join("status.json")).expect("status.json exists");
    serde_json::from_slice(&bytes).expect("status.json is JSON")
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Names in a directory, sorted (to prove no temporary or partial file is left). A
/// version directory of the credential files (`..v.` and six random characters) is
/// listed as `..v.XXXXXX`.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .map(|n| match n.strip_prefix("..v.") {
                    Some(r) if r.len() == 6 => "..v.XXXXXX".to_string(),
                    _ => n,
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A test PKI made with the openssl CLI: a CA, and server certificates signed by it.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// A directory the server's user can read (tempdirs are 0700 by default).
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("aurora-sidecar-pki.")
            .tempdir()
            .expect("tempdir")
            .keep();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        watchdog(&format!("rm -rf {}", dir.display()));
        Pki { dir }
    }

    fn openssl(&self, args: &[&str]) {
        run_ok(
            Command::new("openssl").current_dir(&self.dir).args(args),
            &format!("openssl {args:?}"),
        );
    }

    /// A self-signed CA `NAME.crt` / `NAME.key`.
    pub fn ca(&self, name: &str) -> PathBuf {
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "3",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        self.dir.join(crt)
    }

    /// A server certificate `NAME.crt` / `NAME.key` for `san` (e.g.
    /// `DNS:localhost,IP:127.0.0.1`), signed by CA `ca`; the key is 0600 and owned by the
    /// server's user, as PostgreSQL demands.
    pub fn server(&self, name: &str, ca: &str, san: &str) -> (PathBuf, PathBuf) {
        let (crt, key, csr, ext) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=aurora-sidecar test server",
        ]);
        std::fs::write(
            self.dir.join(&ext),
            format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"),
        )
        .expect("ext file");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        let key_path = self.dir.join(&key);
        std::fs::set_permissions(
            &key_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod key");
        if is_root() {
            run_ok(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&key_path),
                "chown key",
            );
        }
        (self.dir.join(crt), key_path)
    }
}

/// Records a figure for `docs/RELIABILITY.md`: appends `{"figure": name, "value": value}` to
/// the file named by `AURORA_SIDECAR_FIGURES` when `scripts/reliability` sets it; a no-op
/// otherwise (a plain `cargo test`).
pub fn figure(name: &str, value: impl Into<serde_json::Value>) {
    use std::io::Write;
    let Some(path) = std::env::var_os("AURORA_SIDECAR_FIGURES") else {
        return;
    };
    let line = serde_json::json!({ "figure": name, "value": value.into() }).to_string();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("figures file opens");
    // One write per line, so figures from parallel tests do not interleave.
    f.write_all(format!("{line}\n").as_bytes())
        .expect("figure written");
}

/// Polls `ok` every 50 ms until it holds; fails after `secs` seconds naming `what`.
pub fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then the exit status and how long it took.
pub fn terminate(mut child: std::process::Child) -> (Option<i32>, Duration) {
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return (st.code(), sent.elapsed());
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `run --secret-file SECRET --out-dir OUT --refresh-interval INTERVAL`, output discarded.
pub fn spawn_run_with_file(secret: &Path, out: &Path, interval: &str) -> std::process::Child {
    sidecar()
        .args(["run", "--refresh-interval", interval, "--secret-file"])
        .arg(secret)
        .arg("--out-dir")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn run")
}

/// Fails unless the tests run as root (CI does), naming what needs it.
pub fn require_root(why: &str) {
    assert!(is_root(), "this test needs root (CI runs as root): {why}");
}
