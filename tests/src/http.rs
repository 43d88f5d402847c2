//! A real HTTP/1.1 exchange between two pods: a keep-alive server in pod B
//! with known per-path delays and statuses that measures its own handling
//! time, and a client in pod A that follows a plan of requests (traced or
//! not, pipelined, or with the header block split over two segments).

use std::{
    cell::Cell,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    rc::Rc,
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::netns::Ends;

/// What the server does for a path: (status, delay).
pub fn behaviour(path: &str) -> (u16, Duration) {
    match path {
        "/fast" => (200, Duration::from_millis(2)),
        "/slow" => (200, Duration::from_millis(30)),
        "/missing" => (404, Duration::from_millis(5)),
        "/error" => (500, Duration::from_millis(15)),
        _ => (400, Duration::ZERO),
    }
}

/// One request the server answered, as it saw it.
#[derive(Debug, Clone)]
pub struct Served {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// From the read that brought the request's first line (for pipelined
    /// requests, the read that brought them all) to the response's write.
    pub handled: Duration,
}

/// How the client sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    /// One write.
    Whole,
    /// The request line, a pause, then the headers: two segments.
    Split,
}

#[derive(Debug, Clone)]
pub struct Req {
    pub method: &'static str,
    pub path: &'static str,
    pub traceparent: Option<String>,
    pub send: Send,
}

impl Req {
    pub fn get(path: &'static str) -> Self {
        Self {
            method: "GET",
            path,
            traceparent: None,
            send: Send::Whole,
        }
    }

    pub fn post(path: &'static str) -> Self {
        Self {
            method: "POST",
            ..Self::get(path)
        }
    }

    pub fn traced(mut self, traceparent: &str) -> Self {
        self.traceparent = Some(traceparent.to_owned());
        self
    }

    pub fn split(mut self) -> Self {
        self.send = Send::Split;
        self
    }

    pub fn head(&self) -> String {
        let mut h = format!("{} {} HTTP/1.1\r\nHost: pod-b\r\n", self.method, self.path);
        if let Some(tp) = &self.traceparent {
            h.push_str(&format!("traceparent: {tp}\r\ntracestate: osprey=test\r\n"));
        }
        if self.method == "POST" {
            h.push_str("Content-Length: 4\r\n\r\nbody");
        } else {
            h.push_str("\r\n");
        }
        h
    }
}

/// A step of a connection's plan: one request, or several pipelined in one write.
#[derive(Debug, Clone)]
pub enum Step {
    One(Req),
    Pipelined(Vec<Req>),
}

/// Serves `connections` keep-alive connections, one after another, on
/// the server pod's address and `port`; returns what it answered.
pub fn serve(ends: &impl Ends, port: u16, connections: usize) -> JoinHandle<Vec<Served>> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (pod, b_ip) = ends.server();
    let server = pod.run(move || {
        let listener = TcpListener::bind(SocketAddr::new(b_ip, port)).expect("bind in pod b");
        ready_tx.send(()).unwrap();
        let mut served = Vec::new();
        for _ in 0..connections {
            let (conn, _) = listener.accept().expect("accept");
            conn.set_nodelay(true).unwrap();
            serve_one(conn, &mut served);
        }
        served
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    server
}

/// A reader that notes when its last read returned bytes.
struct Timed {
    inner: TcpStream,
    last: Rc<Cell<Instant>>,
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.last.set(Instant::now());
        }
        Ok(n)
    }
}

fn serve_one(conn: TcpStream, served: &mut Vec<Served>) {
    let mut writer = conn.try_clone().unwrap();
    let last = Rc::new(Cell::new(Instant::now()));
    let mut reader = BufReader::new(Timed {
        inner: conn,
        last: last.clone(),
    });
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let start = last.get();
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        );
        read_rest(&mut reader);
        let (status, delay) = behaviour(&path);
        std::thread::sleep(delay);
        let response = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok");
        let handled = start.elapsed();
        writer.write_all(response.as_bytes()).unwrap();
        served.push(Served {
            method,
            path,
            status,
            handled,
        });
    }
}

/// One request as the client saw it.
#[derive(Debug, Clone)]
pub struct Asked {
    pub method: &'static str,
    pub path: &'static str,
    /// From just before the write that carried the request (its first
    /// write, when split) to the end of reading its response: every
    /// timestamp the kernel or the server can take of this request lies
    /// inside it, whatever the scheduler does.
    pub waited: Duration,
}

/// Runs each connection's plan from the client pod, one connection after
/// another; returns every request as the client saw it, in the order sent.
pub fn client(ends: &impl Ends, port: u16, plans: Vec<Vec<Step>>) -> Vec<Asked> {
    let ((pod, _), (_, b_ip)) = (ends.client(), ends.server());
    pod.run(move || {
        let mut asked = Vec::new();
        for plan in plans {
            let conn =
                TcpStream::connect_timeout(&SocketAddr::new(b_ip, port), Duration::from_secs(5))
                    .expect("connect from pod a");
            conn.set_nodelay(true).unwrap();
            let mut writer = conn.try_clone().unwrap();
            let mut reader = BufReader::new(conn);
            for step in plan {
                let reqs = match step {
                    Step::One(r) => vec![r],
                    Step::Pipelined(rs) => rs,
                };
                let start = Instant::now();
                match reqs.as_slice() {
                    [r] if r.send == Send::Split => {
                        let head = r.head();
                        let cut = head.find("\r\n").unwrap() + 2;
                        writer.write_all(&head.as_bytes()[..cut]).unwrap();
                        std::thread::sleep(Duration::from_millis(20));
                        writer.write_all(&head.as_bytes()[cut..]).unwrap();
                    }
                    _ => {
                        let all: String = reqs.iter().map(Req::head).collect();
                        writer.write_all(all.as_bytes()).unwrap();
                    }
                }
                for r in &reqs {
                    read_response(&mut reader);
                    asked.push(Asked {
                        method: r.method,
                        path: r.path,
                        waited: start.elapsed(),
                    });
                }
            }
        }
        asked
    })
    .join()
    .expect("client thread")
}

/// Reads a response: its status line, headers and body.
pub fn read_response(reader: &mut BufReader<TcpStream>) {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    read_rest(reader);
}

/// Reads the headers after a request or status line, then the body their
/// `Content-Length` announces.
fn read_rest<R: Read>(reader: &mut BufReader<R>) {
    let mut length = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        if h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
}

/// A W3C traceparent with a trace id and parent id made from `n`.
pub fn traceparent(n: u8) -> (String, String, String) {
    let trace = format!("{:02x}", n).repeat(16);
    let span = format!("{:02x}", n.wrapping_add(0x40)).repeat(8);
    (format!("00-{trace}-{span}-01"), trace, span)
}
