//! `exec`: steps 1–5, then this process becomes the app.

use std::convert::Infallible;
use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::Config;
use crate::error::Error;
use crate::exec::{find_program, replace_process};
use crate::render::Reveal;
use crate::signal::Wakes;

use super::prepare::{Started, prepare};

/// The command `exec` becomes, found on `PATH`.
pub struct Program<'a> {
    path: PathBuf,
    name: &'a OsString,
    args: &'a [OsString],
}

/// Looks `command` up before anything is written or waited for, so a typo fails in
/// milliseconds, not after the database came up.
pub fn program(command: &[OsString]) -> Result<Program<'_>, Error> {
    let Some((name, args)) = command.split_first() else {
        // clap requires the command; an empty one is a usage problem all the same.
        return Err(exec_error(
            &OsString::new(),
            std::io::ErrorKind::NotFound.into(),
        ));
    };
    let path =
        find_program(name, std::env::var_os("PATH").as_deref()).map_err(|e| exec_error(name, e))?;
    Ok(Program { path, name, args })
}

/// `exec`: steps 1–5, then replace this process with `program`, its environment carrying
/// `DATABASE_URL` and the libpq variables, and no longer the variable the secret came
/// from unless `keep_secret_env`. Only returns on failure.
pub async fn exec(
    config: &Config,
    program: Program<'_>,
    keep_secret_env: bool,
    mut started: Started,
    wakes: &mut impl Wakes,
) -> Result<Infallible, Error> {
    let Program { path, name, args } = program;
    let prepared = prepare(config, &mut started, wakes).await?;
    let target = &prepared.published.target;
    let tls = config.tls.login_tls(&target.host);
    let vars = config.render.environment(target, tls, Reveal::Password);
    // The admin secret never reaches the child; the app's own one unless asked to.
    let mut remove: Vec<&str> = config
        .admin
        .iter()
        .filter_map(|a| a.secret_variable())
        .collect();
    if !keep_secret_env {
        remove.extend(config.source.secret_variable());
    }
    tracing::info!(program = %path.display(), removed = ?remove, "exec");
    Err(exec_error(
        name,
        replace_process(&path, name, args, vars, &remove),
    ))
}

fn exec_error(program: &OsString, source: std::io::Error) -> Error {
    Error::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}
