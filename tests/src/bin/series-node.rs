//! `series-node N`: the node of the series bench (`cargo xtask bench --only
//! series`), as a new user's first cluster node looks. N pods on a Linux
//! bridge (IPv6, ARP, neighbour discovery and MLD left on, no firewall),
//! each in kubelet-style cgroups (`kubepods/burstable/pod<uid>/<id>`: a
//! pause container and an app container, a process in each), pod 0 the
//! server: every other pod sends it an HTTP request and a UDP datagram
//! every 500 ms. The stand-in API server lists the pods (Deployments, their
//! app containers by id), a Service in front of the server and this node,
//! over HTTPS at port 6443 as a real one.
//! Prints `kubeconfig: PATH`, then runs until its stdin closes, and cleans
//! up. The apps are this binary too (`series-node server`, `series-node
//! client IP`), each in its pod's network namespace and app cgroup, so their
//! traffic, CPU and scheduling are their container's.

use std::{
    io::{BufRead, Read, Write},
    net::{IpAddr, TcpListener, TcpStream, UdpSocket},
    process::Child,
    time::Duration,
};

use osprey_e2e::{
    apiserver::{FakeApiServer, Tls, node, pod, service},
    bridge::BridgedNode,
    certs::{Certs, SERVER_ON_LOOPBACK},
    cgroup::TestCgroup,
};

const NODE: &str = "series-node";
const HTTP: u16 = 8080;
const UDP: u16 = 7000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("server") => return server(),
        Some("client") => return client(args[2].parse().expect("the server's address")),
        _ => {}
    }
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let exe = std::env::current_exe().expect("this binary");
    let bridged = BridgedNode::new("sr", "10.220.0", n);
    let root = format!("osprey-kubepods-{}/burstable", std::process::id());
    let mut cgroups = Vec::new();
    let mut processes: Vec<Child> = Vec::new();
    let mut objects = vec![
        node(NODE, "10.220.0.254", "10.220.0.0/24"),
        service("shop", "server", "10.96.20.1", HTTP),
    ];
    for (i, ip) in bridged.ips.iter().enumerate() {
        let uid = format!("5e41e5{i:02x}-0000-4000-8000-{i:012x}");
        let app = format!("{:064x}", 0xa99_0000 + i);
        let pause = format!("{:064x}", 0xba05_0000 + i);
        let workload = if i == 0 {
            "server".to_owned()
        } else {
            format!("client-{i}")
        };
        objects.push(pod(
            "shop",
            &format!("{workload}-5f6d7c-x{i:04}"),
            &uid,
            NODE,
            &ip.to_string(),
            Some(("ReplicaSet", &format!("{workload}-5f6d7c"))),
            &[("pod-template-hash", "5f6d7c")],
            &app,
        ));
        let pause_cg = TestCgroup::at(&format!("{root}/pod{uid}/{pause}"));
        processes.push(pause_cg.run("sleep 100000"));
        cgroups.push(pause_cg);
        let app_cg = TestCgroup::at(&format!("{root}/pod{uid}/{app}"));
        let role = if i == 0 {
            "server".to_owned()
        } else {
            format!("client {}", bridged.ips[0])
        };
        processes.push(app_cg.run(&format!(
            "ip netns exec {} {} {role}",
            bridged.pods[i].name,
            exe.display()
        )));
        cgroups.push(app_cg);
        if i == 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    // As a real API server: HTTPS (no HTTP for the agent's parser to read)
    // at its own port (no ephemeral port in the agent's flows).
    let certs = Certs::new("series-node").expect("openssl makes the API server's certificate");
    certs.leaf("ca", "apiserver", SERVER_ON_LOOPBACK);
    let tls = Tls {
        cert: certs.pem("apiserver"),
        key: certs.key("apiserver"),
        ca: certs.pem("ca"),
    };
    let api = FakeApiServer::start_tls(objects, "127.0.0.1:6443", &tls);
    println!("kubeconfig: {}", api.kubeconfig());
    let _ = std::io::stdout().flush();
    // Until the bench closes our stdin.
    let mut line = String::new();
    while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {}
    for p in &mut processes {
        let _ = p.kill();
        let _ = p.wait();
    }
    std::thread::sleep(Duration::from_millis(600));
    // Deepest first: a pod's cgroups before the parents the first one made.
    while let Some(cg) = cgroups.pop() {
        drop(cg);
    }
    drop(bridged);
}

/// The server pod's app: HTTP answers and a UDP sink.
fn server() {
    let udp = UdpSocket::bind(("0.0.0.0", UDP)).unwrap();
    let tcp = TcpListener::bind(("0.0.0.0", HTTP)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while udp.recv_from(&mut buf).is_ok() {}
    });
    for conn in tcp.incoming() {
        let Ok(mut conn) = conn else { continue };
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            // One request per connection; the client closes.
            if conn.read(&mut buf).is_ok_and(|n| n > 0) {
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
    }
}

/// A client pod's app: an HTTP request (a new connection each) and a
/// datagram to the server every 500 ms.
fn client(server: IpAddr) {
    let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
    loop {
        let _ = udp.send_to(b"metrics please", (server, UDP));
        if let Ok(mut conn) =
            TcpStream::connect_timeout(&(server, HTTP).into(), Duration::from_secs(2))
        {
            let _ = conn.write_all(b"GET /api/items HTTP/1.1\r\nHost: server\r\n\r\n");
            let mut answer = Vec::new();
            let _ = conn.read_to_end(&mut answer);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
