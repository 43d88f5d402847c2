//! Services, nodes and reserved identities, as a node with kube-proxy shows
//! them. A client pod and a server pod on a bridged node; the node namespace
//! DNATs a ClusterIP to the server pod (as kube-proxy's iptables mode does)
//! and holds an address of this node, one of another node and one outside
//! the cluster. Pods, the Service and both Nodes come from the stand-in API
//! server (no real one can run here); everything else is real.

use std::{
    io::{Read, Write},
    net::{IpAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use osprey_e2e::{
    agent,
    apiserver::{FakeApiServer, node, pod, service},
    bridge::BridgedNode,
    eventually,
    exposition::{samples, sum},
    settle,
};

const NODE: &str = "osprey-id-node";
const CLUSTER_IP: &str = "10.96.7.10";
const SVC_UDP: u16 = 7000;
const SVC_TCP: u16 = 80;
const SERVER_UDP: u16 = 7001;
const SERVER_TCP: u16 = 8080;
/// This node's InternalIP, another node's, and an address outside the
/// cluster; all three live in the node namespace.
const THIS_NODE_IP: &str = "10.218.0.254";
const OTHER_NODE_IP: &str = "10.218.0.253";
const WORLD_IP: &str = "198.51.100.7";
const SENT: usize = 30;

fn deployment_pod(name: &str, uid: &str, ip: &str) -> serde_json::Value {
    pod(
        "shop",
        &format!("{name}-5f6d7c-abcde"),
        uid,
        NODE,
        ip,
        Some(("ReplicaSet", &format!("{name}-5f6d7c"))),
        &[("pod-template-hash", "5f6d7c")],
        &format!("{uid}00"),
    )
}

/// kube-proxy's rules for the Service, in the node namespace.
fn kube_proxy(node: &BridgedNode, server: IpAddr) {
    for (proto, port, to) in [("udp", SVC_UDP, SERVER_UDP), ("tcp", SVC_TCP, SERVER_TCP)] {
        node.node().exec(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            CLUSTER_IP,
            "-p",
            proto,
            "--dport",
            &port.to_string(),
            "-j",
            "DNAT",
            "--to-destination",
            &format!("{server}:{to}"),
        ]);
    }
    node.node().exec(&[
        "ip",
        "addr",
        "add",
        &format!("{OTHER_NODE_IP}/32"),
        "dev",
        "br0",
    ]);
    node.node()
        .exec(&["ip", "addr", "add", &format!("{WORLD_IP}/32"), "dev", "lo"]);
}

#[test]
fn a_cluster_ip_is_its_service_and_other_addresses_their_reserved_identity() {
    let bridged = BridgedNode::new("id", "10.218.0", 2);
    let (client_ip, server_ip) = (bridged.ips[0], bridged.ips[1]);
    kube_proxy(&bridged, server_ip);
    let api = FakeApiServer::start(vec![
        deployment_pod("client", "uid-client", &client_ip.to_string()),
        deployment_pod("web", "uid-web", &server_ip.to_string()),
        service("shop", "web-svc", CLUSTER_IP, SVC_TCP),
        node(NODE, THIS_NODE_IP, "10.218.0.0/25"),
        node("node-2", OTHER_NODE_IP, "10.244.9.0/24"),
    ]);
    let Some(agent) = agent::for_test(&[
        "--drain-interval-ms",
        "200",
        "--kubeconfig",
        api.kubeconfig(),
        "--node-name",
        NODE,
        "--service-cidrs",
        "10.96.0.0/12",
        "--hubble-source-context",
        "workload|reserved-identity",
        "--hubble-destination-context",
        "workload|service|reserved-identity",
    ]) else {
        return;
    };
    let count = |name: &str| sum(&samples(&agent.scrape().1), name, &[]) as u64;
    eventually(15, "pods, the Service and both Nodes listed", || {
        (count("osprey_kubernetes_pods") == 2
            && count("osprey_kubernetes_services") == 1
            && count("osprey_kubernetes_nodes") == 2)
            .then_some(())
    });

    // The server pod: a UDP sink and a TCP answer.
    bridged.pods[1].run(|| {
        let udp = UdpSocket::bind(("0.0.0.0", SERVER_UDP)).unwrap();
        let tcp = TcpListener::bind(("0.0.0.0", SERVER_TCP)).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while udp.recv_from(&mut buf).is_ok() {}
        });
        std::thread::spawn(move || {
            for conn in tcp.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut req = [0u8; 4];
                if conn.read_exact(&mut req).is_ok() {
                    let _ = conn.write_all(b"ok");
                }
            }
        });
    });
    std::thread::sleep(Duration::from_millis(300));
    bridged.pods[0]
        .run(|| {
            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            for to in [CLUSTER_IP, THIS_NODE_IP, OTHER_NODE_IP, WORLD_IP] {
                for _ in 0..SENT {
                    udp.send_to(b"ping", (to, SVC_UDP)).unwrap();
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
            let mut tcp = TcpStream::connect((CLUSTER_IP, SVC_TCP)).expect("the ClusterIP");
            tcp.write_all(b"ping").unwrap();
            let mut answer = [0u8; 2];
            tcp.read_exact(&mut answer)
                .expect("the answer through DNAT");
        })
        .join()
        .unwrap();

    let udp = |s: &[osprey_e2e::exposition::Sample], source: &str, destination: &str| {
        sum(
            s,
            "hubble_flows_processed_total",
            &[
                ("source", source),
                ("destination", destination),
                ("protocol", "UDP"),
                ("verdict", "FORWARDED"),
            ],
        ) as usize
    };
    let s = settle(15, || {
        let s = samples(&agent.scrape().1);
        (udp(&s, "shop/client", "shop/web") >= SENT, s)
    });
    // The client's socket sent to the ClusterIP (kube-proxy rewrites it
    // later): the Service. The server's socket got it from the client pod.
    assert_eq!(
        udp(&s, "shop/client", "shop/web-svc"),
        SENT,
        "to the Service"
    );
    assert_eq!(
        udp(&s, "shop/client", "shop/web"),
        SENT,
        "at the server pod"
    );
    assert_eq!(udp(&s, "shop/client", "reserved:host"), SENT);
    assert_eq!(udp(&s, "shop/client", "reserved:remote-node"), SENT);
    assert_eq!(udp(&s, "shop/client", "reserved:world"), SENT);
    let tcp = |source: &str, destination: &str| {
        sum(
            &s,
            "hubble_flows_processed_total",
            &[
                ("source", source),
                ("destination", destination),
                ("protocol", "TCP"),
            ],
        )
    };
    assert!(
        tcp("shop/client", "shop/web-svc") > 0.0,
        "TCP to the Service"
    );
    assert!(tcp("shop/client", "shop/web") > 0.0, "TCP at the server");
    assert!(tcp("shop/web", "shop/client") > 0.0, "the server's answers");
    assert_eq!(
        tcp("shop/client", CLUSTER_IP) + tcp("shop/client", ""),
        0.0,
        "no end left unnamed"
    );

    // Flow records name the Service, and observe filters on it.
    let records = agent.observe(&["--to-service", "shop/web-svc", "--protocol", "UDP"]);
    let packets: u64 = records
        .iter()
        .map(|r| {
            assert_eq!(r["destination_ip"], CLUSTER_IP, "{r}");
            assert_eq!(r["destination_service"], "shop/web-svc", "{r}");
            r["packets"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(packets, SENT as u64, "observe --to-service: {records:?}");
    let text = agent.observe_text(&["--to-service", "shop/web-svc", "--protocol", "TCP"]);
    assert!(text.contains("-> shop/web-svc:80 TCP"), "{text}");
}

#[test]
fn the_watches_relist_after_410_and_an_outage() {
    let api = FakeApiServer::start(vec![
        service("shop", "a", "10.96.0.1", 80),
        node(NODE, "192.168.77.1", "10.219.0.0/24"),
    ]);
    let Some(agent) = agent::for_test(&["--kubeconfig", api.kubeconfig(), "--node-name", NODE])
    else {
        return;
    };
    let count = |name: &str| sum(&samples(&agent.scrape().1), name, &[]) as u64;
    eventually(15, "the first lists", || {
        (count("osprey_kubernetes_services") == 1 && count("osprey_kubernetes_nodes") == 1)
            .then_some(())
    });
    // A change through the watch.
    api.apply(service("shop", "b", "10.96.0.2", 80));
    eventually(15, "service b from the watch", || {
        (count("osprey_kubernetes_services") == 2).then_some(())
    });
    // History compacted: the watch ends, resumes from an old version, gets
    // 410 Gone and lists again; a change made meanwhile arrives by the list.
    let lists_before = lists(&api, "services");
    api.compact();
    api.delete_object("services", "shop/a");
    eventually(20, "service a gone after the relist", || {
        (count("osprey_kubernetes_services") == 1).then_some(())
    });
    assert!(lists(&api, "services") > lists_before, "a relist after 410");
    // The server goes down; changes made meanwhile arrive once it is back.
    let errors = count("osprey_kubernetes_watch_errors_total");
    api.set_down(true);
    api.apply(service("shop", "c", "10.96.0.3", 80));
    api.apply(node("node-2", "192.168.77.2", "10.219.1.0/24"));
    eventually(20, "watch errors counted while down", || {
        (count("osprey_kubernetes_watch_errors_total") > errors).then_some(())
    });
    api.set_down(false);
    eventually(30, "the changes after the outage", || {
        (count("osprey_kubernetes_services") == 2 && count("osprey_kubernetes_nodes") == 2)
            .then_some(())
    });
    assert!(
        api.requests()
            .iter()
            .any(|r| r.contains("allowWatchBookmarks=true")),
        "watches ask for bookmarks"
    );
}

/// List requests (not watches) for `kind` so far.
fn lists(api: &FakeApiServer, kind: &str) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.starts_with(&format!("/api/v1/{kind}")) && !r.contains("watch=true"))
        .count()
}
