//! The collector binary builds, starts and answers its health check.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

#[test]
fn collector_starts_and_is_healthy() {
    let bin = std::env::var_os("OSPREY_COLLECTOR_BIN");
    osprey_e2e::require!(
        bin.is_some(),
        "OSPREY_COLLECTOR_BIN unset: run `cargo xtask test`"
    );
    let bin = bin.unwrap();
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("osprey-collector: serving ")
        .expect(&line)
        .to_owned();
    let body = ureq::get(&url).call().unwrap().into_string().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(body, "ok\n");
}
