//! `--pgbouncer`: `RELOAD` through PgBouncer's admin console once new files are
//! published, so PgBouncer logs in upstream with the new password or token at once.
//!
//! PgBouncer re-reads a changed auth file by itself within seconds; `RELOAD` makes it
//! immediate and re-reads `pgbouncer.ini` too. Server connections already open keep
//! working (they are logged in), so the app sees no rotation. The admin login goes over
//! TCP without TLS on purpose: PgBouncer is beside the sidecar (localhost in a task or a
//! pod), and the password is the local one [`PgBouncer`] chose at start, never a
//! database's.

use std::time::Duration;

use secrecy::ExposeSecret;
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;

use super::connect::{APPLICATION_NAME, Session};
use crate::class::ErrorClass;
use crate::render::pgbouncer::{ADMIN_USER, PgBouncer};

/// Why PgBouncer could not be told; the files stay published, and PgBouncer reads them
/// when it (re)starts.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(
        "PgBouncer's admin console at {address} did not answer RELOAD within {timeout:?}; the files in the out-dir are current, and a PgBouncer that (re)starts reads them"
    )]
    Timeout { address: String, timeout: Duration },
    #[error(
        "telling PgBouncer at {address} to RELOAD through its admin console (as aurora_sidecar); the files in the out-dir are current, and a PgBouncer that (re)starts reads them"
    )]
    Console {
        address: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl ReloadError {
    /// Always worth another try: PgBouncer starting, restarting or busy.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}

/// Sends `RELOAD` to PgBouncer's admin console as [`ADMIN_USER`].
pub async fn reload(p: &PgBouncer, timeout: Duration) -> Result<(), ReloadError> {
    let address = p.address();
    let console = |source| ReloadError::Console {
        address: address.clone(),
        source,
    };
    let mut config = tokio_postgres::Config::new();
    config
        .host(&p.host)
        .port(p.port)
        .user(ADMIN_USER)
        .password(p.admin_password.expose_secret())
        .dbname("pgbouncer")
        .ssl_mode(SslMode::Disable)
        .application_name(APPLICATION_NAME);
    let exchange = async {
        let (client, connection) = config.connect(NoTls).await.map_err(console)?;
        let session = Session::spawn(client, connection);
        let result = session.client.simple_query("RELOAD").await.map_err(console);
        session.close().await;
        result.map(|_| ())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ReloadError::Timeout {
            address: address.clone(),
            timeout,
        })?
}
