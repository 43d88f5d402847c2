//! Test certificates made by `openssl` (installed by `cargo xtask setup`): a
//! CA and the leaves it signs, as PEM files in one directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a leaf is for: its `openssl x509 -extfile` extensions.
pub const SERVER_ON_LOOPBACK: &str =
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
pub const CLIENT: &str = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n";

/// A directory of certificates: `<name>.pem` and `<name>.key` for each CA
/// and leaf made in it.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// A fresh directory under the temporary directory, named by `tag` and
    /// this process. Fails the test when openssl is missing under CI.
    pub fn new(tag: &str) -> Option<Self> {
        crate::require!(
            Command::new("openssl").arg("version").output().is_ok(),
            "openssl is not installed (cargo xtask setup installs it)"
        );
        let dir = std::env::temp_dir().join(format!("osprey-certs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Some(Self { dir })
    }

    /// `<name>.pem` in the directory.
    pub fn pem(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// `<name>.key` in the directory.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// A self-signed CA (made once per name).
    pub fn ca(&self, name: &str) -> &Self {
        if !self.pem(name).exists() {
            self.request(name, true);
        }
        self
    }

    /// A leaf `name` that `ca` signs, with `ext` (e.g. [`SERVER_ON_LOOPBACK`]).
    pub fn leaf(&self, ca: &str, name: &str, ext: &str) -> &Self {
        self.ca(ca);
        std::fs::write(self.dir.join(format!("{name}.ext")), ext).unwrap();
        self.request(name, false);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
        ]);
        self
    }

    /// A P-256 key `<name>.key` and, for `CN=<name>`, a self-signed
    /// certificate `<name>.pem` (`self_signed`) or a request `<name>.csr`.
    fn request(&self, name: &str, self_signed: bool) {
        let (key, out) = if self_signed {
            (format!("{name}.key"), format!("{name}.pem"))
        } else {
            (format!("{name}.key"), format!("{name}.csr"))
        };
        let subject = format!("/CN={name}");
        let mut args = vec!["req"];
        if self_signed {
            args.extend(["-x509", "-days", "1"]);
        }
        args.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]);
        args.extend(["-nodes", "-keyout", &key, "-out", &out, "-subj", &subject]);
        self.openssl(&args);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// `curl ARGS` run in `dir`: the HTTP status, or None when the connection
/// or the TLS handshake failed.
pub fn curl_status(dir: &Path, args: &[&str]) -> Option<u16> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("curl");
    if !out.status.success() {
        eprintln!("curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).parse().unwrap())
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
