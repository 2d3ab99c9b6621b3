//! What a name must be for every rendered file to carry it exactly: PostgreSQL's
//! identifier length, no control characters, no white space libpq would trim, one host.

use super::SecretError;

/// PostgreSQL truncates identifiers to NAMEDATALEN-1 bytes without telling the client, so a
/// longer name would create or address a different database than the one configured.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The target's host, user and database, checked before anything is rendered.
pub(super) fn check_target_names(
    origin: &str,
    host: &str,
    user: &str,
    database: &str,
) -> Result<(), SecretError> {
    check_identifier("database name", database)?;
    check_identifier("user name", user)?;
    for (field, value) in [("host", host), ("username", user), ("dbname", database)] {
        if value.chars().any(char::is_control) {
            return Err(SecretError::Malformed {
                origin: origin.to_string(),
                reason: format!(
                    "field \"{field}\" contains a control character, which pg_service.conf and pgpass cannot represent"
                ),
            });
        }
    }
    check_carriable(origin, host, user, database)
}

/// Refuses names the rendered files cannot carry exactly: libpq trims white space around
/// pg_service.conf values (`"app1db  "` would reach `app1db` there and `app1db  ` through
/// `DATABASE_URL`), and a host must be one host, as every file writes it: a DNS name, an
/// IPv4 or (unbracketed) IPv6 address, or a Unix socket directory.
fn check_carriable(
    origin: &str,
    host: &str,
    user: &str,
    database: &str,
) -> Result<(), SecretError> {
    let refuse = |field: &'static str, value: &str, reason: &'static str| {
        Err(SecretError::Uncarriable {
            origin: origin.to_string(),
            field,
            value: value.to_string(),
            reason,
        })
    };
    for (field, value) in [("username", user), ("dbname", database)] {
        if value.trim() != value {
            return refuse(
                field,
                value,
                "begins or ends with white space, which libpq trims from pg_service.conf",
            );
        }
    }
    if host.chars().any(char::is_whitespace) || host.contains(',') {
        return refuse(
            "host",
            host,
            "holds white space or a comma (libpq reads a list of hosts)",
        );
    }
    if host.starts_with('/') {
        return Ok(());
    }
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return refuse(
            "host",
            host,
            "is neither a host name nor an IPv6 address: give the port in \"port\" (or --port), and an IPv6 address without brackets",
        );
    }
    if host.contains(['@', '/', '?', '#', '[', ']', '\\', '%', '\'', '"']) {
        return refuse("host", host, "is not a host name or address");
    }
    Ok(())
}

/// Rejects names PostgreSQL would truncate.
pub fn check_identifier(what: &'static str, name: &str) -> Result<(), SecretError> {
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(SecretError::NameTooLong {
            what,
            name: name.to_string(),
            len: name.len(),
        });
    }
    Ok(())
}
