//! The validated place to log in: the secret merged with the flags (`--host --port --user
//! --database`), checked the same way for every source.

use secrecy::{ExposeSecret, SecretString};

use super::names::{check_identifier, check_target_names};
use super::{ADMIN_SHAPE, Credentials, SecretError, Source};

/// Flags that override what the secret says (`--host --port --user --database`), and
/// whether the secret must carry a password (not with `--iam-auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub password_required: bool,
}

impl Default for Overrides {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            user: None,
            database: None,
            password_required: true,
        }
    }
}

/// A complete, validated place to log in: the secret merged with the overrides. With
/// `--iam-auth` the password is empty until the wait loop or the refresh signs a token
/// into it (`Target::with_password`).
#[derive(Clone, Debug)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: SecretString,
    pub database: String,
}

/// `host:port`, with an IPv6 literal bracketed.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Target {
    /// `host:port`, with IPv6 literals bracketed, for messages and URLs.
    pub fn authority(&self) -> String {
        authority(&self.host, self.port)
    }

    /// The same login with another password (an IAM token).
    pub fn with_password(&self, password: SecretString) -> Target {
        Target {
            password,
            ..self.clone()
        }
    }

    /// True when both name the same server, user and database, whatever the password.
    pub fn same_place(&self, other: &Target) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.user == other.user
            && self.database == other.database
    }

    /// True when both point at the same login with the same password; used to tell whether
    /// a re-resolved secret actually changed anything.
    pub fn same_login(&self, other: &Target) -> bool {
        self.same_place(other) && self.password.expose_secret() == other.password.expose_secret()
    }
}

/// Merges flags over the secret and validates the result, the same way for every source.
///
/// The database defaults to the user name, as libpq's does, when neither the secret nor
/// `--database` names one.
pub fn build_target(
    creds: Credentials,
    overrides: &Overrides,
    source: &Source,
) -> Result<Target, SecretError> {
    let origin = &source.to_string();
    // With no source given at all, name the variable that would have given the value.
    let libpq = *source == Source::Libpq;
    let missing = |field, var, hint| {
        if libpq {
            SecretError::LibpqMissing { var }
        } else {
            SecretError::MissingTarget {
                origin: origin.clone(),
                field,
                hint,
            }
        }
    };
    let host = (overrides.host.clone().or(creds.host))
        .filter(|h| !h.is_empty())
        .ok_or(missing(
            "host",
            "PGHOST",
            "set it in the secret or pass --host",
        ))?;
    let port = overrides.port.or(creds.port).unwrap_or(5432);
    let user = (overrides.user.clone().or(creds.username))
        .filter(|u| !u.is_empty())
        .ok_or(missing(
            "username",
            "PGUSER",
            "the secret must carry \"username\", or pass --user",
        ))?;
    let password = password(creds.password, overrides, libpq, origin)?;
    let database = (overrides.database.clone().or(creds.dbname))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    check_target_names(origin, &host, &user, &database)?;
    Ok(Target {
        host,
        port,
        user,
        password,
        database,
    })
}

/// The admin login from the admin secret: its user and password (the cluster's master
/// secret), host and port from it or else the app's, and `database` (the maintenance
/// database).
pub(super) fn admin_target(
    creds: Credentials,
    app: &Target,
    database: &str,
    origin: &str,
) -> Result<Target, SecretError> {
    let missing = |field| SecretError::MissingTarget {
        origin: origin.to_string(),
        field,
        hint: ADMIN_SHAPE,
    };
    let user = creds
        .username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| missing("username"))?;
    let password = password(
        Some(creds.password.ok_or_else(|| missing("password"))?),
        &Overrides::default(),
        false,
        origin,
    )?;
    check_identifier("admin user name", &user)?;
    Ok(Target {
        host: creds
            .host
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| app.host.clone()),
        port: creds.port.unwrap_or(app.port),
        user,
        password,
        database: database.to_string(),
    })
}

/// The password, required unless IAM authentication signs one, and one that pgpass (one
/// line) and the wire protocol (C strings) can carry: no newline, carriage return or NUL,
/// whichever source it came from.
fn password(
    given: Option<SecretString>,
    overrides: &Overrides,
    libpq: bool,
    origin: &str,
) -> Result<SecretString, SecretError> {
    let field = if libpq {
        "PGPASSWORD"
    } else {
        "field \"password\""
    };
    match given {
        Some(p) if p.expose_secret().contains(['\n', '\r', '\0']) => Err(SecretError::Malformed {
            origin: origin.to_string(),
            reason: format!(
                "{field} contains a newline or NUL character, which pgpass and the PostgreSQL protocol cannot carry"
            ),
        }),
        Some(p) => Ok(p),
        // IAM authentication signs a token into it before any login.
        None if !overrides.password_required => Ok(SecretString::from(String::new())),
        None if libpq => Err(SecretError::LibpqMissing { var: "PGPASSWORD" }),
        None => Err(SecretError::Malformed {
            origin: origin.to_string(),
            reason: "field \"password\" is missing (or pass --iam-auth to log in with IAM tokens)"
                .into(),
        }),
    }
}
