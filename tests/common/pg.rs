//! A real PostgreSQL cluster from the machine's packages: `initdb` into a temp dir with
//! scram-sha-256 for TCP, a free port on 127.0.0.1, fsync off (tests do not need
//! durability). PostgreSQL refuses to run as root, so when the tests run as root the
//! server runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, is_root, run_ok, unique, watchdog};

pub const SUPERUSER: &str = "postgres";

pub fn pg_bin(name: &str) -> PathBuf {
    let dir = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    PathBuf::from(dir).join(name)
}

/// Runs a PostgreSQL server program as the user that may run it.
pub fn pg_command(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
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

    /// Where the server's Unix socket is (trust for every local login).
    pub fn socket_dir(&self) -> &std::path::Path {
        &self.socket_dir
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
