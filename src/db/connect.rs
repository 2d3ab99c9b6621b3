//! One login, and the error it fails with: its class from `classify`, its advice from
//! `hint`.
//!
//! A login is the whole of TCP + TLS + authentication; the caller bounds it with the
//! per-attempt timeout. A [`Session`] is closed explicitly so the server sees a clean
//! Terminate and no connection outlives its purpose (an idle connection would keep Aurora
//! Serverless v2 from pausing).

use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_postgres::tls::MakeTlsConnect;

use super::classify::{Contact, Stage, classify, contact, guarded, unbound};
use super::guard::{Guarded, WatchedConnect};
use super::hint;
use super::tls::{Tls, wire_mode};
use crate::class::ErrorClass;
use crate::display::chain;
use crate::modes::SslMode;
use crate::secret::{Target, authority};

/// Shown in `pg_stat_activity.application_name`, so operators can tell our logins apart.
pub const APPLICATION_NAME: &str = "aurora-sidecar";

pub struct Session {
    pub client: Client,
    connection: JoinHandle<()>,
}

impl Session {
    /// Runs the connection's I/O on a task of its own until the client is dropped.
    pub(super) fn spawn<S, T>(client: Client, connection: tokio_postgres::Connection<S, T>) -> Self
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %chain(&e), "connection closed with an error");
            }
        });
        Self { client, connection }
    }

    /// Drops the client (which sends Terminate) and waits briefly for the socket to close.
    pub async fn close(self) {
        drop(self.client);
        // The connection task ends as soon as the server acknowledges; a second is plenty
        // and keeps a wedged socket from holding up the flow.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.connection).await;
    }
}

/// Logs in to `database` on the target's server, over the guarded socket (`guard`: no
/// password in clear text without TLS).
pub async fn login(
    target: &Target,
    database: &str,
    tls: &Tls,
) -> Result<Session, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(&target.user)
        .password(target.password.expose_secret())
        .dbname(database)
        .application_name(APPLICATION_NAME)
        .ssl_mode(wire_mode(tls.mode))
        .channel_binding(tls.channel_binding);
    // A Unix socket path is local: no network in between, nobody to strip TLS.
    if target.host.starts_with('/') {
        let (client, connection) = config.connect(tls.connector()).await?;
        return Ok(Session::spawn(client, connection));
    }
    let socket = Guarded::new(&target.host, target.port, tls.allow_insecure_auth);
    let Ok(connect) =
        MakeTlsConnect::<Guarded>::make_tls_connect(&mut tls.connector(), &target.host);
    let (client, connection) = config.connect_raw(socket, WatchedConnect(connect)).await?;
    Ok(Session::spawn(client, connection))
}

/// A failed login or statement, with where it happened and what it means. The cause is
/// kept whole as `source` (the server's message, the TLS or I/O error); nothing here holds
/// the password.
#[derive(Debug, thiserror::Error)]
pub struct DbError {
    pub class: ErrorClass,
    pub stage: Stage,
    pub contact: Contact,
    pub host: String,
    pub port: u16,
    /// The database the login was for (the maintenance database when provisioning).
    pub database: String,
    pub user: String,
    pub sslmode: SslMode,
    /// What the operator can do about it, when we know.
    pub hint: Option<&'static str>,
    #[source]
    pub source: tokio_postgres::Error,
}

impl DbError {
    pub fn new(
        source: tokio_postgres::Error,
        target: &Target,
        database: &str,
        stage: Stage,
        sslmode: SslMode,
    ) -> Self {
        let class = classify(&source, sslmode);
        // The guard's own message says what happened and what to do.
        let hint = if guarded(&source) {
            None
        } else if unbound(&source) {
            Some(hint::UNBOUND)
        } else {
            hint::for_class(class, stage)
        };
        Self {
            class,
            stage,
            contact: contact(&source),
            host: target.host.clone(),
            port: target.port,
            database: database.to_string(),
            user: target.user.clone(),
            sslmode,
            hint,
            source,
        }
    }

    /// Replaces the advice (the wait loop knows more once it gives up).
    pub fn with_hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let action = match self.stage {
            Stage::Login => "logging in to",
            Stage::Provision => "creating the database via",
            Stage::Bootstrap => "setting the app role up via",
        };
        let authority = authority(&self.host, self.port);
        write!(
            f,
            "{action} {authority}/{} as {} (sslmode {})",
            self.database, self.user, self.sslmode
        )?;
        if let Some(h) = self.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}
