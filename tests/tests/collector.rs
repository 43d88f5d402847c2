//! The collector against real receivers, under faults. Every scenario sends
//! OTLP gauges of its own (`run` = the scenario, `seq` = 0..n, value = seq)
//! and counts what a real Prometheus 3.5 holds afterwards: exactly the
//! points that were accepted, no more (duplicates of at-least-once delivery
//! land on the same sample) and no fewer. Faults are injected by a proxy in
//! front of that Prometheus, or by killing the collector.

use std::time::Duration;

use osprey_e2e::collector::{Collector, Fault, FaultProxy, gauges, rss_bytes, segments};
use osprey_e2e::prometheus::Prometheus;
use osprey_e2e::{eventually, peers, require_peer};

const METRIC: &str = "osprey_test_points";
const PB: &str = "application/x-protobuf";

fn prometheus3() -> Option<Prometheus> {
    let bin = require_peer!(peers::PROMETHEUS3);
    Some(Prometheus::receiver(&bin, &[]).expect("starting Prometheus 3"))
}

fn config(url: &str, extra: &str) -> String {
    format!(
        "[[remote_write]]\nname = \"rw\"\nurl = {url:?}\nshards = 1\n{extra}\n[remote_write.retry]\nmin_backoff_ms = 50\nmax_backoff_ms = 1000\n"
    )
}

/// (points, sum of values) Prometheus holds for `run`.
fn arrived(prom: &Prometheus, run: &str) -> (f64, f64) {
    let q = |f: &str| {
        prom.query(&format!("{f}({METRIC}{{run=\"{run}\"}})"))
            .first()
            .map_or(0.0, |(_, v)| *v)
    };
    (q("count"), q("sum"))
}

fn expect_arrival(prom: &Prometheus, run: &str, seqs: std::ops::Range<u64>) {
    let want = (seqs.end - seqs.start) as f64;
    let want_sum: f64 = seqs.map(|s| s as f64).sum();
    let got = osprey_e2e::settle(60, || {
        let got = arrived(prom, run);
        (got == (want, want_sum), got)
    });
    assert_eq!(
        got,
        (want, want_sum),
        "points (count, sum) of run {run} in Prometheus"
    );
}

/// Sends `batches` requests of `per` points each; all must be accepted.
fn send(c: &Collector, run: &str, first_batch: u64, batches: u64, per: u64) {
    for b in first_batch..first_batch + batches {
        let status = c.post("/v1/metrics", PB, &gauges(METRIC, run, b * per, per));
        assert_eq!(status, 200, "batch {b}");
    }
}

#[test]
fn retryable_answers_are_retried_with_retry_after_and_nothing_is_lost() {
    let Some(prom) = prometheus3() else { return };
    let proxy = FaultProxy::start(
        &prom.write_url(),
        vec![
            Fault::Status(429, Some(1)),
            Fault::Status(429, Some(1)),
            Fault::Status(500, None),
            Fault::Status(503, None),
        ],
    );
    let c = Collector::start("retry", &config(&proxy.url, "version = \"1\""));
    send(&c, "retry", 0, 5, 40);
    expect_arrival(&prom, "retry", 0..200);
    assert_eq!(proxy.faults_left(), 0);
    assert_eq!(
        c.metric("osprey_collector_retries_total", &[("reason", "429")]),
        2.0
    );
    assert_eq!(
        c.metric("osprey_collector_retries_total", &[("reason", "5xx")]),
        2.0
    );
    assert_eq!(c.metric("osprey_collector_dropped_total", &[]), 0.0);
    // The resource has only identifying attributes: no target_info.
    assert_eq!(
        c.metric("osprey_collector_sent_total", &[("kind", "samples")]),
        200.0
    );
}

#[test]
fn a_400_is_dropped_and_counted_never_retried() {
    let Some(prom) = prometheus3() else { return };
    let proxy = FaultProxy::start(&prom.write_url(), vec![Fault::Status(400, None)]);
    let c = Collector::start("reject", &config(&proxy.url, "version = \"1\""));
    send(&c, "reject", 0, 1, 30);
    eventually(30, "the 400 to be counted", || {
        (c.metric(
            "osprey_collector_dropped_total",
            &[("reason", "http_400"), ("kind", "samples")],
        ) > 0.0)
            .then_some(())
    });
    send(&c, "reject", 1, 1, 30);
    expect_arrival(&prom, "reject", 30..60);
    assert_eq!(
        c.metric(
            "osprey_collector_dropped_total",
            &[("reason", "http_400"), ("kind", "samples")]
        ),
        30.0
    );
    assert_eq!(c.metric("osprey_collector_retries_total", &[]), 0.0);
    assert_eq!(*proxy.requests.lock().unwrap(), 2);
    assert!(
        c.log().contains("injected fault"),
        "the receiver's message is logged"
    );
}

#[test]
fn receiver_down_for_two_minutes_then_back_loses_nothing() {
    let Some(prom) = prometheus3() else { return };
    // A port with nothing listening until the receiver comes back.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let c = Collector::start("down", &config(&url, ""));
    let started = std::time::Instant::now();
    let mut b = 0;
    while started.elapsed() < Duration::from_secs(120) {
        send(&c, "down", b, 1, 50);
        b += 1;
        std::thread::sleep(Duration::from_secs(5));
    }
    assert_eq!(arrived(&prom, "down"), (0.0, 0.0));
    assert!(c.metric("osprey_collector_queue_records", &[]) >= b as f64 - 1.0);
    assert!(c.metric("osprey_collector_queue_oldest_age_seconds", &[]) > 60.0);
    assert!(
        c.metric(
            "osprey_collector_retries_total",
            &[("reason", "connection")]
        ) >= 5.0
    );
    let _proxy = FaultProxy::start_on(port, &prom.write_url(), vec![]);
    expect_arrival(&prom, "down", 0..b * 50);
    eventually(30, "the queue to empty", || {
        (c.metric("osprey_collector_queue_records", &[]) == 0.0).then_some(())
    });
    assert_eq!(c.metric("osprey_collector_dropped_total", &[]), 0.0);
}

#[test]
fn kill_9_mid_stream_and_restart_loses_nothing() {
    let Some(prom) = prometheus3() else { return };
    // The receiver is down while the collector dies, so the queue holds data.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let c = Collector::start("kill9", &config(&url, ""));
    send(&c, "kill9", 0, 10, 25);
    let c = c.kill_and_restart();
    let _proxy = FaultProxy::start_on(port, &prom.write_url(), vec![]);
    send(&c, "kill9", 10, 10, 25);
    expect_arrival(&prom, "kill9", 0..500);
}

#[test]
fn a_torn_last_record_is_truncated_and_the_rest_delivered() {
    let Some(prom) = prometheus3() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let c = Collector::start("torn", &config(&url, ""));
    send(&c, "torn", 0, 3, 20);
    let dir = c.kill_hard();
    // Half a record at the end of the last segment: a write cut by a crash.
    let last = segments(&dir.join("wal/rw")).pop().expect("a segment");
    let whole = std::fs::read(&last).unwrap();
    let first = 21 + u32::from_le_bytes(whole[..4].try_into().unwrap()) as usize;
    let torn = &whole[..first / 2 + 10];
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    std::io::Write::write_all(&mut f, torn).unwrap();
    drop(f);
    let _proxy = FaultProxy::start_on(port, &prom.write_url(), vec![]);
    let c = Collector::restart_in(dir);
    expect_arrival(&prom, "torn", 0..60);
    assert_eq!(
        c.metric("osprey_collector_wal_truncated_bytes_total", &[]),
        torn.len() as f64
    );
    assert!(
        c.log().contains("torn record"),
        "a log line names the truncation"
    );
}

#[test]
fn a_full_queue_refuses_upstream_and_loses_nothing_it_accepted() {
    let Some(prom) = prometheus3() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let queue =
        "[remote_write.queue]\nmax_bytes = 200000\nsegment_bytes = 50000\nwhen_full = \"refuse\"\n";
    let c = Collector::start("refuse", &format!("{}{queue}", config(&url, "")));
    let (mut accepted, mut refused, mut b) = (0u64, 0u64, 0u64);
    while refused < 3 {
        let (status, head, _) = osprey_e2e::collector::post(
            &format!("{}/v1/metrics", c.http),
            PB,
            &gauges(METRIC, "refuse", b * 100, 100),
            &[],
        );
        match status {
            200 => accepted += 1,
            503 => {
                assert!(head.contains("retry-after"), "{head}");
                refused += 1;
            }
            s => panic!("status {s}"),
        }
        b += 1;
        assert!(b < 1000, "the queue never filled");
    }
    // Refused batches are the last ones; the accepted are 0..accepted.
    let _proxy = FaultProxy::start_on(port, &prom.write_url(), vec![]);
    expect_arrival(&prom, "refuse", 0..accepted * 100);
    assert_eq!(
        c.metric(
            "osprey_collector_refused_requests_total",
            &[("reason", "queue_full")]
        ),
        refused as f64
    );
    assert_eq!(c.metric("osprey_collector_dropped_total", &[]), 0.0);
}

#[test]
fn drop_oldest_counts_every_dropped_point_and_memory_stays_flat() {
    let Some(prom) = prometheus3() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/api/v1/write");
    let queue = "[remote_write.queue]\nmax_bytes = 2000000\nsegment_bytes = 200000\nwhen_full = \"drop_oldest\"\n";
    let c = Collector::start("dropold", &format!("{}{queue}", config(&url, "")));
    // The first 100 requests fill the 2 MB queue (and warm the allocator);
    // RSS then must not follow the next 1,900 (about 50x the budget).
    send(&c, "dropold", 0, 100, 500);
    // Steady state: the exporter has read, translated and is retrying its
    // one batch (up to 4 MiB of requests) against the absent receiver.
    eventually(30, "the exporter to be retrying", || {
        (c.metric("osprey_collector_retries_total", &[]) >= 3.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let rss_full = rss_bytes(c.pid());
    let mut rss_max = rss_full;
    for chunk in 0..19 {
        send(&c, "dropold", 100 + chunk * 100, 100, 500);
        rss_max = rss_max.max(rss_bytes(c.pid()));
    }
    // The queue's gauges and drop counts are reported every 500 ms.
    std::thread::sleep(Duration::from_millis(1500));
    let dropped = c.metric(
        "osprey_collector_dropped_total",
        &[("reason", "queue_full"), ("kind", "items")],
    );
    assert!(dropped > 0.0);
    assert!(c.metric("osprey_collector_queue_disk_bytes", &[]) <= 2_000_000.0);
    assert!(
        rss_max < rss_full + 8 * 1024 * 1024,
        "RSS grew from {rss_full} (queue full) to {rss_max} bytes while 50x the queue budget went through"
    );
    let _proxy = FaultProxy::start_on(port, &prom.write_url(), vec![]);
    // Whole requests are dropped oldest first (the one being sent when the
    // receiver went away is kept): exactly the undropped points arrive, and
    // the newest request among them.
    let total = 2000.0 * 500.0;
    let got = osprey_e2e::settle(60, || {
        let got = arrived(&prom, "dropold").0;
        (got == total - dropped, got)
    });
    assert_eq!(
        got,
        total - dropped,
        "points in Prometheus = sent - dropped ({dropped})"
    );
    let newest = prom.query(&format!(
        "count({METRIC}{{run=\"dropold\"}} >= {})",
        1999 * 500
    ));
    assert_eq!(newest.first().map(|(_, v)| *v), Some(500.0));
}
