//! The local sources: an environment variable or a file holding the secret JSON, and the
//! libpq variables (everything but Secrets Manager, which needs a client: see
//! [`super::aws::SecretsManager`]).

use std::io::Read;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use super::parse::parse_secret_json;
use super::target::build_target;
use super::{Credentials, MAX_SECRET_BYTES, Overrides, Resolved, SecretError, Source};

/// Reads the secret from a local source (everything but Secrets Manager, which needs a
/// client: see [`aws::SecretsManager`]).
pub fn resolve_local(source: &Source, overrides: &Overrides) -> Result<Resolved, SecretError> {
    Ok(Resolved {
        target: build_target(local_credentials(source)?, overrides, source)?,
        version: None,
        token_expires_at: None,
    })
}

/// The credentials of a local source (everything but Secrets Manager, which needs a
/// client: see [`aws::SecretsManager`]).
pub(super) fn local_credentials(source: &Source) -> Result<Credentials, SecretError> {
    let origin = source.to_string();
    match source {
        Source::Env { name } => {
            let raw = std::env::var_os(name)
                .ok_or_else(|| SecretError::EnvMissing { name: name.clone() })?;
            let text = raw
                .into_string()
                .map(SecretString::from)
                .map_err(|_| not_utf8(&origin, None))?;
            parse_secret_json(text.expose_secret(), &origin)
        }
        Source::File { path } => {
            let text = read_secret_file(path, &origin)?;
            parse_secret_json(text.expose_secret(), &origin)
        }
        Source::Libpq => libpq_from(|k| std::env::var(k).ok()),
        Source::SecretsManager { .. } => Err(SecretError::Malformed {
            origin,
            reason: "internal: Secrets Manager is not a local source".into(),
        }),
    }
}

/// Reads at most one byte more than [`MAX_SECRET_BYTES`] (the parser then refuses it by
/// size) and tells a file that cannot be read from one that is not text. Only a regular
/// file is read, and it is opened without blocking: a FIFO nobody writes (or a device)
/// would otherwise hang the start beyond `--wait-timeout` and SIGTERM. Symlinks are
/// followed: Kubernetes secret volumes and CSI mounts are made of them.
fn read_secret_file(path: &Path, origin: &str) -> Result<SecretString, SecretError> {
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |source| SecretError::FileRead {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(read_err)?;
    if !file.metadata().map_err(read_err)?.file_type().is_file() {
        return Err(read_err(std::io::Error::other(
            "not a regular file (a FIFO, device or directory)",
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SecretString::from(text)),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            // The bytes may be (part of) a password: wipe them, say only where it broke.
            let mut bytes = e.into_bytes();
            bytes.fill(0);
            Err(not_utf8(origin, Some(at)))
        }
    }
}

fn not_utf8(origin: &str, at: Option<usize>) -> SecretError {
    SecretError::Malformed {
        origin: origin.to_string(),
        reason: match at {
            Some(at) => format!(
                "secret is not UTF-8 text (invalid byte at offset {at}); the secret JSON must be UTF-8"
            ),
            None => "secret is not UTF-8 text; the secret JSON must be UTF-8".into(),
        },
    }
}

/// The libpq variables as credentials; `get` is the environment (a parameter for tests).
pub fn libpq_from(get: impl Fn(&str) -> Option<String>) -> Result<Credentials, SecretError> {
    let origin = Source::Libpq.to_string();
    // Required by `build_target` unless IAM authentication signs the password.
    let password = get("PGPASSWORD");
    let port = match get("PGPORT") {
        Some(p) => Some(
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| SecretError::Malformed {
                    origin: origin.clone(),
                    reason: "PGPORT must be a port number from 1 to 65535".into(),
                })?,
        ),
        None => None,
    };
    Ok(Credentials {
        host: get("PGHOST"),
        port,
        username: get("PGUSER"),
        password: password.map(SecretString::from),
        dbname: get("PGDATABASE"),
    })
}
