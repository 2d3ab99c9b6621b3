//! AWS Secrets Manager: the client, and what its errors mean for the operator.
//!
//! Region: taken from the ARN when the secret id is one (the secret lives there, whatever
//! the task's region), else from the default chain (`AWS_REGION`, profile, IMDS).
//! Endpoint: the SDK's standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
//! Credentials: the default chain, which reads the ECS task role.
//!
//! Error classification follows aws/aws-secretsmanager-agent: timeouts, I/O dispatch
//! failures, unparseable responses, throttling and 5xx are transient; other 4xx are not.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::Region;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use secrecy::SecretString;

use crate::class::ErrorClass;
use crate::display::causes;

/// The version label GetSecretValue reads; sent explicitly so the intent is in the request.
pub const CURRENT_STAGE: &str = "AWSCURRENT";

/// IAM advice repeated by several errors (and doctor): what to grant (DescribeSecret for
/// `run`'s rotation checks) and, under Copilot, the tags the generated execution role's
/// condition looks for.
pub const IAM_HINT: &str = "grant the task role secretsmanager:GetSecretValue and DescribeSecret \
on this secret (plus kms:Decrypt for a customer-managed KMS key); under AWS Copilot the \
generated policies only match secrets tagged copilot-application=<app> and copilot-environment=<env>";

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(
        "no AWS region for secret {secret_id}: set AWS_REGION (ECS sets it for you) or pass the secret's full ARN"
    )]
    NoRegion { secret_id: String },
    #[error(
        "Secrets Manager has no secret {secret_id} in this account and region: check the name or ARN and AWS_REGION"
    )]
    NotFound { secret_id: String },
    #[error("access denied reading secret {secret_id} ({code}: {message}); {IAM_HINT}")]
    AccessDenied {
        secret_id: String,
        code: String,
        message: String,
    },
    #[error(
        "secret {secret_id} cannot be decrypted ({message}); grant kms:Decrypt on its KMS key to the task role"
    )]
    Decryption { secret_id: String, message: String },
    #[error("Secrets Manager rejected the request for {secret_id} ({code}: {message})")]
    Rejected {
        secret_id: String,
        code: String,
        message: String,
    },
    #[error(
        "no AWS credentials to read secret {secret_id}: give the task a task role (ECS taskRoleArn; Copilot creates one), or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
    )]
    NoCredentials {
        secret_id: String,
        /// The SDK's account of every provider it tried.
        #[source]
        source: BoxError,
    },
    #[error("secret {secret_id} has no SecretString (binary secrets are not supported)")]
    NotAString { secret_id: String },
    #[error("Secrets Manager unavailable for {secret_id}")]
    Unavailable {
        secret_id: String,
        /// The SDK's error, whole: its chain names the timeout, the I/O failure or the
        /// service's code and message.
        #[source]
        source: BoxError,
    },
}

impl AwsError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, AwsError::Unavailable { .. })
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            AwsError::NoRegion { .. } | AwsError::NoCredentials { .. } => ErrorClass::Config,
            AwsError::NotFound { .. } => ErrorClass::SecretNotFound,
            AwsError::Rejected { .. } => ErrorClass::SecretRejected,
            AwsError::AccessDenied { .. } | AwsError::Decryption { .. } => ErrorClass::SecretDenied,
            AwsError::NotAString { .. } => ErrorClass::SecretMalformed,
            AwsError::Unavailable { .. } => ErrorClass::SecretUnavailable,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The secret text and the version id that carries `AWSCURRENT`.
pub struct SecretValue {
    pub text: SecretString,
    pub version_id: Option<String>,
}

pub struct SecretsManager {
    client: Client,
}

impl SecretsManager {
    /// Builds a client from the environment, as the ECS task sees it.
    pub async fn from_env(secret_id: &str) -> Result<Self, AwsError> {
        let mut loader = crate::crypto::aws_config_loader().timeout_config(
            // The SDK's own default has no attempt timeout; a black-holed endpoint would
            // otherwise eat the whole wait budget in one call.
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        );
        if let Some(region) = region_from_arn(secret_id) {
            loader = loader.region(Region::new(region.to_string()));
        }
        let conf = loader.load().await;
        if conf.region().is_none() {
            return Err(AwsError::NoRegion {
                secret_id: secret_id.to_string(),
            });
        }
        Ok(Self {
            client: Client::new(&conf),
        })
    }

    /// Wraps an existing client (tests use a mocked one).
    pub fn from_client(client: Client) -> Self {
        Self { client }
    }

    /// GetSecretValue for `AWSCURRENT`.
    pub async fn current(&self, secret_id: &str) -> Result<SecretValue, AwsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(CURRENT_STAGE)
            .send()
            .await
            .map_err(|e| classify(secret_id, e))?;
        let version_id = out.version_id().map(str::to_string);
        let text =
            out.secret_string
                .map(SecretString::from)
                .ok_or_else(|| AwsError::NotAString {
                    secret_id: secret_id.to_string(),
                })?;
        Ok(SecretValue { text, version_id })
    }

    /// DescribeSecret: the version id that carries `AWSCURRENT`, without reading the value.
    /// Rotation checks call this and GetSecretValue only when it moved (as the AWS Secrets
    /// Manager Agent and the CSI provider do), which keeps a 5-minute refresh cheap.
    pub async fn current_version(&self, secret_id: &str) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| classify(secret_id, e))?;
        Ok(out.version_ids_to_stages().and_then(|m| {
            m.iter()
                .find(|(_, stages)| stages.iter().any(|s| s == CURRENT_STAGE))
                .map(|(id, _)| id.clone())
        }))
    }
}

/// The modeled errors both operations share, so one classifier serves both.
trait Modeled: ProvideErrorMetadata {
    fn not_found(&self) -> bool;
    fn decryption_failed(&self) -> bool;
    fn internal(&self) -> bool;
}

impl Modeled for GetSecretValueError {
    fn not_found(&self) -> bool {
        self.is_resource_not_found_exception()
    }
    fn decryption_failed(&self) -> bool {
        self.is_decryption_failure()
    }
    fn internal(&self) -> bool {
        self.is_internal_service_error()
    }
}

impl Modeled for DescribeSecretError {
    fn not_found(&self) -> bool {
        self.is_resource_not_found_exception()
    }
    fn decryption_failed(&self) -> bool {
        false
    }
    fn internal(&self) -> bool {
        self.is_internal_service_error()
    }
}

/// `arn:aws:secretsmanager:eu-west-1:123456789012:secret:name-AbCdEf` → `eu-west-1`.
pub fn region_from_arn(secret_id: &str) -> Option<&str> {
    let mut parts = secret_id.split(':');
    if parts.next() != Some("arn") {
        return None;
    }
    // partition, service, then region
    let service = parts.nth(1)?;
    let region = parts.next()?;
    (service == "secretsmanager" && !region.is_empty()).then_some(region)
}

fn classify<E, R>(secret_id: &str, err: SdkError<E, R>) -> AwsError
where
    E: Modeled + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let secret_id = secret_id.to_string();
    if no_credentials_configured(&err) {
        return AwsError::NoCredentials {
            secret_id,
            source: Box::new(err),
        };
    }
    // Everything else that never got a modeled answer (timeouts, DNS/TCP failures, a 5xx
    // without a body, the credential endpoint not answering yet during task start) is
    // worth another try; the wait loop's deadline bounds it.
    let SdkError::ServiceError(svc) = &err else {
        return AwsError::Unavailable {
            secret_id,
            source: Box::new(err),
        };
    };
    let e = svc.err();
    let code = e.code().unwrap_or("Unknown").to_string();
    let message = e.message().unwrap_or("").to_string();
    if e.not_found() {
        return AwsError::NotFound { secret_id };
    }
    if e.decryption_failed() {
        return AwsError::Decryption { secret_id, message };
    }
    if e.internal() || TRANSIENT_CODES.contains(&code.as_str()) {
        return AwsError::Unavailable {
            secret_id,
            source: Box::new(err),
        };
    }
    if DENIED_CODES.contains(&code.as_str()) {
        AwsError::AccessDenied {
            secret_id,
            code,
            message,
        }
    } else {
        AwsError::Rejected {
            secret_id,
            code,
            message,
        }
    }
}

/// Error codes worth another try (as the Secrets Manager agent's classifier has them).
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "InternalFailure",
];

/// Error codes that mean "these credentials may not do this" (exit 77, with the IAM hint).
const DENIED_CODES: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
];

/// True when no credential provider in the chain was even configured (no task role, no
/// environment variables, no profile, IMDS off): waiting cannot help. A configured provider
/// that fails or times out (the ECS credential endpoint at task start) is something else,
/// and is retried.
fn no_credentials_configured(err: &(dyn std::error::Error + 'static)) -> bool {
    use aws_credential_types::provider::error::CredentialsError;
    causes(err).any(|e| {
        matches!(
            e.downcast_ref::<CredentialsError>(),
            Some(CredentialsError::CredentialsNotLoaded(_))
        )
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_secretsmanager::error::ErrorMetadata;
    use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
    use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
    use aws_sdk_secretsmanager::types::error::{InternalServiceError, ResourceNotFoundException};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn region_comes_from_an_arn_only() {
        assert_eq!(
            region_from_arn("arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"),
            Some("eu-west-1")
        );
        assert_eq!(
            region_from_arn("arn:aws-cn:secretsmanager:cn-north-1:1:secret:x"),
            Some("cn-north-1")
        );
        assert_eq!(region_from_arn("prod/db"), None);
        assert_eq!(region_from_arn("arn:aws:ssm:eu-west-1:1:parameter/x"), None);
    }

    async fn fetch_with(rule: aws_smithy_mocks::Rule) -> Result<SecretValue, AwsError> {
        let client = mock_client!(aws_sdk_secretsmanager, RuleMode::Sequential, [&rule]);
        SecretsManager::from_client(client).current("prod/db").await
    }

    #[tokio::test]
    async fn current_returns_text_and_version() {
        let rule = mock!(Client::get_secret_value)
            .match_requests(|r| {
                r.secret_id() == Some("prod/db") && r.version_stage() == Some("AWSCURRENT")
            })
            .then_output(|| {
                GetSecretValueOutput::builder()
                    .secret_string(r#"{"password":"p"}"#)
                    .version_id("v1")
                    .build()
            });
        let v = fetch_with(rule).await.expect("mocked success");
        assert_eq!(v.text.expose_secret(), r#"{"password":"p"}"#);
        assert_eq!(v.version_id.as_deref(), Some("v1"));
    }

    #[tokio::test]
    async fn access_denied_names_the_permission_and_copilot_tags_and_exits_77() {
        let rule = mock!(Client::get_secret_value).then_error(|| {
            GetSecretValueError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("User is not authorized to perform secretsmanager:GetSecretValue")
                    .build(),
            )
        });
        let err = fetch_with(rule).await.err().expect("denied");
        let msg = err.to_string();
        assert_eq!(err.class(), ErrorClass::SecretDenied);
        assert!(!err.is_retryable());
        assert!(msg.contains("secretsmanager:GetSecretValue"), "{msg}");
        assert!(
            msg.contains("copilot-application") && msg.contains("copilot-environment"),
            "{msg}"
        );
        assert!(msg.contains("prod/db"), "{msg}");
    }

    #[tokio::test]
    async fn not_found_names_the_secret_id_and_exits_78() {
        let rule = mock!(Client::get_secret_value).then_error(|| {
            GetSecretValueError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("not here")
                    .build(),
            )
        });
        let err = fetch_with(rule).await.err().expect("not found");
        assert_eq!(err.class(), ErrorClass::SecretNotFound);
        assert!(err.to_string().contains("prod/db"));
    }

    #[tokio::test]
    async fn internal_errors_and_throttling_are_retryable() {
        let internal = mock!(Client::get_secret_value).then_error(|| {
            GetSecretValueError::InternalServiceError(
                InternalServiceError::builder().message("boom").build(),
            )
        });
        assert!(
            fetch_with(internal)
                .await
                .err()
                .expect("err")
                .is_retryable()
        );
        let throttled = mock!(Client::get_secret_value).then_error(|| {
            GetSecretValueError::generic(
                ErrorMetadata::builder().code("ThrottlingException").build(),
            )
        });
        let err = fetch_with(throttled).await.err().expect("err");
        assert!(err.is_retryable(), "{err}");
        assert_eq!(err.class(), ErrorClass::SecretUnavailable);
    }

    #[tokio::test]
    async fn current_version_is_the_one_labelled_awscurrent() {
        let rule = mock!(Client::describe_secret).then_output(|| {
            DescribeSecretOutput::builder()
                .version_ids_to_stages("old", vec!["AWSPREVIOUS".to_string()])
                .version_ids_to_stages("new", vec!["AWSCURRENT".to_string(), "custom".to_string()])
                .version_ids_to_stages("next", vec!["AWSPENDING".to_string()])
                .build()
        });
        let client = mock_client!(aws_sdk_secretsmanager, RuleMode::Sequential, [&rule]);
        let v = SecretsManager::from_client(client)
            .current_version("prod/db")
            .await
            .expect("ok");
        assert_eq!(v.as_deref(), Some("new"));
    }

    #[tokio::test]
    async fn describe_errors_are_classified_like_get_errors() {
        let rule = mock!(Client::describe_secret).then_error(|| {
            DescribeSecretError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_secretsmanager, RuleMode::Sequential, [&rule]);
        let err = SecretsManager::from_client(client)
            .current_version("prod/db")
            .await
            .expect_err("denied");
        assert_eq!(err.class(), ErrorClass::SecretDenied);
    }

    #[tokio::test]
    async fn binary_secret_is_malformed_data() {
        let rule = mock!(Client::get_secret_value)
            .then_output(|| GetSecretValueOutput::builder().version_id("v1").build());
        let err = fetch_with(rule).await.err().expect("binary");
        assert_eq!(err.class(), ErrorClass::SecretMalformed);
    }
}
