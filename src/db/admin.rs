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
    /// This user, with an IAM token.
    Iam { user: String },
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
}

impl fmt::Display for AdminSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminSource::Secret(s) => s.fmt(f),
            AdminSource::Iam { user } => write!(f, "IAM tokens for the admin user {user}"),
        }
    }
}

/// The admin login at run time: its secret's resolver, or the user and a signer of its own.
pub enum Admin {
    Secret(Resolver),
    Iam { user: String, signer: Signer },
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

    /// `region` and `dsql` are the app's IAM settings (`config::Iam`), for the token.
    pub fn new(source: &AdminSource, region: Option<String>, dsql: bool) -> Self {
        match source {
            AdminSource::Secret(s) => Admin::Secret(Resolver::new(s.clone(), Overrides::default())),
            AdminSource::Iam { user } => Admin::Iam {
                user: user.clone(),
                signer: Signer::new(region, dsql),
            },
        }
    }

    /// The admin login for setting `app` up, to `database` (the maintenance database).
    pub async fn target(&mut self, app: &Target, database: &str) -> Result<Target, AdminError> {
        match self {
            Admin::Secret(resolver) => Ok(resolver.admin_target(app, database).await?),
            Admin::Iam { user, signer } => {
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
