//! `render`: step 1 and step 4 to a string, touching no database and writing nothing.

use crate::config::{Config, ConfigError};
use crate::db::admin::{AdminSource, AppLogin};
use crate::db::provision::quote_ident;
use crate::db::statements::plan;
use crate::error::Error;
use crate::iam::Signer;
use crate::render::{self, Reveal};
use crate::secret::{Resolver, Target};

/// Step 1 + step 4 to a string: what `once` would write, password masked unless
/// `reveal`. No database access, nothing written.
pub async fn render(config: &Config, reveal: Reveal) -> Result<String, Error> {
    use std::fmt::Write as _;
    let mut resolver = Resolver::new(config.source.clone(), config.overrides.clone());
    let mut resolved = resolver.resolve().await?;
    // A token is only signed when it is to be shown: masked output needs no credentials.
    if let (Some(iam), Reveal::Password) = (&config.iam, reveal) {
        resolved = Signer::new(iam.region.clone(), iam.dsql)
            .sign(resolved)
            .await?;
    }
    let mut out = String::new();
    let target = &resolved.target;
    let tls = config.tls.login_tls(&target.host);
    for f in config
        .render
        .files(target, tls, reveal)
        .map_err(ConfigError::from)?
    {
        let path = config.out_dir.join(f.name);
        let _ = writeln!(out, "==> {} (mode {:04o}) <==", path.display(), f.mode);
        if f.name == render::CA_FILE {
            if let Some(src) = config.sslrootcert() {
                let _ = writeln!(
                    out,
                    "(copy of {}, {} bytes)\n",
                    src.display(),
                    f.contents.len()
                );
            }
            continue;
        }
        out.push_str(&String::from_utf8_lossy(&f.contents));
        out.push('\n');
    }
    if let Some(admin) = &config.admin {
        out.push_str(&bootstrap_plan(config, &resolved.target, admin));
    }
    Ok(out)
}

/// What the bootstrap would do with the admin credentials, for `render`
/// (`statements::plan`: the statements it runs).
fn bootstrap_plan(config: &Config, app: &Target, admin: &AdminSource) -> String {
    let login = admin.app_login(config.iam.is_some());
    let needs = match login {
        AppLogin::Dsql { .. } => "a DbConnectAdmin token",
        _ => "CREATEROLE",
    };
    let mut out = format!(
        "==> bootstrap plan (with the admin credentials from {admin}, only when the app's login fails) <==\n\
         log in to {} as the admin user, which needs {needs}\n",
        quote_ident(&config.provisioning.maintenance_database),
    );
    for (statement, when) in plan(app, login, config.provisioning.create) {
        out.push_str(&format!("{statement}{when}\n"));
    }
    out
}
