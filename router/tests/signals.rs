//! The `router` binary's signals: SIGHUP reloads the config file, SIGTERM drains and exits 0.

#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// GETs `path` over a plain TCP connection (no HTTP client dependency for one test).
fn get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.yaml");
    let config = |policy: &str| {
        format!(
            "listen: 127.0.0.1:0\npolicy:\n  name: {policy}\nreload:\n  watch_ms: 0\nlogging:\n  level: warn\n"
        )
    };
    std::fs::write(&path, config("round_robin")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_router"))
        .args(["--config", path.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
    let metric = |outcome: &str| {
        get(&addr, "/metrics").and_then(|text| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "router_config_reloads_total{{outcome=\"{outcome}\"}}"
                    ))
                })
                .map(str::to_owned)
        })
    };
    assert!(metric("applied").unwrap().ends_with(" 0"));

    std::fs::write(&path, config("power_of_two")).unwrap();
    kill(child.id(), "-HUP");
    wait_for("SIGHUP reload applied", || {
        metric("applied").is_some_and(|l| l.ends_with(" 1"))
    });

    kill(child.id(), "-TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "router did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(get(&addr, "/health").is_none(), "no longer listening");
}
