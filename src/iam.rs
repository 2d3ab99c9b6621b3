//! IAM database authentication: the password is a token, a SigV4-presigned
//! `GET https://HOST:PORT/?Action=connect&DBUser=USER` for service `rds-db`, signed with the
//! task role's credentials, valid 15 minutes, with `https://` removed. Aurora DSQL's is
//! the same but for `GET https://HOST/?Action=DbConnectAdmin` (the `admin` role) or
//! `?Action=DbConnect` (any other), service `dsql`: no port, no user (botocore's
//! `_dsql_generate_db_auth_token`). Signed here with `aws-sigv4` directly (not the
//! `aws-sdk-rds` client, which compiles the whole RDS API).
//!
//! Invariants:
//! - the token lives in a [`SecretString`] from the moment it is made; nothing here logs it
//!   (`aws-sigv4` traces the canonical request and the string to sign, never the
//!   signature);
//! - the region is never guessed: `--region`, `AWS_REGION`/`AWS_DEFAULT_REGION`, or the RDS
//!   host name (`*.REGION.rds.amazonaws.com`), else a configuration error;
//! - a token is not valid beyond the credentials that signed it: [`Token::expires_at`] is
//!   the earlier of the two.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::SecretString;

use crate::class::ErrorClass;
use crate::endpoint::{self, Endpoint};
use crate::secret::Resolved;

/// How long RDS accepts a token (`X-Amz-Expires`); 900 s is the maximum (and DSQL's
/// default).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The DSQL role whose tokens are for `DbConnectAdmin`.
pub const DSQL_ADMIN: &str = "admin";

/// SigV4's canonical query encoding: everything but RFC 3986's unreserved characters.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error(
        "no AWS region to sign an IAM token for {host}: pass --region or set AWS_REGION (ECS sets it), or use the cluster's *.REGION.rds.amazonaws.com (DSQL: ID.dsql.REGION.on.aws) host name"
    )]
    NoRegion { host: String },
    #[error(
        "no AWS credentials to sign an IAM token: give the task a task role with rds-db:connect (ECS taskRoleArn; Copilot creates one), or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
    )]
    NoCredentials {
        /// The SDK's account of every provider it tried.
        #[source]
        source: BoxError,
    },
    #[error("AWS credentials for the IAM token are not available yet")]
    Unavailable {
        #[source]
        source: BoxError,
    },
    #[error("signing the IAM token")]
    Signing {
        #[source]
        source: BoxError,
    },
}

impl IamError {
    pub fn class(&self) -> ErrorClass {
        match self {
            IamError::NoRegion { .. } | IamError::NoCredentials { .. } => ErrorClass::Config,
            IamError::Unavailable { .. } => ErrorClass::TokenUnavailable,
            IamError::Signing { .. } => ErrorClass::Internal,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, IamError::Unavailable { .. })
    }
}

/// A signed token and how long it is good for (`Debug` shows no value: `SecretString`).
#[derive(Clone, Debug)]
pub struct Token {
    pub value: SecretString,
    pub expires_at: SystemTime,
}

/// The token for `user` at `host:port`, signed at `at` with `creds` for `region`.
pub fn sign_token(
    host: &str,
    port: u16,
    user: &str,
    region: &str,
    creds: &Credentials,
    at: SystemTime,
) -> Result<SecretString, IamError> {
    // Host names are case-insensitive and RDS endpoints are lowercase; signing one
    // spelling consistently keeps the signed host header and the token's own text equal.
    let host = host.to_ascii_lowercase();
    let user = utf8_percent_encode(user, QUERY).to_string();
    let unsigned = format!("{host}:{port}/?Action=connect&DBUser={user}");
    presign(unsigned, "rds-db", region, creds, at)
}

/// The Aurora DSQL token for `user` (`DbConnectAdmin` for `admin`, else `DbConnect`) at
/// `host`, signed at `at` with `creds` for `region`.
pub fn sign_dsql_token(
    host: &str,
    user: &str,
    region: &str,
    creds: &Credentials,
    at: SystemTime,
) -> Result<SecretString, IamError> {
    let host = host.to_ascii_lowercase();
    let action = if user == DSQL_ADMIN {
        "DbConnectAdmin"
    } else {
        "DbConnect"
    };
    presign(
        format!("{host}/?Action={action}"),
        "dsql",
        region,
        creds,
        at,
    )
}

/// `unsigned` (host, path and query, no scheme) presigned for `service`, valid
/// [`TOKEN_LIFETIME`]: the signature's query parameters appended.
fn presign(
    unsigned: String,
    service: &str,
    region: &str,
    creds: &Credentials,
    at: SystemTime,
) -> Result<SecretString, IamError> {
    let signing = |e: BoxError| IamError::Signing { source: e };
    let url = format!("https://{unsigned}");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| signing(e.into()))?
        .into();
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| signing(e.into()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| signing(e.into()))?
        .into_parts();
    let mut token = unsigned;
    for (name, value) in instructions.params() {
        token.push('&');
        token.push_str(name);
        token.push('=');
        token.extend(utf8_percent_encode(value, QUERY));
    }
    Ok(SecretString::from(token))
}

/// Signs tokens with the default credential chain (the ECS task role).
pub struct Signer {
    /// `--region` or the environment; `None`: from each target's host name.
    region: Option<String>,
    /// `--dsql`: DSQL tokens for any host (else for `*.dsql.REGION.on.aws` hosts only).
    dsql: bool,
    provider: Option<SharedCredentialsProvider>,
}

impl Signer {
    pub fn new(region: Option<String>, dsql: bool) -> Self {
        Self {
            region,
            dsql,
            provider: None,
        }
    }

    /// Whether tokens for `host` are DSQL's.
    pub fn dsql_for(&self, host: &str) -> bool {
        self.dsql || endpoint::kind(host) == Endpoint::Dsql
    }

    /// The region a token for `host` is signed for.
    pub fn region_for(&self, host: &str) -> Result<String, IamError> {
        self.region
            .clone()
            .or_else(|| endpoint::region(host))
            .ok_or_else(|| IamError::NoRegion {
                host: host.to_string(),
            })
    }

    async fn provider(&mut self) -> Result<SharedCredentialsProvider, IamError> {
        if let Some(p) = &self.provider {
            return Ok(p.clone());
        }
        let conf = crate::crypto::aws_config_loader().load().await;
        let provider = conf
            .credentials_provider()
            .ok_or_else(|| IamError::NoCredentials {
                source: "the SDK configured no credential provider".into(),
            })?;
        Ok(self.provider.insert(provider).clone())
    }

    /// `resolved` with a fresh token as its password.
    pub async fn sign(&mut self, resolved: Resolved) -> Result<Resolved, IamError> {
        let t = &resolved.target;
        let token = self.token(&t.host, t.port, &t.user).await?;
        Ok(Resolved {
            target: t.with_password(token.value),
            token_expires_at: Some(token.expires_at),
            ..resolved
        })
    }

    /// A fresh token for `user` at `host:port`. The provider caches credentials and
    /// refreshes them before they expire, so each call signs with current ones.
    pub async fn token(&mut self, host: &str, port: u16, user: &str) -> Result<Token, IamError> {
        let region = self.region_for(host)?;
        let provider = self.provider().await?;
        let creds = provider.provide_credentials().await.map_err(|e| match e {
            CredentialsError::CredentialsNotLoaded(_) => IamError::NoCredentials {
                source: Box::new(e),
            },
            other => IamError::Unavailable {
                source: Box::new(other),
            },
        })?;
        let now = SystemTime::now();
        let value = if self.dsql_for(host) {
            sign_dsql_token(host, user, &region, &creds, now)?
        } else {
            sign_token(host, port, user, &region, &creds, now)?
        };
        let lifetime = now + TOKEN_LIFETIME;
        let expires_at = creds.expiry().map_or(lifetime, |c| c.min(lifetime));
        Ok(Token { value, expires_at })
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use secrecy::ExposeSecret;

    use super::*;

    fn creds(session: Option<&str>) -> Credentials {
        Credentials::new("akid", "secret", session.map(str::to_string), None, "test")
    }

    /// The AWS SDK for Rust's own test vector for RDS auth tokens (`signing_works` in
    /// aws-sdk-rds's auth_token.rs), byte for byte.
    #[test]
    fn reproduces_the_aws_sdk_test_vector() {
        let at = UNIX_EPOCH + Duration::from_secs(1_724_709_600);
        let token = sign_token(
            "prod-instance.us-east-1.rds.amazonaws.com",
            3306,
            "peccy",
            "us-east-1",
            &creds(None),
            at,
        )
        .expect("signs");
        assert_eq!(
            token.expose_secret(),
            "prod-instance.us-east-1.rds.amazonaws.com:3306/?Action=connect&DBUser=peccy&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=akid%2F20240826%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=dd0cba843009474347af724090233265628ace491ea17ce3eb3da098b983ad89"
        );
    }

    /// botocore's `generate_db_connect_admin_auth_token` and
    /// `generate_db_connect_auth_token` for these credentials at this time, byte for byte
    /// (made by `tests/iam/dsql_vectors.py`).
    #[test]
    fn dsql_tokens_match_botocores_signer() {
        let at = UNIX_EPOCH + Duration::from_secs(1_724_709_600);
        let host = "peccy.dsql.us-east-1.on.aws";
        let sign =
            |user| sign_dsql_token(host, user, "us-east-1", &creds(None), at).expect("signs");
        assert_eq!(
            sign("admin").expose_secret(),
            "peccy.dsql.us-east-1.on.aws/?Action=DbConnectAdmin&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=akid%2F20240826%2Fus-east-1%2Fdsql%2Faws4_request&X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=b2b75a9b74a054d3cb4236fb03909324359778a172edc6e9463a559fc99ed4d8"
        );
        assert_eq!(
            sign("app").expose_secret(),
            "peccy.dsql.us-east-1.on.aws/?Action=DbConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=akid%2F20240826%2Fus-east-1%2Fdsql%2Faws4_request&X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=0cd578ed49683a128e7a90641b40e7a04776644b1958a9921d33e6658f0d14dd"
        );
        let signer = Signer::new(None, false);
        assert!(signer.dsql_for(host) && !signer.dsql_for("db.internal"));
        assert!(
            Signer::new(None, true).dsql_for("db.internal"),
            "--dsql: any host"
        );
    }

    #[test]
    fn session_token_and_user_name_are_encoded() {
        let at = UNIX_EPOCH + Duration::from_secs(1_724_709_600);
        let token = sign_token(
            "h",
            5432,
            "app user+1",
            "eu-west-1",
            &creds(Some("a/b+c=")),
            at,
        )
        .expect("signs");
        let t = token.expose_secret();
        assert!(
            t.starts_with("h:5432/?Action=connect&DBUser=app%20user%2B1&"),
            "{t}"
        );
        assert!(t.contains("&X-Amz-Security-Token=a%2Fb%2Bc%3D"), "{t}");
        assert!(!t.contains("https://"));
    }

    #[test]
    fn host_names_are_signed_in_lowercase() {
        let at = UNIX_EPOCH + Duration::from_secs(1_724_709_600);
        let sign = |h| sign_token(h, 5432, "u", "eu-west-1", &creds(None), at).expect("signs");
        assert_eq!(
            sign("DB.Cluster-X.eu-west-1.rds.amazonaws.com").expose_secret(),
            sign("db.cluster-x.eu-west-1.rds.amazonaws.com").expose_secret()
        );
    }

    #[test]
    fn region_comes_from_aws_host_names_only() {
        for (host, region) in [
            (
                "c1.cluster-abc123.eu-west-1.rds.amazonaws.com",
                Some("eu-west-1"),
            ),
            (
                "c1.cluster-ro-abc123.us-east-2.rds.amazonaws.com.",
                Some("us-east-2"),
            ),
            (
                "p.proxy-abc.ap-south-1.rds.amazonaws.com",
                Some("ap-south-1"),
            ),
            (
                "db.cluster-x.cn-north-1.rds.amazonaws.com.cn",
                Some("cn-north-1"),
            ),
            ("127.0.0.1", None),
            ("db.internal", None),
            ("rds.amazonaws.com", None),
            ("c1.dsql.us-east-1.on.aws", Some("us-east-1")),
        ] {
            let found = Signer::new(None, false).region_for(host).ok();
            assert_eq!(found.as_deref(), region, "{host}");
        }
        let err = Signer::new(None, false)
            .region_for("db.internal")
            .expect_err("no region");
        assert_eq!(err.class(), ErrorClass::Config);
        assert_eq!(
            Signer::new(Some("eu-central-1".into()), false)
                .region_for("c.cluster-x.us-east-1.rds.amazonaws.com")
                .expect("flag wins"),
            "eu-central-1"
        );
    }
}
