//! Packages from a newer Debian suite (trixie, sid), fetched and unpacked
//! into a directory of the project's without touching the system's apt
//! configuration or dpkg database: a private apt config, source list, list
//! and cache directories, `apt-get download`, then `dpkg-deb -x`. Debian's Go
//! programs (prometheus, victoria-metrics) need only glibc, so a newer
//! suite's build runs on bookworm.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::sh;

/// One unpacked package: its name and Debian version.
pub struct Unpacked {
    pub package: String,
    pub version: String,
}

/// Downloads `packages` from `suite` (main) of the mirror the system's apt
/// sources use and unpacks them all into `root` (created; its parent must
/// exist). `work` holds the private apt state and the .debs, and is removed
/// afterwards, whether or not this succeeded.
pub fn fetch(work: &Path, suite: &str, packages: &[&str], root: &Path) -> Result<Vec<Unpacked>> {
    let result = fetch_in(work, suite, packages, root);
    let _ = fs::remove_dir_all(work);
    result
}

fn fetch_in(work: &Path, suite: &str, packages: &[&str], root: &Path) -> Result<Vec<Unpacked>> {
    let mirror = mirror()?;
    let _ = fs::remove_dir_all(work);
    for dir in [
        "lists/partial",
        "cache/archives/partial",
        "sources.list.d",
        "preferences.d",
        "debs",
    ] {
        fs::create_dir_all(work.join(dir))
            .with_context(|| format!("creating {}", work.join(dir).display()))?;
    }
    fs::write(
        work.join("sources.list"),
        format!("deb {mirror} {suite} main\n"),
    )?;
    let path = |p: &str| work.join(p).display().to_string();
    // APT_CONFIG replaces /etc/apt/apt.conf only: apt.conf.d (a proxy, say)
    // still applies, while every source, pin, list and cache is private.
    let config = format!(
        "Dir::Etc::sourcelist \"{}\";\n\
         Dir::Etc::sourceparts \"{}\";\n\
         Dir::Etc::preferences \"{}\";\n\
         Dir::Etc::preferencesparts \"{}\";\n\
         Dir::State::Lists \"{}\";\n\
         Dir::Cache \"{}\";\n\
         Acquire::Languages \"none\";\n\
         APT::Sandbox::User \"root\";\n",
        path("sources.list"),
        path("sources.list.d"),
        path("preferences"),
        path("preferences.d"),
        path("lists"),
        path("cache"),
    );
    let apt_conf = work.join("apt.conf");
    fs::write(&apt_conf, config)?;
    let apt = || {
        let mut cmd = Command::new("apt-get");
        cmd.env("APT_CONFIG", &apt_conf).arg("-qq");
        cmd
    };
    sh::run(apt().arg("update"))?;
    let debs = work.join("debs");
    sh::run(
        apt()
            .arg("download")
            .args(packages.iter().map(|p| format!("{p}/{suite}")))
            .current_dir(&debs),
    )?;
    let staging = root.with_extension("partial");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    let mut unpacked = Vec::new();
    for entry in fs::read_dir(&debs)? {
        let deb = entry?.path();
        if deb.extension().is_none_or(|e| e != "deb") {
            continue;
        }
        let field = |name: &str| {
            sh::output(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name))
                .map(|s| s.trim().to_owned())
                .with_context(|| format!("reading {name} of {}", deb.display()))
        };
        unpacked.push(Unpacked {
            package: field("Package")?,
            version: field("Version")?,
        });
        sh::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&staging))?;
    }
    for want in packages {
        if !unpacked.iter().any(|u| u.package == *want) {
            bail!("apt-get download gave no {want} from {suite}");
        }
    }
    // Only a complete unpack takes `root`'s place: an interrupted run leaves
    // `root.partial` behind, never a `root` that looks installed.
    let _ = fs::remove_dir_all(root);
    fs::rename(&staging, root)
        .with_context(|| format!("moving {} to {}", staging.display(), root.display()))?;
    Ok(unpacked)
}

/// The Debian mirror of the system's own apt sources (one-line `deb` lines
/// or deb822 `URIs:` fields), e.g. `http://…/debian`.
fn mirror() -> Result<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut parts: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        parts.sort();
        files.extend(parts);
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        if let Some(uri) = text.lines().find_map(debian_uri) {
            return Ok(uri);
        }
    }
    bail!("no Debian mirror (a URI ending in /debian) in the system's apt sources")
}

/// The URI of a sources line if it names a Debian main archive.
fn debian_uri(line: &str) -> Option<String> {
    let line = line.trim();
    let uris: Vec<&str> = if let Some(rest) = line.strip_prefix("URIs:") {
        rest.split_whitespace().collect()
    } else if let Some(rest) = line.strip_prefix("deb ") {
        // `deb [options] URI suite components`
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('[') {
            Some(opts) => opts.split_once(']')?.1,
            None => rest,
        };
        rest.split_whitespace().take(1).collect()
    } else {
        Vec::new()
    };
    uris.into_iter()
        .map(|u| u.trim_end_matches('/'))
        .find(|u| u.ends_with("/debian"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::debian_uri;

    #[test]
    fn finds_the_main_archive_in_either_format() {
        let m = "http://mirror.example/debian";
        assert_eq!(debian_uri(&format!("URIs: {m}")).as_deref(), Some(m));
        assert_eq!(
            debian_uri(&format!(
                "deb [arch=amd64 signed-by=/k.gpg] {m}/ bookworm main"
            ))
            .as_deref(),
            Some(m)
        );
        assert_eq!(
            debian_uri(&format!("deb {m} bookworm main")).as_deref(),
            Some(m)
        );
        assert_eq!(debian_uri(&format!("URIs: {m}-security")), None);
        assert_eq!(debian_uri(&format!("# deb {m} bookworm main")), None);
        assert_eq!(debian_uri(&format!("deb-src {m} bookworm main")), None);
    }
}
