//! A real Prometheus server (Debian's `prometheus` binary) on loopback for tests: scrape
//! targets given by the test, PromQL through its HTTP API. Killed when dropped.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

/// Environment variable that makes a missing `prometheus` binary a test failure (CI sets it).
pub const REQUIRE_ENV: &str = "REQUIRE_PROMETHEUS";

/// The `prometheus` (or `promtool`) executable: `$PROMETHEUS_BIN_DIR/<name>` or on `PATH`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PROMETHEUS_BIN_DIR")
        .into_iter()
        .chain(std::env::var_os("PATH"))
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    dirs.map(|d| d.join(name)).find(|p| p.is_file())
}

/// `Some(path)` of the binary; `None` (after printing why) when it is missing and
/// `REQUIRE_PROMETHEUS` is unset; panics when it is missing and required.
pub fn binary_or_skip(name: &str) -> Option<PathBuf> {
    if let Some(path) = find_binary(name) {
        return Some(path);
    }
    let notice = format!(
        "`{name}` not found on PATH: install it (Debian: apt-get install -y prometheus) to run this test"
    );
    assert!(
        std::env::var_os(REQUIRE_ENV).is_none(),
        "{notice} ({REQUIRE_ENV} is set)"
    );
    eprintln!("NOTICE: skipping: {notice}; set {REQUIRE_ENV}=1 to make this a failure");
    None
}

/// A running Prometheus and its scratch directory (config, TSDB, log).
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
    client: reqwest::Client,
}

/// One scrape job: a name and `host:port` targets.
pub struct Job {
    /// `job_name`.
    pub name: String,
    /// `host:port` of each target.
    pub targets: Vec<String>,
}

/// What one instant query gave.
#[derive(Debug)]
pub enum QueryResult {
    /// Prometheus rejected the expression (status, error type and message).
    Rejected(String),
    /// The expression ran; the samples' label sets and values.
    Samples(Vec<(Value, f64)>),
}

impl Prometheus {
    /// Starts `binary` scraping `jobs` every `interval_ms`, on a free loopback port (picked by
    /// binding and releasing one: Prometheus cannot listen on port 0), and waits until it is ready.
    pub async fn start(binary: &Path, jobs: &[Job], interval_ms: u64) -> Prometheus {
        let dir = scratch_dir();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, scrape_config(jobs, interval_ms)).expect("write prometheus.yml");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(dir.join("prometheus.log")).expect("create log file");
            let child = Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn prometheus");
            let mut prometheus = Prometheus {
                child,
                dir: dir.clone(),
                url: format!("http://127.0.0.1:{port}"),
                client: client.clone(),
            };
            if prometheus.wait_ready(Duration::from_secs(60)).await {
                return prometheus;
            }
            last_log = prometheus.log();
            // Dropping it kills it; the port may have been taken meanwhile: try another.
        }
        panic!("prometheus did not become ready; its log:\n{last_log}");
    }

    /// Polls `/-/ready` until 200; false if the process exited or `timeout` passed.
    async fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let ready = self
                .client
                .get(format!("{}/-/ready", self.url))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Base URL, e.g. `http://127.0.0.1:9090`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What Prometheus logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/targets`: each active target's scrape URL, health and last error.
    pub async fn targets(&self) -> Vec<(String, String, String)> {
        let v: Value = self
            .client
            .get(format!("{}/api/v1/targets", self.url))
            .send()
            .await
            .expect("GET /api/v1/targets")
            .json()
            .await
            .expect("targets JSON");
        v["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
                (s("scrapeUrl"), s("health"), s("lastError"))
            })
            .collect()
    }

    /// Runs `expr` as an instant query (`POST /api/v1/query`).
    pub async fn query(&self, expr: &str) -> QueryResult {
        let response = self
            .client
            .post(format!("{}/api/v1/query", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("query={}", form_encode(expr)))
            .send()
            .await
            .expect("POST /api/v1/query");
        let status = response.status();
        let v: Value = response.json().await.expect("query answer is JSON");
        if v["status"] != "success" {
            return QueryResult::Rejected(format!(
                "HTTP {status}, {}: {}",
                v["errorType"], v["error"]
            ));
        }
        let result = &v["data"]["result"];
        let samples = match v["data"]["resultType"].as_str() {
            Some("vector") => result
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| (s["metric"].clone(), sample_value(&s["value"])))
                .collect(),
            Some("scalar") => vec![(Value::Null, sample_value(result))],
            other => {
                return QueryResult::Rejected(format!("unexpected result type {other:?}"));
            }
        };
        QueryResult::Samples(samples)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `[timestamp, "value"]` to a number (NaN when malformed, as Prometheus writes "NaN").
fn sample_value(pair: &Value) -> f64 {
    pair[1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A Prometheus config scraping `jobs` every `interval_ms`.
fn scrape_config(jobs: &[Job], interval_ms: u64) -> String {
    let mut yaml = format!(
        "global:\n  scrape_interval: {interval_ms}ms\n  scrape_timeout: {interval_ms}ms\n  \
         evaluation_interval: {interval_ms}ms\nscrape_configs:\n"
    );
    for job in jobs {
        let targets: Vec<String> = job.targets.iter().map(|t| format!("\"{t}\"")).collect();
        yaml.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: [{}]\n",
            job.name,
            targets.join(", ")
        ));
    }
    yaml
}

/// A fresh directory under the system temp dir, unique to this process and call.
fn scratch_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "prefix-router-prometheus-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// `application/x-www-form-urlencoded` value encoding.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
