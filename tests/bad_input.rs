//! Bad input, table-driven: each malformed secret or flag gets its documented exit code, a
//! message naming the field (or flag), no rendered credential file and none of the secret's
//! bytes in the output. The target is unreachable on purpose (port 1, short deadline): an
//! input that wrongly passed validation would end in 69, not in the expected code.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Appears in every case's password (or next to it), and must never be printed.
const CANARY: &str = "Canary-7f3e91";

enum Src {
    /// `DB_SECRET` holds the bytes.
    Env(&'static str),
    /// `--secret-file` holds the bytes.
    File(Vec<u8>),
    /// A valid secret, bad flags.
    Flags(&'static [&'static str]),
    /// Anything else: the whole command line.
    Args(&'static [&'static str]),
}

struct Case {
    what: &'static str,
    src: Src,
    code: i32,
    needle: &'static str,
}

fn case(what: &'static str, src: Src, code: i32, needle: &'static str) -> Case {
    Case {
        what,
        src,
        code,
        needle,
    }
}

/// A secret with the canary password and one field replaced by raw JSON (`None`: removed).
fn with(field: &str, raw: Option<&str>) -> &'static str {
    let mut fields = vec![
        ("engine", "\"postgres\"".to_string()),
        ("host", "\"127.0.0.1\"".to_string()),
        ("port", "1".to_string()),
        ("username", "\"app\"".to_string()),
        ("password", format!("\"{CANARY}\"")),
        ("dbname", "\"appdb\"".to_string()),
    ];
    fields.retain(|(k, _)| *k != field);
    if let Some(raw) = raw {
        fields.push((field_static(field), raw.to_string()));
    }
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    Box::leak(format!("{{{}}}", body.join(",")).into_boxed_str())
}

fn field_static(f: &str) -> &'static str {
    Box::leak(f.to_string().into_boxed_str())
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn cases() -> Vec<Case> {
    let long = "x".repeat(64);
    let big = format!(
        r#"{{"host":"127.0.0.1","username":"app","password":"{CANARY}","pad":"{}"}}"#,
        "y".repeat(70_000)
    );
    let mut not_utf8 =
        format!(r#"{{"host":"127.0.0.1","username":"app","password":"{CANARY}"#).into_bytes();
    not_utf8.extend_from_slice(b"\xff\xfe\"}");
    vec![
        // Not JSON, or not an object.
        case(
            "invalid JSON",
            Src::Env(leak(format!(r#"{{"host":"h","password":"{CANARY}",}}"#))),
            65,
            "not valid JSON",
        ),
        case("empty text", Src::Env(""), 65, "not valid JSON"),
        case("whitespace only", Src::Env(" \n\t "), 65, "not valid JSON"),
        case(
            "truncated object",
            Src::Env(leak(format!(r#"{{"password":"{CANARY}""#))),
            65,
            "not valid JSON",
        ),
        case(
            "trailing garbage",
            Src::Env(leak(format!(r#"{{"password":"{CANARY}"}} x"#))),
            65,
            "not valid JSON",
        ),
        case(
            "JSON array",
            Src::Env(leak(format!(r#"["{CANARY}"]"#))),
            65,
            "must be a JSON object",
        ),
        case(
            "JSON string",
            Src::Env(leak(format!(r#""{CANARY}""#))),
            65,
            "must be a JSON object",
        ),
        case("JSON null", Src::Env("null"), 65, "must be a JSON object"),
        // password
        case(
            "password missing",
            Src::Env(with("password", None)),
            65,
            "\"password\" is missing",
        ),
        case(
            "password null",
            Src::Env(with("password", Some("null"))),
            65,
            "\"password\" is missing",
        ),
        case(
            "password empty",
            Src::Env(with("password", Some("\"\""))),
            65,
            "\"password\" is empty",
        ),
        case(
            "password a number",
            Src::Env(with("password", Some("12345678"))),
            65,
            "\"password\" must be a string",
        ),
        case(
            "password an array",
            Src::Env(with("password", Some(leak(format!(r#"["{CANARY}"]"#))))),
            65,
            "\"password\" must be a string",
        ),
        case(
            "password with a newline",
            Src::Env(with("password", Some(leak(format!(r#""{CANARY}\nx""#))))),
            65,
            "\"password\" contains a newline",
        ),
        case(
            "password with a carriage return",
            Src::Env(with("password", Some(leak(format!(r#""{CANARY}\rx""#))))),
            65,
            "\"password\" contains a newline",
        ),
        case(
            "password with NUL",
            Src::Env(with(
                "password",
                Some(leak(format!(r#""{CANARY}\u0000x""#))),
            )),
            65,
            "\"password\" contains a newline or NUL",
        ),
        case(
            "password twice",
            Src::Env(leak(format!(
                r#"{{"host":"127.0.0.1","username":"app","password":"{CANARY}","password":"{CANARY}2"}}"#
            ))),
            65,
            "\"password\" appears more than once",
        ),
        // host
        case(
            "host missing",
            Src::Env(with("host", None)),
            78,
            "host is missing",
        ),
        case(
            "host empty",
            Src::Env(with("host", Some("\"\""))),
            78,
            "host is missing",
        ),
        case(
            "host a number",
            Src::Env(with("host", Some("10"))),
            65,
            "\"host\" must be a string",
        ),
        case(
            "host with a newline",
            Src::Env(with("host", Some(r#""db\nevil""#))),
            65,
            "\"host\" contains a control character",
        ),
        case(
            "host with NUL",
            Src::Env(with("host", Some(r#""db\u0000x""#))),
            65,
            "\"host\" contains a control character",
        ),
        case(
            "host twice",
            Src::Env(leak(format!(
                r#"{{"host":"a","host":"b","username":"app","password":"{CANARY}"}}"#
            ))),
            65,
            "\"host\" appears more than once",
        ),
        // port
        case("port 0", Src::Env(with("port", Some("0"))), 65, "\"port\""),
        case(
            "port 70000",
            Src::Env(with("port", Some("70000"))),
            65,
            "\"port\"",
        ),
        case(
            "port \"abc\"",
            Src::Env(with("port", Some("\"abc\""))),
            65,
            "\"port\"",
        ),
        case(
            "port 5432.5",
            Src::Env(with("port", Some("5432.5"))),
            65,
            "\"port\"",
        ),
        case(
            "port -1",
            Src::Env(with("port", Some("-1"))),
            65,
            "\"port\"",
        ),
        case(
            "port true",
            Src::Env(with("port", Some("true"))),
            65,
            "\"port\"",
        ),
        case(
            "port empty string",
            Src::Env(with("port", Some("\"\""))),
            65,
            "\"port\"",
        ),
        case(
            "port an object",
            Src::Env(with("port", Some("{}"))),
            65,
            "\"port\"",
        ),
        // username
        case(
            "username missing",
            Src::Env(with("username", None)),
            78,
            "username is missing",
        ),
        case(
            "username empty",
            Src::Env(with("username", Some("\"\""))),
            78,
            "username is missing",
        ),
        case(
            "username an object",
            Src::Env(with("username", Some("{}"))),
            65,
            "\"username\" must be a string",
        ),
        case(
            "username with a newline",
            Src::Env(with("username", Some(r#""app\n""#))),
            65,
            "\"username\" contains a control character",
        ),
        case(
            "username with NUL",
            Src::Env(with("username", Some(r#""a\u0000pp""#))),
            65,
            "\"username\" contains a control character",
        ),
        case(
            "username of 64 bytes",
            Src::Env(with("username", Some(leak(format!("\"{long}\""))))),
            78,
            "user name",
        ),
        // dbname
        case(
            "dbname of 64 bytes",
            Src::Env(with("dbname", Some(leak(format!("\"{long}\""))))),
            78,
            "database name",
        ),
        case(
            "dbname with a newline",
            Src::Env(with("dbname", Some(r#""app\ndb""#))),
            65,
            "\"dbname\" contains a control character",
        ),
        case(
            "dbname with NUL",
            Src::Env(with("dbname", Some(r#""app\u0000db""#))),
            65,
            "\"dbname\" contains a control character",
        ),
        case(
            "dbname a boolean",
            Src::Env(with("dbname", Some("false"))),
            65,
            "\"dbname\" must be a string",
        ),
        // engine
        case(
            "engine mysql",
            Src::Env(with("engine", Some("\"mysql\""))),
            78,
            "\"mysql\"",
        ),
        case(
            "engine a number",
            Src::Env(with("engine", Some("5"))),
            65,
            "\"engine\" must be a string",
        ),
        // size and encoding
        case(
            "secret over 64 KiB (env)",
            Src::Env(leak(big.clone())),
            65,
            "more than Secrets Manager's own limit of 65536 bytes",
        ),
        case(
            "secret over 64 KiB (file)",
            Src::File(big.into_bytes()),
            65,
            "more than Secrets Manager's own limit of 65536 bytes",
        ),
        case(
            "secret file not UTF-8",
            Src::File(not_utf8),
            65,
            "is not UTF-8 text (invalid byte at offset",
        ),
        // sources
        case(
            "secret file missing",
            Src::Args(&["once", "--secret-file", "/nonexistent/db-secret.json"]),
            78,
            "cannot read secret file /nonexistent/db-secret.json",
        ),
        case(
            "secret file is a directory",
            Src::Args(&["once", "--secret-file", "/"]),
            78,
            "cannot read secret file /",
        ),
        case(
            "secret variable unset",
            Src::Args(&["once", "--secret-env", "NOT_SET_ANYWHERE"]),
            78,
            "NOT_SET_ANYWHERE is not set",
        ),
        case(
            "conflicting sources",
            Src::Args(&["once", "--secret-env", "A", "--secret-file", "/b"]),
            64,
            "--secret-file",
        ),
        case(
            "no source at all",
            Src::Args(&["once"]),
            78,
            "no secret source given and PGHOST is not set",
        ),
        // flags
        case("--port 0", Src::Flags(&["--port", "0"]), 64, "--port"),
        case(
            "--port 70000",
            Src::Flags(&["--port", "70000"]),
            64,
            "--port",
        ),
        case("--port abc", Src::Flags(&["--port", "abc"]), 64, "--port"),
        case(
            "--wait-timeout soon",
            Src::Flags(&["--wait-timeout", "soon"]),
            64,
            "--wait-timeout",
        ),
        case(
            "--attempt-timeout -1s",
            Src::Flags(&["--attempt-timeout=-1s"]),
            64,
            "--attempt-timeout",
        ),
        case(
            "--sslmode maybe",
            Src::Flags(&["--sslmode", "maybe"]),
            64,
            "--sslmode",
        ),
        case(
            "--url-scheme mysql",
            Src::Flags(&["--url-scheme", "mysql"]),
            64,
            "--url-scheme",
        ),
        case(
            "--owner app",
            Src::Flags(&["--owner", "app"]),
            64,
            "--owner",
        ),
        case(
            "--drop-to 1:",
            Src::Flags(&["--drop-to", "1:"]),
            64,
            "--drop-to",
        ),
        case(
            "--database of 64 bytes",
            Src::Flags(&[
                "--database",
                "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
            ]),
            78,
            "--database",
        ),
        case(
            "--sslrootcert missing",
            Src::Flags(&[
                "--sslmode",
                "verify-full",
                "--sslrootcert",
                "/nonexistent/ca.pem",
            ]),
            78,
            "/nonexistent/ca.pem",
        ),
        // Values the files cannot carry exactly.
        case(
            "dbname with trailing spaces",
            Src::Env(with("dbname", Some("\"app1db  \""))),
            78,
            "dbname \"app1db  \" begins or ends with white space",
        ),
        case(
            "username with a trailing space",
            Src::Env(with("username", Some("\"master \""))),
            78,
            "username \"master \"",
        ),
        case(
            "bracketed IPv6 host",
            Src::Env(with("host", Some("\"[::1]\""))),
            78,
            "host \"[::1]\"",
        ),
        case(
            "host with a port",
            Src::Env(with("host", Some("\"db.example:5433\""))),
            78,
            "give the port in",
        ),
        case(
            "host with an at sign",
            Src::Env(with("host", Some("\"user@db.example\""))),
            78,
            "is not a host name",
        ),
        case(
            "host list",
            Src::Flags(&["--host", "a.example,b.example"]),
            78,
            "a list of hosts",
        ),
        // Durations that would overflow the clock.
        case(
            "--wait-timeout u64::MAX seconds",
            Src::Flags(&["--wait-timeout", "18446744073709551615"]),
            64,
            "--wait-timeout",
        ),
        case(
            "--wait-timeout 5124095576030431h",
            Src::Flags(&["--wait-timeout", "5124095576030431h"]),
            64,
            "too long",
        ),
        case(
            "unknown flag",
            Src::Flags(&["--pasword", "x"]),
            64,
            "--pasword",
        ),
    ]
}

fn run(c: &Case, out: &Path) -> std::process::Output {
    let mut cmd: Command = sidecar();
    cmd.env("AURORA_SIDECAR_LOG_FORMAT", "text")
        .env("AURORA_SIDECAR_WAIT_TIMEOUT", "2s")
        .env("AURORA_SIDECAR_OUT_DIR", out);
    let file = out.with_extension("secret.json");
    match &c.src {
        Src::Env(text) => {
            cmd.args(["once", "--secret-env", "DB_SECRET"])
                .env("DB_SECRET", text);
        }
        Src::File(bytes) => {
            std::fs::write(&file, bytes).expect("secret file");
            cmd.args(["once", "--secret-file"]).arg(&file);
        }
        Src::Flags(flags) => {
            cmd.args(["once", "--secret-env", "DB_SECRET"])
                .args(*flags)
                .env(
                    "DB_SECRET",
                    secret_json("127.0.0.1", 1, "app", CANARY, "appdb"),
                );
        }
        Src::Args(args) => {
            cmd.args(*args);
        }
    }
    cmd.output().expect("runs")
}

#[test]
fn every_bad_input_gets_its_exit_code_a_named_field_and_no_files() {
    let cases = cases();
    assert!(cases.len() >= 40, "the issue asks for at least 40 cases");
    let root = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let out = root.path().join(format!("case{i}"));
        let o = run(c, &out);
        let (so, se) = (stdout(&o), stderr(&o));
        let mut problems = Vec::new();
        if o.status.code() != Some(c.code) {
            problems.push(format!("exit {:?}, expected {}", o.status.code(), c.code));
        }
        if !se.contains(c.needle) {
            problems.push(format!("stderr lacks {:?}", c.needle));
        }
        if matches!(c.src, Src::Env(_))
            && c.code == 65
            && !se.contains("environment variable DB_SECRET")
        {
            problems.push("the message does not name the source".into());
        }
        if so.contains(CANARY) || se.contains(CANARY) {
            problems.push("the password reached the output".into());
        }
        for f in ["pgpass", "pg_service.conf", "application.profile", "ready"] {
            if out.join(f).exists() {
                problems.push(format!("{f} was written"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n  stderr: {se}",
                c.what,
                problems.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    figure("bad_inputs", cases.len());
}

/// Quotes and SQL in a database name are data, not code: the exact name is created (it is
/// a legal identifier once quoted) and nothing else happens.
#[test]
fn sql_in_the_database_name_is_quoted_not_run() {
    let pg = shared_pg();
    let user = unique("inj");
    pg.create_role(&user, "pw-inj", true);
    let db = r#"it's "x"; DROP DATABASE postgres; --"#;
    let out = tempfile::tempdir().expect("tempdir");
    let o = sidecar()
        .args(["once", "--secret-env", "DB_SECRET", "--wait-timeout", "30s"])
        .arg("--out-dir")
        .arg(out.path())
        .env(
            "DB_SECRET",
            secret_json("127.0.0.1", pg.port, &user, "pw-inj", db),
        )
        .output()
        .expect("runs");
    assert_exit(&o, 0);
    assert!(pg.database_exists(db), "the exact name was created");
    assert!(pg.database_exists("postgres"), "nothing was dropped");
    let o = psql_service(out.path(), "app", "select current_database()");
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), db);
}
