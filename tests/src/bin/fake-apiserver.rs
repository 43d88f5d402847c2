//! `fake-apiserver PODS SERVICES NODES`: the stand-in API server of the
//! tests (`osprey_e2e::apiserver`) holding a generated cluster, for the
//! identity-cache bench (`cargo xtask bench --only identity`). Prints
//! `kubeconfig: PATH` once it serves, then runs until killed.

use osprey_e2e::apiserver::{FakeApiServer, cluster};

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (pods, services, nodes) = (arg(1, 10_000), arg(2, 1_000), arg(3, 100));
    let objects = cluster(pods, services, nodes);
    let server = FakeApiServer::start(objects);
    println!("kubeconfig: {}", server.kubeconfig());
    loop {
        std::thread::park();
    }
}
