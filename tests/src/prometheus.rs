//! A real Prometheus (Debian's package) scraping targets on loopback.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The Prometheus binary: $OSPREY_PROMETHEUS or Debian's /usr/bin/prometheus.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("OSPREY_PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    path.exists().then_some(path)
}

pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    pub base_url: String,
}

use crate::free_port;

impl Prometheus {
    /// Starts Prometheus scraping `targets` (host:port) every second.
    pub fn start(targets: &[String]) -> Result<Self, String> {
        let bin = binary().ok_or("prometheus is not installed (cargo xtask setup installs it)")?;
        Self::start_with(&bin, targets, &[])
    }

    /// A remote-write receiver (v1, and v2 on Prometheus 3) that also
    /// scrapes `targets`; its write URL is [`Self::write_url`].
    pub fn receiver(bin: &std::path::Path, targets: &[String]) -> Result<Self, String> {
        Self::start_with(bin, targets, &["--web.enable-remote-write-receiver"])
    }

    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base_url)
    }

    /// `bin` scraping `targets`, with `extra` flags.
    pub fn start_with(
        bin: &std::path::Path,
        targets: &[String],
        extra: &[&str],
    ) -> Result<Self, String> {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        Self::launch(bin, extra, |_| {
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: osprey\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            )
        })
    }

    /// `bin` with exemplar storage, `extra` flags, and the configuration
    /// `config` writes given Prometheus's own directory (where rules or
    /// certificates it names can go). Its log is `prometheus.log` there
    /// ([`Self::log`]), printed if the test panics.
    pub fn launch(
        bin: &std::path::Path,
        extra: &[&str],
        config: impl FnOnce(&std::path::Path) -> String,
    ) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "osprey-prom-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("prometheus.yml"), config(&dir)).map_err(|e| e.to_string())?;
        // A caller that needs the port before Prometheus starts passes it.
        let port = extra
            .iter()
            .find_map(|a| a.strip_prefix("--web.listen-address=127.0.0.1:"))
            .map_or_else(free_port, |p| p.parse().expect("a port"));
        let extra: Vec<&str> = extra
            .iter()
            .copied()
            .filter(|a| !a.starts_with("--web.listen-address="))
            .collect();
        let log = std::fs::File::create(dir.join("prometheus.log")).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--log.level=warn")
            .args(&extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let prometheus = Self {
            child,
            dir,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        crate::eventually(60, "Prometheus to be ready", || {
            ureq::get(&format!("{}/-/ready", prometheus.base_url))
                .timeout(Duration::from_secs(2))
                .call()
                .ok()
                .filter(|r| r.status() == 200)
        });
        Ok(prometheus)
    }

    /// What Prometheus logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Instant query; returns (labels, value) per series.
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let resp: serde_json::Value = ureq::get(&format!("{}/api/v1/query", self.base_url))
            .query("query", promql)
            .timeout(Duration::from_secs(5))
            .call()
            .expect("querying Prometheus")
            .into_json()
            .expect("Prometheus answers JSON");
        assert_eq!(resp["status"], "success", "{resp}");
        resp["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].clone(),
                    r["value"][1].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }

    /// Health of the scrape targets as Prometheus reports them.
    pub fn targets_up(&self) -> Vec<(String, String)> {
        let resp: serde_json::Value = ureq::get(&format!("{}/api/v1/targets", self.base_url))
            .call()
            .expect("querying targets")
            .into_json()
            .unwrap();
        resp["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["scrapeUrl"].as_str().unwrap_or_default().to_owned(),
                    t["health"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("Prometheus' log:\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// `/api/v1/query_exemplars` over the last `secs`: (series labels, exemplar labels, value).
    pub fn exemplars(
        &self,
        promql: &str,
        secs: u64,
    ) -> Vec<(serde_json::Value, serde_json::Value, f64)> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let resp: serde_json::Value =
            ureq::get(&format!("{}/api/v1/query_exemplars", self.base_url))
                .query("query", promql)
                .query("start", &(now - secs).to_string())
                .query("end", &(now + 60).to_string())
                .call()
                .expect("querying exemplars")
                .into_json()
                .unwrap();
        assert_eq!(resp["status"], "success", "{resp}");
        let mut out = Vec::new();
        for series in resp["data"].as_array().unwrap() {
            for e in series["exemplars"].as_array().unwrap() {
                let v = e["value"].as_str().unwrap().parse().unwrap();
                out.push((series["seriesLabels"].clone(), e["labels"].clone(), v));
            }
        }
        out
    }
}
