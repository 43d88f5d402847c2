//! `fake-apiserver PODS SERVICES NODES`: the stand-in API server of the
//! tests (`osprey_e2e::apiserver`) holding a generated cluster, for the
//! identity-cache bench (`cargo xtask bench --only identity`). Prints
//! `kubeconfig: PATH` once it serves, then runs until killed.

use osprey_e2e::apiserver::{FakeApiServer, node, pod, service};

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (pods, services, nodes) = (arg(1, 10_000), arg(2, 1_000), arg(3, 100));
    let mut objects = Vec::with_capacity(pods + services + nodes);
    for n in 0..nodes {
        // Node n: InternalIP 192.168.(n/250).(n%250+1), pods in 10.(n/256+64).(n%256).0/24.
        objects.push(node(
            &format!("node-{n}"),
            &format!("192.168.{}.{}", n / 250, n % 250 + 1),
            &format!("10.{}.{}.0/24", n / 256 + 64, n % 256),
        ));
    }
    for p in 0..pods {
        let n = p % nodes.max(1);
        let slot = p / nodes.max(1) + 1;
        objects.push(pod(
            &format!("ns-{}", p % 50),
            &format!("app-{}-5f6d7c-{p:05}", p % 500),
            &format!("uid-{p:08}"),
            &format!("node-{n}"),
            &format!("10.{}.{}.{}", n / 256 + 64, n % 256, slot % 254 + 1),
            Some(("ReplicaSet", &format!("app-{}-5f6d7c", p % 500))),
            &[
                ("pod-template-hash", "5f6d7c"),
                ("app", &format!("app-{}", p % 500)),
            ],
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
    let server = FakeApiServer::start(objects);
    println!("kubeconfig: {}", server.kubeconfig());
    loop {
        std::thread::park();
    }
}
