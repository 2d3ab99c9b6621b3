//! `exec`: steps 1–5, then this process becomes the app.

use std::convert::Infallible;
use std::ffi::OsString;

use crate::config::Config;
use crate::error::Error;
use crate::exec::{find_program, replace_process};
use crate::render::Reveal;
use crate::signal::Wakes;

use super::prepare::{prepare, start};

/// `exec`: steps 1–5, then replace this process with `command`, its environment carrying
/// `DATABASE_URL` and the libpq variables, and no longer the variable the secret came
/// from unless `keep_secret_env`. Only returns on failure.
pub async fn exec(
    config: &Config,
    command: &[OsString],
    keep_secret_env: bool,
    wakes: &mut impl Wakes,
) -> Result<Infallible, Error> {
    let Some((program, args)) = command.split_first() else {
        // clap requires the command; an empty one is a usage problem all the same.
        return Err(exec_error(
            &OsString::new(),
            std::io::ErrorKind::NotFound.into(),
        ));
    };
    // Look the program up before waiting, so a typo fails in milliseconds, not after the
    // database came up.
    let path = find_program(program, std::env::var_os("PATH").as_deref())
        .map_err(|e| exec_error(program, e))?;
    let mut started = start("exec", config)?;
    let prepared = prepare(config, &mut started, wakes).await?;
    let vars = config.environment(&prepared.published.target, Reveal::Password);
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
        program,
        replace_process(&path, program, args, vars, &remove),
    ))
}

fn exec_error(program: &OsString, source: std::io::Error) -> Error {
    Error::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}
