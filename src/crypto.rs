//! The one crypto provider of the whole tree, and the AWS SDK's HTTPS client built on it.
//!
//! rustls on *ring*, for the PostgreSQL connection and for every AWS call (Secrets Manager,
//! the credential providers, STS): one provider, chosen here. ring rather than aws-lc-rs
//! (the AWS SDK's default) for size: aws-lc is about 0.4 MiB of code plus its tables in a
//! binary that uses a handful of TLS 1.2/1.3 suites (docs/BENCHMARKS.md, "Sizes").
//! Proven by the TLS tests against PostgreSQL (`tests/tls.rs`) and Secrets Manager over
//! HTTPS (`tests/once.rs`).

use std::sync::Arc;

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_secretsmanager::config::SharedHttpClient;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use rustls::crypto::CryptoProvider;

/// The rustls provider for the PostgreSQL connection.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `aws_config::defaults` with [`https_client`].
pub fn aws_config_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client())
}

/// The AWS SDK's HTTPS client on ring. The SDK builds its default client (hyper, rustls on
/// aws-lc) only with its `default-https-client` feature, which this crate leaves off; this
/// is the same client with the other provider. Built the way the SDK builds its own
/// default (aws-smithy-runtime's `default_https_client`): per use, with the operation's
/// connect and read timeouts and sleep, and with `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`
/// from the environment as behaviour version 2025-08-07 and later do.
/// (`Builder::build_https` would ignore the proxy variables.) `build_with_connector_fn` is
/// public but hidden from the docs; it is what the SDK itself calls, and the lock file
/// pins the version: should it go, `build_https` plus a proxy-aware connector replaces it.
pub fn https_client() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut conn =
            ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}
