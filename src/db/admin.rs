//! Where the admin login comes from, for the bootstrap: the cluster's master secret
//! (`--admin-secret-*`), or, where there is no password anywhere (Aurora's express
//! configuration takes IAM authentication only), an IAM token signed for the admin user
//! (`--admin-iam-user`) with the task's own credentials, at the app's host and port.

use std::fmt;

use crate::class::ErrorClass;
use crate::iam::{IamError, Signer};
use crate::secret::{Overrides, Resolver, SecretError, Source, Target};

/// What the flags name (validated configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminSource {
    /// The master secret: `username`, `password`, optional `host`/`port`.
    Secret(Source),
    /// This user, with an IAM token; on Aurora DSQL (`admin`), with the IAM ARN the app
    /// role is mapped to (`--dsql-grant-arn`).
    Iam {
        user: String,
        dsql_grant: Option<String>,
    },
}

impl AdminSource {
    /// The environment variable the admin secret came from, if one did (an exec'd app
    /// never gets it).
    pub fn secret_variable(&self) -> Option<&str> {
        match self {
            AdminSource::Secret(s) => s.secret_variable(),
            AdminSource::Iam { .. } => None,
        }
    }

    /// What the bootstrap gives the app role ([`Admin::app_login`]), for `render`'s plan.
    pub fn app_login(&self, iam: bool) -> AppLogin<'_> {
        match self {
            AdminSource::Iam { dsql_grant, .. } => app_login(dsql_grant.as_deref(), iam),
            AdminSource::Secret(_) => app_login(None, iam),
        }
    }
}

fn app_login(dsql_grant: Option<&str>, iam: bool) -> AppLogin<'_> {
    match dsql_grant {
        Some(arn) => AppLogin::Dsql { arn },
        None if iam => AppLogin::RdsIam,
        None => AppLogin::Password,
    }
}

impl fmt::Display for AdminSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminSource::Secret(s) => s.fmt(f),
            AdminSource::Iam { user, .. } => write!(f, "IAM tokens for the admin user {user}"),
        }
    }
}

/// How the app role logs in, which decides what the bootstrap gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppLogin<'a> {
    /// A password: the role's SCRAM verifier.
    Password,
    /// RDS IAM tokens: `GRANT rds_iam`.
    RdsIam,
    /// Aurora DSQL tokens: `AWS IAM GRANT` to this IAM ARN (`db::dsql_roles`).
    Dsql { arn: &'a str },
}

/// The admin login at run time: its secret's resolver, or the user and a signer of its
/// own (and on DSQL the ARN the app role is granted to).
pub enum Admin {
    Secret(Resolver),
    Iam {
        user: String,
        signer: Signer,
        dsql_grant: Option<String>,
    },
}

/// Why the admin login could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Iam(#[from] IamError),
}

impl AdminError {
    pub fn class(&self) -> ErrorClass {
        match self {
            AdminError::Secret(e) => e.class(),
            AdminError::Iam(e) => e.class(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            AdminError::Secret(e) => e.is_retryable(),
            AdminError::Iam(e) => e.is_retryable(),
        }
    }
}

impl Admin {
    /// Whether the login comes from a secret (which may be read once and kept).
    pub fn is_secret(&self) -> bool {
        matches!(self, Admin::Secret(_))
    }

    /// What the bootstrap gives the app role for its way of logging in: `iam` is whether
    /// the app signs tokens; on DSQL, the `AWS IAM GRANT` to the configured ARN.
    pub fn app_login(&self, iam: bool) -> AppLogin<'_> {
        match self {
            Admin::Iam { dsql_grant, .. } => app_login(dsql_grant.as_deref(), iam),
            Admin::Secret(_) => app_login(None, iam),
        }
    }

    /// `region` and `dsql` are the app's IAM settings (`config::Iam`), for the token.
    pub fn new(source: &AdminSource, region: Option<String>, dsql: bool) -> Self {
        match source {
            AdminSource::Secret(s) => Admin::Secret(Resolver::new(s.clone(), Overrides::default())),
            AdminSource::Iam { user, dsql_grant } => Admin::Iam {
                user: user.clone(),
                signer: Signer::new(region, dsql),
                dsql_grant: dsql_grant.clone(),
            },
        }
    }

    /// The admin login for setting `app` up, to `database` (the maintenance database).
    pub async fn target(&mut self, app: &Target, database: &str) -> Result<Target, AdminError> {
        match self {
            Admin::Secret(resolver) => Ok(resolver.admin_target(app, database).await?),
            Admin::Iam { user, signer, .. } => {
                let token = signer.token(&app.host, app.port, user).await?;
                let admin = Target {
                    user: user.clone(),
                    database: database.to_string(),
                    ..app.with_password(token.value)
                };
                Ok(admin)
            }
        }
    }
}
