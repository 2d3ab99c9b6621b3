//! Parsing the secret JSON that RDS/Aurora (and Copilot's addon) write.
//!
//! Shape: `host`, `port` (number or numeric string), `username`, `password` (required),
//! `dbname`, `engine`; other keys (`dbClusterIdentifier`, …) are ignored. Errors name the
//! field and never the value.

use std::collections::HashSet;
use std::fmt;

use secrecy::SecretString;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{Credentials, MAX_SECRET_BYTES, SecretError};

/// The fields this parser reads; a duplicate of one of them is refused (which copy would
/// win is up to the parser, and RDS never writes one). Duplicates of other keys are
/// ignored like the keys themselves.
const FIELDS: &[&str] = &["host", "port", "username", "password", "dbname", "engine"];

/// Engines that speak the PostgreSQL protocol. RDS writes `postgres` for both RDS and Aurora
/// PostgreSQL secrets; hand-made secrets often say `aurora-postgresql`.
const POSTGRES_ENGINES: &[&str] = &["postgres", "postgresql", "aurora-postgresql"];

/// Parses the secret JSON. `origin` names the source in error messages.
pub fn parse_secret_json(text: &str, origin: &str) -> Result<Credentials, SecretError> {
    let malformed = |reason: String| SecretError::Malformed {
        origin: origin.to_string(),
        reason,
    };
    // Secrets Manager itself refuses a larger secret; anything bigger is not a database
    // secret, and parsing megabytes on the start path is not worth doing.
    if text.len() > MAX_SECRET_BYTES {
        return Err(malformed(format!(
            "secret is {} bytes, more than Secrets Manager's own limit of {MAX_SECRET_BYTES} bytes",
            text.len()
        )));
    }
    // serde_json's syntax errors say where, not what, so they are safe to repeat.
    let value: Value = serde_json::from_str(text).map_err(|e| {
        malformed(format!(
            "secret is not valid JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(map) = value else {
        return Err(malformed(format!(
            "secret must be a JSON object, found {}",
            kind(&value)
        )));
    };

    // Only objects get here, so this second pass cannot fail on syntax.
    if let Ok(FirstDuplicate(Some(field))) = serde_json::from_str(text) {
        return Err(malformed(format!(
            "field \"{field}\" appears more than once; remove the extra copy"
        )));
    }

    if let Some(engine) = opt_string(&map, "engine", origin)?
        && !POSTGRES_ENGINES.contains(&engine.to_ascii_lowercase().as_str())
    {
        return Err(SecretError::UnsupportedEngine {
            origin: origin.to_string(),
            engine,
        });
    }
    Ok(Credentials {
        host: opt_string(&map, "host", origin)?,
        port: port(&map, origin)?,
        username: opt_string(&map, "username", origin)?,
        password: password(&map, origin)?,
        dbname: opt_string(&map, "dbname", origin)?,
    })
}

/// Optional here: IAM authentication needs none; `build_target` requires it otherwise, and
/// checks what it may contain for every source alike.
fn password(map: &Map<String, Value>, origin: &str) -> Result<Option<SecretString>, SecretError> {
    let reason = match map.get("password") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if !s.is_empty() => return Ok(Some(SecretString::from(s.clone()))),
        Some(Value::String(_)) => "field \"password\" is empty".to_string(),
        Some(other) => format!("field \"password\" must be a string, found {}", kind(other)),
    };
    Err(SecretError::Malformed {
        origin: origin.to_string(),
        reason,
    })
}

fn opt_string(
    map: &Map<String, Value>,
    field: &str,
    origin: &str,
) -> Result<Option<String>, SecretError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(SecretError::Malformed {
            origin: origin.to_string(),
            reason: format!("field \"{field}\" must be a string, found {}", kind(other)),
        }),
    }
}

/// `port` as RDS writes it (a number) or as many hand-made secrets do (a string).
fn port(map: &Map<String, Value>, origin: &str) -> Result<Option<u16>, SecretError> {
    let parsed = match map.get("port") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
        Some(_) => None,
    };
    match parsed {
        Some(p) if p != 0 => Ok(Some(p)),
        _ => Err(SecretError::Malformed {
            origin: origin.to_string(),
            reason: "field \"port\" must be a port number from 1 to 65535 (a JSON number or a numeric string)".into(),
        }),
    }
}

/// The first of [`FIELDS`] that appears twice in a JSON object (`serde_json::Map` keeps
/// the last copy silently). Values are skipped, never kept.
struct FirstDuplicate(Option<&'static str>);

impl<'de> Deserialize<'de> for FirstDuplicate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = FirstDuplicate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstDuplicate, A::Error> {
                let mut seen = HashSet::new();
                let mut first = None;
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    if let Some(field) = FIELDS.iter().copied().find(|f| *f == key)
                        && !seen.insert(field)
                    {
                        first = first.or(Some(field));
                    }
                }
                Ok(FirstDuplicate(first))
            }
        }
        d.deserialize_map(Keys)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::class::ErrorClass;

    const RDS: &str = r#"{"dbClusterIdentifier":"c1","password":"p@ss:w/rd","dbname":"app","engine":"postgres","port":5432,"host":"c1.cluster-x.eu-west-1.rds.amazonaws.com","username":"postgres"}"#;

    #[test]
    fn rds_secret_with_numeric_port_parses() {
        let c = parse_secret_json(RDS, "t").expect("valid");
        assert_eq!(
            c.host.as_deref(),
            Some("c1.cluster-x.eu-west-1.rds.amazonaws.com")
        );
        assert_eq!(
            (c.port, c.username.as_deref(), c.dbname.as_deref()),
            (Some(5432), Some("postgres"), Some("app"))
        );
        assert_eq!(
            c.password.as_ref().map(|p| p.expose_secret()),
            Some("p@ss:w/rd")
        );
    }

    #[test]
    fn port_as_string_is_accepted() {
        let c = parse_secret_json(
            r#"{"host":"h","port":"6543","username":"u","password":"p"}"#,
            "t",
        )
        .expect("valid");
        assert_eq!(c.port, Some(6543));
    }

    #[test]
    fn managed_master_secret_has_only_user_and_password() {
        let c = parse_secret_json(r#"{"username":"postgres","password":"x"}"#, "t").expect("valid");
        assert!(c.host.is_none() && c.port.is_none() && c.dbname.is_none());
    }

    #[test]
    fn bad_ports_name_the_field_not_the_value() {
        for port in [r#""abc""#, "0", "70000", "-1", "5432.5", "true", r#""""#] {
            let json = format!(r#"{{"host":"h","port":{port},"username":"u","password":"p"}}"#);
            let err = parse_secret_json(&json, "t").expect_err(&json);
            let msg = err.to_string();
            assert!(msg.contains("\"port\""), "{msg}");
            assert_eq!(err.class(), ErrorClass::SecretMalformed);
        }
    }

    #[test]
    fn mysql_engine_is_a_configuration_error() {
        let err = parse_secret_json(
            r#"{"engine":"mysql","host":"h","username":"u","password":"p"}"#,
            "DB_SECRET",
        )
        .expect_err("mysql");
        assert!(err.to_string().contains("\"mysql\""), "{err}");
        assert_eq!(err.class(), ErrorClass::Config);
        for ok in ["postgres", "aurora-postgresql", "Postgres"] {
            let json = format!(r#"{{"engine":"{ok}","password":"p"}}"#);
            assert!(parse_secret_json(&json, "t").is_ok(), "{ok}");
        }
    }

    #[test]
    fn missing_password_is_none_and_empty_is_malformed() {
        let c = parse_secret_json(r#"{"host":"h","username":"u"}"#, "t")
            .expect("IAM secrets have none");
        assert!(c.password.is_none());
        let err = parse_secret_json(r#"{"password":""}"#, "t").expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn wrong_types_do_not_echo_the_value() {
        let err = parse_secret_json(r#"{"password":987654321}"#, "t").expect_err("number");
        assert!(!err.to_string().contains("987654321"), "{err}");
        assert!(
            err.to_string().contains("must be a string, found a number"),
            "{err}"
        );
    }

    #[test]
    fn invalid_json_reports_position_only() {
        let text = r#"{"password":"hunter2-secret" "host":"h"}"#;
        let err = parse_secret_json(text, "secret file /x").expect_err("syntax");
        let msg = err.to_string();
        assert!(
            msg.starts_with("secret file /x: secret is not valid JSON"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        assert_eq!(err.class(), ErrorClass::SecretMalformed);
    }

    #[test]
    fn non_object_json_is_rejected() {
        let err = parse_secret_json(r#""just-a-password""#, "t").expect_err("string");
        assert!(
            err.to_string()
                .contains("must be a JSON object, found a string"),
            "{err}"
        );
        assert!(!err.to_string().contains("just-a-password"));
    }

    #[test]
    fn duplicate_fields_are_refused_by_name() {
        for field in ["password", "host", "port"] {
            let json = format!(
                r#"{{"host":"h","username":"u","password":"p","port":5432,"{field}":"x"}}"#
            );
            let err = parse_secret_json(&json, "t").expect_err(&json);
            assert!(
                err.to_string()
                    .contains(&format!("field \"{field}\" appears more than once")),
                "{err}"
            );
            assert!(!err.to_string().contains(":\"x\""), "{err}");
        }
        // Unknown keys are ignored, duplicated or not.
        let c = parse_secret_json(r#"{"a":1,"a":2,"password":"p"}"#, "t").expect("valid");
        assert_eq!(c.password.as_ref().map(|p| p.expose_secret()), Some("p"));
    }

    #[test]
    fn a_secret_over_secrets_managers_limit_is_refused_unparsed() {
        let json = format!(
            r#"{{"password":"p","pad":"{}"}}"#,
            "x".repeat(MAX_SECRET_BYTES)
        );
        let err = parse_secret_json(&json, "t").expect_err("too big");
        assert!(err.to_string().contains("65536"), "{err}");
        assert_eq!(err.class(), ErrorClass::SecretMalformed);
        let fits = format!(
            r#"{{"password":"p","pad":"{}"}}"#,
            "x".repeat(MAX_SECRET_BYTES - 40)
        );
        assert!(parse_secret_json(&fits, "t").is_ok());
    }

    mod properties {
        use proptest::prelude::*;

        use crate::testing::Cases;
        use serde_json::Value;

        use super::*;

        /// Any JSON value, nested a few levels, with the secret's own keys likely.
        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,20}".prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 32, 6, |inner| {
                let key = prop_oneof![
                    Just("host".to_string()),
                    Just("port".to_string()),
                    Just("username".to_string()),
                    Just("password".to_string()),
                    Just("dbname".to_string()),
                    Just("engine".to_string()),
                    ".{0,8}",
                ];
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::btree_map(key, inner, 0..7)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        static TEXT: Cases = Cases::new("fuzz_parser_any_text", 10_000);
        static SHAPES: Cases = Cases::new("fuzz_parser_json_shapes", 4_096);

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(TEXT.total()))]

            /// The parser never panics, whatever the text (the fuzz target of issue 10,
            /// bounded so that every CI run does it).
            #[test]
            fn parser_never_panics_on_any_text(text in ".{0,300}") {
                TEXT.tick();
                let _ = parse_secret_json(&text, "t");
            }

        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(SHAPES.total()))]

            /// ...nor on any JSON shape, and an error never quotes the password.
            #[test]
            fn parser_never_panics_or_echoes_the_password(value in json(), pw in "[a-zA-Z0-9]{12}") {
                SHAPES.tick();
                let mut value = value;
                if let Value::Object(map) = &mut value {
                    map.insert("password".into(), Value::String(pw.clone()));
                }
                if let Err(e) = parse_secret_json(&value.to_string(), "t") {
                    prop_assert!(!e.to_string().contains(&pw), "{}", e);
                }
            }
        }
    }
}
