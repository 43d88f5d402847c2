//! Traffic with known byte counts between two pods: the ground truth.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::mpsc,
    time::Duration,
};

use crate::netns::PodPair;

/// What a TCP exchange did: the client's ephemeral port, payload counts, and
/// the payload bytes each side retransmitted (from the kernel's TCP_INFO):
/// retransmitted payload is on the wire too.
#[derive(Debug, Clone, Copy)]
pub struct TcpExchange {
    pub client_port: u16,
    pub server_port: u16,
    pub a_to_b: usize,
    pub b_to_a: usize,
    pub a_retrans_bytes: u64,
    pub b_retrans_bytes: u64,
}

/// `tcpi_bytes_retrans` of a connected socket.
pub fn retransmitted_bytes(conn: &TcpStream) -> u64 {
    tcp_info(conn).tcpi_bytes_retrans
}

/// `tcpi_rtt` (smoothed RTT, µs) of a connected socket.
pub fn smoothed_rtt_us(conn: &TcpStream) -> u32 {
    tcp_info(conn).tcpi_rtt
}

/// `tcpi_total_retrans` (segments) of a connected socket.
pub fn retransmitted_segments(conn: &TcpStream) -> u64 {
    u64::from(tcp_info(conn).tcpi_total_retrans)
}

fn tcp_info(conn: &TcpStream) -> libc::tcp_info {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            conn.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        );
        assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info
    }
}

/// `a` connects to `b:port`, sends `a_to_b` bytes, reads `b_to_a` bytes back, closes.
pub fn tcp(pair: &PodPair, port: u16, a_to_b: usize, b_to_a: usize) -> TcpExchange {
    let (ready_tx, ready_rx) = mpsc::channel();
    let b_ip = pair.b_ip;
    let server = pair.b.run(move || {
        let listener = TcpListener::bind(SocketAddr::new(b_ip, port)).expect("bind in pod b");
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; a_to_b];
        conn.read_exact(&mut buf).expect("server reads everything");
        conn.write_all(&vec![7u8; b_to_a]).expect("server writes");
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        // Wait for the client's FIN so both sides close cleanly.
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        retransmitted_bytes(&conn)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    let client = pair.a.run(move || {
        let mut conn =
            TcpStream::connect_timeout(&SocketAddr::new(b_ip, port), Duration::from_secs(5))
                .expect("connect from pod a");
        let local = conn.local_addr().unwrap().port();
        conn.write_all(&vec![1u8; a_to_b]).expect("client writes");
        let mut buf = vec![0u8; b_to_a];
        conn.read_exact(&mut buf).expect("client reads everything");
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).unwrap();
        (local, retransmitted_bytes(&conn))
    });
    let (client_port, a_retrans_bytes) = client.join().expect("client thread");
    let b_retrans_bytes = server.join().expect("server thread");
    TcpExchange {
        client_port,
        server_port: port,
        a_to_b,
        b_to_a,
        a_retrans_bytes,
        b_retrans_bytes,
    }
}

/// What a UDP exchange did.
#[derive(Debug, Clone, Copy)]
pub struct UdpExchange {
    pub a_port: u16,
    pub b_port: u16,
    pub a_to_b: (usize, usize),
    pub b_to_a: (usize, usize),
}

/// `a` sends `a_to_b.0` datagrams of `a_to_b.1` bytes to `b:port`; `b` answers
/// with `b_to_a.0` datagrams of `b_to_a.1` bytes. Both sides check arrival.
pub fn udp(
    pair: &PodPair,
    port: u16,
    a_to_b: (usize, usize),
    b_to_a: (usize, usize),
) -> UdpExchange {
    let (b_ip, a_ip) = (pair.b_ip, pair.a_ip);
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = pair.b.run(move || {
        let sock = UdpSocket::bind(SocketAddr::new(b_ip, port)).expect("bind in pod b");
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut peer = None;
        for _ in 0..a_to_b.0 {
            let (n, from) = sock
                .recv_from(&mut buf)
                .expect("server receives every datagram");
            assert_eq!(n, a_to_b.1);
            peer = Some(from);
        }
        let peer = peer.expect("a datagram arrived");
        for _ in 0..b_to_a.0 {
            sock.send_to(&vec![9u8; b_to_a.1], peer).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    let client = pair.a.run(move || {
        let sock = UdpSocket::bind(SocketAddr::new(a_ip, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for _ in 0..a_to_b.0 {
            sock.send_to(&vec![3u8; a_to_b.1], SocketAddr::new(b_ip, port))
                .unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut buf = vec![0u8; 65536];
        for _ in 0..b_to_a.0 {
            let n = sock.recv(&mut buf).expect("client receives every answer");
            assert_eq!(n, b_to_a.1);
        }
        sock.local_addr().unwrap().port()
    });
    let a_port = client.join().expect("client thread");
    server.join().expect("server thread");
    UdpExchange {
        a_port,
        b_port: port,
        a_to_b,
        b_to_a,
    }
}

/// Sends one UDP datagram from `a` to each of `count` ports of `b` (new flows).
pub fn udp_fanout(pair: &PodPair, first_port: u16, count: u16, size: usize) {
    let b_ip: IpAddr = pair.b_ip;
    let a_ip: IpAddr = pair.a_ip;
    pair.a
        .run(move || {
            let sock = UdpSocket::bind(SocketAddr::new(a_ip, 0)).unwrap();
            for port in first_port..first_port + count {
                sock.send_to(&vec![5u8; size], SocketAddr::new(b_ip, port))
                    .unwrap();
            }
        })
        .join()
        .unwrap();
}

/// IP header size of the pair's family.
pub fn ip_header(pair: &PodPair) -> u64 {
    if pair.a_ip.is_ipv4() { 20 } else { 40 }
}

/// Sends `count` datagrams of `size` bytes from one socket in `a` to `b:port`;
/// returns the source port. Nothing needs to listen on `b:port`.
pub fn udp_send(pair: &PodPair, port: u16, count: usize, size: usize) -> u16 {
    let (a_ip, b_ip) = (pair.a_ip, pair.b_ip);
    pair.a
        .run(move || {
            let sock = UdpSocket::bind(SocketAddr::new(a_ip, 0)).unwrap();
            for _ in 0..count {
                sock.send_to(&vec![6u8; size], SocketAddr::new(b_ip, port))
                    .unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
            sock.local_addr().unwrap().port()
        })
        .join()
        .unwrap()
}

/// The port as the agent's per-flow metrics label it by default
/// (`flow_ports = "server"`): a port inside this host's ip_local_port_range
/// facing a `peer` port outside it is a client's ephemeral port, labelled 0.
pub fn metric_port(port: u16, peer: u16) -> u16 {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let mut it = text.split_whitespace().map(|v| v.parse::<u16>().unwrap());
    let range = it.next().unwrap()..=it.next().unwrap();
    if range.contains(&port) && !range.contains(&peer) {
        0
    } else {
        port
    }
}

/// Like [`udp_fanout`], from a process of the cgroup `cg` (in pod `a`'s
/// namespace): an agent whose probes are attached to that cgroup
/// (`--cgroup`) sees these packets and no other traffic of the host.
pub fn udp_fanout_from(
    cg: &crate::cgroup::TestCgroup,
    pair: &PodPair,
    first_port: u16,
    count: u16,
    size: usize,
) {
    let family = if pair.a_ip.is_ipv4() {
        "AF_INET"
    } else {
        "AF_INET6"
    };
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n\
         s.bind(('{a}', 0))\n\
         for port in range({first_port}, {end}):\n    \
             s.sendto(bytes({size}), ('{b}', port))\n",
        a = pair.a_ip,
        b = pair.b_ip,
        end = u32::from(first_port) + u32::from(count),
    );
    let status = cg
        .run(&format!(
            "ip netns exec {} python3 -c \"{script}\"",
            pair.a.name
        ))
        .wait()
        .expect("waiting for the fan-out");
    assert!(status.success(), "the fan-out in {}: {status:?}", cg.id);
}

/// `a` makes `n` requests to `b:port`, each on its own connection: it reads
/// the reply and closes without reading the server's FIN, as HTTP clients
/// do. The FIN is still queued when the socket is destroyed, and the kernel
/// frees it with QUEUE_PURGE.
pub fn request_then_close(pair: &PodPair, port: u16, n: usize) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let b_ip = pair.b_ip;
    let server = pair.b.run(move || {
        let listener = TcpListener::bind(SocketAddr::new(b_ip, port)).unwrap();
        ready_tx.send(()).unwrap();
        for _ in 0..n {
            let (mut conn, _) = listener.accept().unwrap();
            let mut req = [0u8; 3];
            conn.read_exact(&mut req).unwrap();
            conn.write_all(b"ok").unwrap();
        }
    });
    ready_rx.recv().unwrap();
    pair.a
        .run(move || {
            for _ in 0..n {
                let mut conn = TcpStream::connect(SocketAddr::new(b_ip, port)).unwrap();
                conn.write_all(b"get").unwrap();
                let mut reply = [0u8; 2];
                conn.read_exact(&mut reply).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .join()
        .unwrap();
    server.join().unwrap();
}
