//! A test PKI made with the openssl CLI: CAs and the certificates they sign.

use std::path::PathBuf;
use std::process::Command;

use super::{is_root, run_ok, watchdog};

/// A test PKI made with the openssl CLI: a CA, and server certificates signed by it.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// A directory the server's user can read (tempdirs are 0700 by default).
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("aurora-sidecar-pki.")
            .tempdir()
            .expect("tempdir")
            .keep();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        watchdog(&format!("rm -rf {}", dir.display()));
        Pki { dir }
    }

    fn openssl(&self, args: &[&str]) {
        run_ok(
            Command::new("openssl").current_dir(&self.dir).args(args),
            &format!("openssl {args:?}"),
        );
    }

    /// A self-signed CA `NAME.crt` / `NAME.key`.
    pub fn ca(&self, name: &str) -> PathBuf {
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "3",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        self.dir.join(crt)
    }

    /// A server certificate `NAME.crt` / `NAME.key` for `san` (e.g.
    /// `DNS:localhost,IP:127.0.0.1`), signed by CA `ca`; the key is 0600 and owned by the
    /// server's user, as PostgreSQL demands.
    pub fn server(&self, name: &str, ca: &str, san: &str) -> (PathBuf, PathBuf) {
        let (crt, key, csr, ext) = (
            format!("{name}.crt"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.ext"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=aurora-sidecar test server",
        ]);
        std::fs::write(
            self.dir.join(&ext),
            format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"),
        )
        .expect("ext file");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        let key_path = self.dir.join(&key);
        std::fs::set_permissions(
            &key_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod key");
        if is_root() {
            run_ok(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&key_path),
                "chown key",
            );
        }
        (self.dir.join(crt), key_path)
    }
}
