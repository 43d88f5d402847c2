//! A stand-in for the Kubernetes API server, which cannot run here (no
//! kube-apiserver, k3s or kind in any reachable registry): it serves
//! `GET /api/v1/{pods,services,nodes}` as a list and as a watch (chunked
//! JSON lines of ADDED / MODIFIED / DELETED events, and BOOKMARKs when asked
//! for), honouring `fieldSelector=spec.nodeName=…` and `resourceVersion`:
//! a watch from a version older than the last [`FakeApiServer::compact`]
//! gets `410 Gone`, as etcd's compaction gives it, and while
//! [`FakeApiServer::set_down`] holds every connection closes unanswered. The agent's
//! real kube-rs client runs its real list-then-watch path over HTTP.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    path::PathBuf,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

#[derive(Default)]
struct State {
    rv: u64,
    /// (kind: pods, services or nodes; key: a pod's uid, a service's
    /// namespace/name, a node's name) → object
    objects: BTreeMap<(String, String), Value>,
    /// (resourceVersion, kind, event)
    events: Vec<(u64, String, Value)>,
    /// Watches from before this version get 410 Gone.
    compacted: u64,
    down: bool,
    /// Request targets, in order.
    requests: Vec<String>,
}

/// The kind (path segment) and key of an API object.
fn kind_and_key(object: &Value) -> (String, String) {
    let m = &object["metadata"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match object["kind"].as_str() {
        Some("Service") => (
            "services".into(),
            format!("{}/{}", s(&m["namespace"]), s(&m["name"])),
        ),
        Some("Node") => ("nodes".into(), s(&m["name"])),
        _ => ("pods".into(), s(&m["uid"])),
    }
}

/// A Service `namespace/name` with `cluster_ip` and one TCP port.
pub fn service(namespace: &str, name: &str, cluster_ip: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": namespace, "name": name, "uid": format!("svc-{namespace}-{name}")},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
            "ports": [{"port": port, "protocol": "TCP"}]}
    })
}

/// A generated cluster, for benches: `nodes` Nodes (`node-<n>`, InternalIP
/// `192.168.<n/250>.<n%250+1>`, pods in `10.<64+n/256>.<n%256>.0/24`),
/// `pods` pods spread over them (Deployments `app-0`…`app-499` in
/// namespaces `ns-0`…`ns-49`) and `services` Services (ClusterIPs
/// `10.96.<s/250>.<s%250+1>`).
pub fn cluster(pods: usize, services: usize, nodes: usize) -> Vec<Value> {
    let nodes = nodes.max(1);
    let mut objects = Vec::with_capacity(pods + services + nodes);
    for n in 0..nodes {
        objects.push(node(
            &format!("node-{n}"),
            &format!("192.168.{}.{}", n / 250, n % 250 + 1),
            &format!("10.{}.{}.0/24", n / 256 + 64, n % 256),
        ));
    }
    for p in 0..pods {
        let (n, slot) = (p % nodes, p / nodes + 1);
        let app = format!("app-{}", p % 500);
        objects.push(pod(
            &format!("ns-{}", p % 50),
            &format!("{app}-5f6d7c-{p:05}"),
            &format!("uid-{p:08}"),
            &format!("node-{n}"),
            &format!("10.{}.{}.{}", n / 256 + 64, n % 256, slot % 254 + 1),
            Some(("ReplicaSet", &format!("{app}-5f6d7c"))),
            &[("pod-template-hash", "5f6d7c"), ("app", &app)],
            &format!("{p:064x}"),
        ));
    }
    for s in 0..services {
        objects.push(service(
            &format!("ns-{}", s % 50),
            &format!("svc-{s}"),
            &format!("10.96.{}.{}", s / 250, s % 250 + 1),
            80,
        ));
    }
    objects
}

/// A Node with an InternalIP and a pod range.
pub fn node(name: &str, internal_ip: &str, pod_cidr: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": format!("node-{name}")},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {"addresses": [{"type": "InternalIP", "address": internal_ip},
            {"type": "Hostname", "address": name}]}
    })
}

/// The stand-in's certificate and key, and the CA its kubeconfig names.
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Tls {
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let config = osprey_tls::server_config(&self.cert, &self.key, None)
            .unwrap_or_else(|e| panic!("the stand-in API server's TLS configuration: {e}"));
        Arc::new(config)
    }
}

pub struct FakeApiServer {
    pub url: String,
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
    kubeconfig: PathBuf,
}

/// A running pod of `node` owned by `owner` (kind, name), with `ip` and one
/// container, `app` (image busybox:1.36), whose containerd id is `container`.
#[allow(clippy::too_many_arguments)]
pub fn pod(
    namespace: &str,
    name: &str,
    uid: &str,
    node: &str,
    ip: &str,
    owner: Option<(&str, &str)>,
    labels: &[(&str, &str)],
    container: &str,
) -> Value {
    let mut metadata = json!({"namespace": namespace, "name": name, "uid": uid});
    if let Some((kind, owner)) = owner {
        metadata["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": kind, "name": owner,
            "uid": format!("{owner}-uid"), "controller": true
        }]);
    }
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    metadata["labels"] = Value::Object(labels);
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox:1.36"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "containerStatuses": [{"name": "app", "image": "busybox:1.36", "imageID": "",
                "containerID": format!("containerd://{container}"), "ready": true,
                "restartCount": 0}]}
    })
}

impl FakeApiServer {
    pub fn start(pods: Vec<Value>) -> Self {
        Self::start_at(pods, "127.0.0.1:0")
    }

    /// Serves at `addr` over plain HTTP.
    pub fn start_at(pods: Vec<Value>, addr: &str) -> Self {
        Self::start_with(pods, addr, None)
    }

    /// Serves HTTPS at `addr` with `tls`, as a real API server does: no
    /// HTTP for the agent's parser to read (`series-node`: at the API
    /// server's own port, 6443, where it is no ephemeral port of a flow).
    pub fn start_tls(pods: Vec<Value>, addr: &str, tls: &Tls) -> Self {
        Self::start_with(pods, addr, Some(tls))
    }

    fn start_with(pods: Vec<Value>, addr: &str, tls: Option<&Tls>) -> Self {
        let listener = TcpListener::bind(addr)
            .unwrap_or_else(|e| panic!("binding the fake API server at {addr}: {e}"));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let config = tls.map(Tls::server_config);
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, stop, config) = (state.clone(), stop.clone(), config.clone());
                    std::thread::spawn(move || match config {
                        None => serve(&mut BufReader::new(conn), &state, &stop),
                        Some(config) => {
                            let Ok(tls) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            let mut reader = BufReader::new(rustls::StreamOwned::new(tls, conn));
                            serve(&mut reader, &state, &stop);
                            let stream = reader.get_mut();
                            stream.conn.send_close_notify();
                            let _ = stream.flush();
                        }
                    });
                }
            });
        }
        // One file per server: tests of one binary run in parallel, each
        // with its own server (the port tells them apart).
        let port = url.rsplit(':').next().unwrap_or_default().to_owned();
        let ca = tls.map_or(String::new(), |t| {
            format!("    certificate-authority: {}\n", t.ca.display())
        });
        let kubeconfig =
            std::env::temp_dir().join(format!("osprey-kubeconfig-{}-{port}", std::process::id()));
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
                 clusters:\n- name: fake\n  cluster:\n    server: {url}\n{ca}\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
                 users:\n- name: fake\n  user: {{}}\n"
            ),
        )
        .expect("writing the kubeconfig");
        let server = Self {
            url,
            state,
            stop,
            kubeconfig,
        };
        for p in pods {
            server.apply(p);
        }
        server
    }

    /// A kubeconfig file that points at this server.
    pub fn kubeconfig(&self) -> &str {
        self.kubeconfig.to_str().unwrap()
    }

    /// Creates or updates an object (a Pod, Service or Node, by its
    /// `kind`); watchers get ADDED or MODIFIED.
    pub fn apply(&self, mut object: Value) {
        let (lock, cvar) = &*self.state;
        let mut s = lock.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = kind_and_key(&object);
        let change = if s.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        s.objects.insert(key.clone(), object.clone());
        s.events
            .push((rv, key.0, json!({"type": change, "object": object})));
        cvar.notify_all();
    }

    /// Deletes a pod by uid; watchers get DELETED.
    pub fn delete(&self, uid: &str) {
        self.delete_object("pods", uid);
    }

    /// Deletes an object of `kind` (pods, services, nodes) by its key (uid,
    /// namespace/name, name); watchers get DELETED.
    pub fn delete_object(&self, kind: &str, key: &str) {
        let (lock, cvar) = &*self.state;
        let mut s = lock.lock().unwrap();
        let Some(mut object) = s.objects.remove(&(kind.to_owned(), key.to_owned())) else {
            return;
        };
        s.rv += 1;
        object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        let rv = s.rv;
        s.events.push((
            rv,
            kind.to_owned(),
            json!({"type": "DELETED", "object": object}),
        ));
        cvar.notify_all();
    }

    /// Forgets the event history, as etcd's compaction does: open watches
    /// end, and a watch resumed from an older version gets 410 Gone (so the
    /// client must list again). Changes made meanwhile are only in a list.
    pub fn compact(&self) {
        let (lock, cvar) = &*self.state;
        let mut s = lock.lock().unwrap();
        s.compacted = s.rv + 1;
        s.events.clear();
        cvar.notify_all();
    }

    /// While down, every connection closes unanswered and open watches end.
    pub fn set_down(&self, down: bool) {
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap().down = down;
        cvar.notify_all();
    }

    /// The request targets served so far (path and query).
    pub fn requests(&self) -> Vec<String> {
        self.state.0.lock().unwrap().requests.clone()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.state.1.notify_all();
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn on_node(object: &Value, node: Option<&str>) -> bool {
    node.is_none_or(|n| object["spec"]["nodeName"].as_str() == Some(n))
}

/// Answers one request read from `reader`; the caller closes the connection.
fn serve<S: Read + Write>(
    reader: &mut BufReader<S>,
    state: &Arc<(Mutex<State>, Condvar)>,
    stop: &AtomicBool,
) {
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // Skip the headers (GET requests carry no body).
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect();
    let (lock, cvar) = &**state;
    let down = {
        let mut s = lock.lock().unwrap();
        s.requests.push(target.clone());
        s.down
    };
    if down {
        // As an API server that is gone: the connection closes unanswered.
        return;
    }
    let out = reader.get_mut();
    let Some(kind) = path
        .strip_prefix("/api/v1/")
        .filter(|k| ["pods", "services", "nodes"].contains(k))
        .map(str::to_owned)
    else {
        let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "NotFound", "code": 404, "message": format!("{path} not served")})
        .to_string();
        let _ = write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    };
    let kind_name = match kind.as_str() {
        "services" => "Service",
        "nodes" => "Node",
        _ => "Pod",
    };
    let node = params
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("spec.nodeName="))
        .map(str::to_owned);
    if params.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let from: u64 = params
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let timeout = params
            .get("timeoutSeconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(290);
        let deadline = Instant::now() + Duration::from_secs(timeout);
        if out
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .is_err()
        {
            return;
        }
        let bookmarks = params
            .get("allowWatchBookmarks")
            .is_some_and(|b| b == "true");
        let mut sent = from;
        let compacted_at = lock.lock().unwrap().compacted;
        if from < compacted_at {
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                "status": "Failure", "reason": "Expired", "code": 410,
                "message": format!("too old resource version: {from} ({compacted_at})")}})
            .to_string()
                + "\n";
            let _ = write!(out, "{:x}\r\n{gone}\r\n0\r\n\r\n", gone.len());
            return;
        }
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let (last, batch, end): (u64, Vec<String>, bool) = {
                let s = lock.lock().unwrap();
                let s = if s.rv > sent {
                    s
                } else {
                    cvar.wait_timeout(s, Duration::from_millis(500)).unwrap().0
                };
                let mut batch: Vec<String> = s
                    .events
                    .iter()
                    .filter(|(rv, k, e)| {
                        *rv > sent && *k == kind && on_node(&e["object"], node.as_deref())
                    })
                    .map(|(_, _, e)| format!("{e}\n"))
                    .collect();
                if batch.is_empty() && bookmarks {
                    batch.push(format!(
                        "{}\n",
                        json!({"type": "BOOKMARK", "object": {"kind": kind_name, "apiVersion": "v1",
                            "metadata": {"resourceVersion": s.rv.max(sent).to_string()}}})
                    ));
                }
                (s.rv.max(sent), batch, s.down || s.compacted > compacted_at)
            };
            if end {
                break;
            }
            for text in batch {
                if write!(out, "{:x}\r\n{text}\r\n", text.len()).is_err() {
                    return;
                }
            }
            sent = last;
            let _ = out.flush();
        }
        let _ = out.write_all(b"0\r\n\r\n");
        return;
    }
    // Pages of `limit`, as the real server cuts a list (kube-rs asks for
    // 500 at a time), the `continue` token being the next item's index.
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let from: usize = params
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = {
        let s = lock.lock().unwrap();
        let mut items = s
            .objects
            .iter()
            .filter(|((k, _), o)| *k == kind && on_node(o, node.as_deref()))
            .map(|(_, o)| o)
            .skip(from);
        let page: Vec<&Value> = items.by_ref().take(limit).collect();
        let mut metadata = json!({"resourceVersion": s.rv.to_string()});
        if items.next().is_some() {
            metadata["continue"] = json!((from + page.len()).to_string());
        }
        json!({"apiVersion": "v1", "kind": format!("{kind_name}List"),
            "metadata": metadata, "items": page})
        .to_string()
    };
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
