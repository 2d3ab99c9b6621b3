//! The app's file set for a validated login: the settings it is rendered with (validated
//! configuration, [`Settings`]), the TLS that login was made with ([`LoginTls`]), and with
//! `--pgbouncer` PgBouncer's files too, the app's pointing at PgBouncer.

use std::path::PathBuf;

use super::pgbouncer::{self, CarryError, PgBouncer};
use super::{Inputs, LoginTls, Reveal};
use crate::modes::{SslMode, UrlScheme};
use crate::outdir::File;
use crate::secret::Target;

/// What the files are rendered with besides the login: `--service-name`, `--url-scheme`,
/// `--app-dir`, whether the password is an IAM token, `--pgbouncer`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub service_name: String,
    pub url_scheme: UrlScheme,
    /// The out-dir as the application container sees it.
    pub app_dir: PathBuf,
    /// The password is an IAM token that expires (`--iam-auth`, DSQL).
    pub iam: bool,
    /// PgBouncer between the app and the database, its local logins.
    pub pgbouncer: Option<PgBouncer>,
}

impl Settings {
    /// What the renderers need to render `target` (the login the app's files describe).
    fn inputs<'a>(&'a self, target: &'a Target, tls: LoginTls, reveal: Reveal) -> Inputs<'a> {
        Inputs {
            target,
            reveal,
            service_name: &self.service_name,
            url_scheme: self.url_scheme,
            sslmode: tls.mode,
            has_ca: tls.ca.is_some(),
            app_dir: &self.app_dir,
            iam: self.iam,
            channel_binding: tls.channel_binding,
        }
    }

    /// The inputs for the app's files when PgBouncer stands between the app and the
    /// database: its address and the local login, without TLS (one task, one pod, or one
    /// compose network) and with a password that never expires.
    fn pooled_inputs<'a>(&'a self, local: &'a Target, reveal: Reveal) -> Inputs<'a> {
        let plain = LoginTls {
            mode: SslMode::Disable,
            ca: None,
            channel_binding: false,
        };
        Inputs {
            iam: false,
            ..self.inputs(local, plain, reveal)
        }
    }

    /// The variables `exec` hands its child for the validated `target`.
    pub fn environment(
        &self,
        target: &Target,
        tls: LoginTls,
        reveal: Reveal,
    ) -> Vec<(&'static str, String)> {
        match &self.pgbouncer {
            None => super::environment(&self.inputs(target, tls, reveal)),
            Some(p) => super::environment(&self.pooled_inputs(&p.app_target(target), reveal)),
        }
    }

    /// The file set for the validated `target`; with `--pgbouncer`, PgBouncer's files
    /// too, and the app's pointing at PgBouncer. Refused when PgBouncer could not carry
    /// the login ([`pgbouncer::check`]).
    pub fn files(
        &self,
        target: &Target,
        tls: LoginTls,
        reveal: Reveal,
    ) -> Result<Vec<File>, CarryError> {
        let Some(p) = &self.pgbouncer else {
            return Ok(super::files(&self.inputs(target, tls, reveal), tls.ca));
        };
        pgbouncer::check(p, target)?;
        let local = p.app_target(target);
        let mut set = super::files(&self.pooled_inputs(&local, reveal), tls.ca);
        set.extend(pgbouncer::files(p, target, tls, &self.app_dir, reveal));
        Ok(set)
    }
}
