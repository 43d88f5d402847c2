//! `osprey-agent observe`: the CLI client of `/api/v1/flows`, like `hubble observe`.

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    sync::Arc,
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use super::record::{FlowRecord, Verdict};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    /// One line per record (for flows, like `hubble observe`).
    Compact,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VerdictArg {
    Forwarded,
    Dropped,
}

/// What `observe` and `events` share: where the agent is, what to stream, how to print it.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// The agent's address: http://HOST:PORT, or https:// when it serves TLS.
    #[arg(long, env = "OSPREY_SERVER", default_value = "http://127.0.0.1:9811")]
    pub server: String,
    /// With https://: the CA (PEM) that signed the agent's certificate,
    /// trusted instead of the system's roots.
    #[arg(long, env = "OSPREY_CLIENT_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// With https://: the client certificate (PEM) to present, for an agent
    /// with tls_client_ca_file. Needs --tls-key-file.
    #[arg(long, env = "OSPREY_CLIENT_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The key (PEM) of --tls-cert-file.
    #[arg(long, env = "OSPREY_CLIENT_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Keep printing new records as they come.
    #[arg(short, long)]
    pub follow: bool,
    /// Print the last N buffered records first.
    #[arg(long)]
    pub last: Option<usize>,
    #[arg(short, long, value_enum, default_value = "compact")]
    pub output: Output,
}

/// A streamed record's one-line text form.
pub trait Compact: serde::de::DeserializeOwned {
    /// What a record is called in errors ("flow record", "event").
    const NAME: &'static str;
    fn compact(&self) -> String;
}

impl Compact for FlowRecord {
    const NAME: &'static str = "flow record";
    fn compact(&self) -> String {
        FlowRecord::compact(self)
    }
}

/// Print flows from a running agent.
#[derive(Debug, Args)]
pub struct ObserveArgs {
    #[command(flatten)]
    pub stream: StreamArgs,
    /// Source or destination IP.
    #[arg(long)]
    pub ip: Option<std::net::IpAddr>,
    /// Source or destination port.
    #[arg(long)]
    pub port: Option<u16>,
    /// TCP, UDP, ICMPv4, ICMPv6.
    #[arg(long)]
    pub protocol: Option<String>,
    #[arg(long, value_enum)]
    pub verdict: Option<VerdictArg>,
    /// A kernel drop reason, e.g. NETFILTER_DROP.
    #[arg(long)]
    pub drop_reason: Option<String>,
    /// Source or destination namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Source or destination pod.
    #[arg(long)]
    pub pod: Option<String>,
    /// Source address only (and so on for --to-ip, --from-/--to-namespace, --from-/--to-pod).
    #[arg(long)]
    pub from_ip: Option<std::net::IpAddr>,
    #[arg(long)]
    pub to_ip: Option<std::net::IpAddr>,
    #[arg(long)]
    pub from_namespace: Option<String>,
    #[arg(long)]
    pub to_namespace: Option<String>,
    #[arg(long)]
    pub from_pod: Option<String>,
    #[arg(long)]
    pub to_pod: Option<String>,
    /// Records to this Service (namespace/name), as the client sent them.
    #[arg(long)]
    pub to_service: Option<String>,
    /// HTTP records with this response status code.
    #[arg(long)]
    pub http_status: Option<u16>,
    /// HTTP records with this request method.
    #[arg(long)]
    pub http_method: Option<String>,
}

pub fn run(args: ObserveArgs) -> Result<()> {
    let verdict = args.verdict.map(|v| match v {
        VerdictArg::Forwarded => "FORWARDED",
        VerdictArg::Dropped => "DROPPED",
    });
    let pairs = [
        ("ip", args.ip.map(|v| v.to_string())),
        ("port", args.port.map(|v| v.to_string())),
        ("protocol", args.protocol.clone()),
        ("verdict", verdict.map(str::to_owned)),
        ("drop_reason", args.drop_reason.clone()),
        ("namespace", args.namespace.clone()),
        ("pod", args.pod.clone()),
        ("from_ip", args.from_ip.map(|v| v.to_string())),
        ("to_ip", args.to_ip.map(|v| v.to_string())),
        ("from_namespace", args.from_namespace.clone()),
        ("to_namespace", args.to_namespace.clone()),
        ("from_pod", args.from_pod.clone()),
        ("to_pod", args.to_pod.clone()),
        ("to_service", args.to_service.clone()),
        ("http_status", args.http_status.map(|v| v.to_string())),
        ("http_method", args.http_method.clone()),
    ];
    print_stream::<FlowRecord>(&args.stream, "flows", &pairs)
}

/// Asks the agent for `/api/v1/<path>` with `follow`, `last` and the query
/// pairs that have a value, and prints each record of the newline-delimited
/// response (as JSON, or in its compact form), until the stream ends or
/// stdout goes away. Shared by `observe` and `events`.
pub fn print_stream<T: Compact>(
    args: &StreamArgs,
    path: &str,
    query: &[(&str, Option<String>)],
) -> Result<()> {
    let url = format!("{}/api/v1/{path}", args.server.trim_end_matches('/'));
    let follow = if args.follow { "true" } else { "false" };
    let mut req = agent(args)?.get(&url).query("follow", follow);
    if let Some(last) = args.last {
        req = req.query("last", &last.to_string());
    }
    for (key, value) in query {
        if let Some(value) = value {
            req = req.query(key, value);
        }
    }
    let resp = match req.call() {
        Ok(resp) => resp,
        Err(ureq::Error::Status(code, resp)) => {
            bail!(
                "{url}: HTTP {code}: {}",
                resp.into_string().unwrap_or_default().trim()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {url}")),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in BufReader::new(resp.into_reader()).lines() {
        let line = line.context("reading the stream")?;
        if line.is_empty() {
            continue;
        }
        let text = match args.output {
            Output::Json => line,
            Output::Compact => serde_json::from_str::<T>(&line)
                .map(|r| r.compact())
                .with_context(|| format!("not a {}: {line}", T::NAME))?,
        };
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            break; // the reader went away (e.g. `| head`)
        }
    }
    Ok(())
}

/// A client that trusts `--tls-ca-file` and presents `--tls-cert-file`
/// when given; otherwise ureq's defaults (the bundled web roots).
fn agent(args: &StreamArgs) -> Result<ureq::Agent> {
    let builder = ureq::AgentBuilder::new();
    let Some(ca) = &args.tls_ca_file else {
        if args.tls_cert_file.is_some() {
            bail!("--tls-cert-file needs --tls-ca-file (the CA of the agent's certificate)");
        }
        return Ok(builder.build());
    };
    let identity = args
        .tls_cert_file
        .as_deref()
        .zip(args.tls_key_file.as_deref());
    let config = osprey_tls::client_config(ca, identity).context("the client's TLS files")?;
    Ok(builder.tls_config(Arc::new(config)).build())
}

impl From<VerdictArg> for Verdict {
    fn from(v: VerdictArg) -> Self {
        match v {
            VerdictArg::Forwarded => Verdict::Forwarded,
            VerdictArg::Dropped => Verdict::Dropped,
        }
    }
}
