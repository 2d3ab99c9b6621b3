//! The files a validated [`Config`] calls for: what the renderers are given for a
//! target (`Inputs`), the variables `exec` hands its child, and the whole file set, with
//! `--pgbouncer` PgBouncer's files too and the app's pointing at PgBouncer.

use crate::modes::SslMode;
use crate::outdir::File;
use crate::render::pgbouncer;
use crate::render::{self, Inputs, Reveal};
use crate::secret::Target;

use super::Config;

impl Config {
    /// What the renderers need to render `target` (the login the app's files describe) as
    /// this configuration says.
    pub fn inputs<'a>(&'a self, target: &'a Target, reveal: Reveal) -> Inputs<'a> {
        let tls = self.tls.for_host(&target.host);
        Inputs {
            target,
            reveal,
            service_name: &self.service_name,
            url_scheme: self.url_scheme,
            sslmode: tls.mode,
            has_ca: tls.ca.is_some(),
            app_dir: &self.app_dir,
            iam: self.iam.is_some(),
            channel_binding: tls.channel_binding == tokio_postgres::config::ChannelBinding::Require,
        }
    }

    /// The inputs for the app's files when PgBouncer stands between the app and the
    /// database: its address and the local login, without TLS (one task, one pod, or one
    /// compose network) and with a password that never expires.
    fn pooled_inputs<'a>(&'a self, local: &'a Target, reveal: Reveal) -> Inputs<'a> {
        Inputs {
            sslmode: SslMode::Disable,
            has_ca: false,
            iam: false,
            channel_binding: false,
            ..self.inputs(local, reveal)
        }
    }

    /// The variables `exec` hands its child for the validated `target`.
    pub fn environment(&self, target: &Target, reveal: Reveal) -> Vec<(&'static str, String)> {
        match &self.pgbouncer {
            None => render::environment(&self.inputs(target, reveal)),
            Some(p) => render::environment(&self.pooled_inputs(&p.app_target(target), reveal)),
        }
    }

    /// The file set for the validated `target`; with `--pgbouncer`, PgBouncer's files
    /// too, and the app's pointing at PgBouncer. Refused when PgBouncer could not carry
    /// the login ([`pgbouncer::check`]).
    pub fn files(
        &self,
        target: &Target,
        reveal: Reveal,
    ) -> Result<Vec<File>, pgbouncer::CarryError> {
        let tls = self.tls.for_host(&target.host);
        let ca = tls.ca.as_ref().map(|c| c.pem.as_slice());
        let Some(p) = &self.pgbouncer else {
            return Ok(render::files(&self.inputs(target, reveal), ca));
        };
        pgbouncer::check(p, target)?;
        let local = p.app_target(target);
        let mut set = render::files(&self.pooled_inputs(&local, reveal), ca);
        let (mode, has_ca) = (tls.mode, ca.is_some());
        set.extend(pgbouncer::files(
            p,
            target,
            mode,
            has_ca,
            &self.app_dir,
            reveal,
        ));
        Ok(set)
    }
}
