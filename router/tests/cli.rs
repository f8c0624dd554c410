//! The `router` binary: `check-config`, environment and flag precedence, error exit codes.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use serde::Deserialize as _;
use std::process::Command;

fn router() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_router"));
    command
        .env_remove("ROUTER_CONFIG")
        .env_remove("ROUTER_POLICY__NAME")
        .env_remove("RUST_LOG");
    command
}

/// Runs `router check-config --config <path>`.
fn check_config(path: &std::path::Path) -> std::process::Output {
    router()
        .arg("check-config")
        .arg("--config")
        .arg(path)
        .output()
        .unwrap()
}

fn write(dir: &tempfile::TempDir, yaml: &str) -> std::path::PathBuf {
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn check_config_prints_the_effective_config_with_env_and_flags_applied() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "listen: 127.0.0.1:0\nreplicas:\n  - url: http://127.0.0.1:8001\n",
    );
    let out = check_config(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("name: cost"),
        "defaults are shown (cost is the default policy): {text}"
    );
    assert!(text.contains("interval_ms: 1000"));

    let out = router()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("ROUTER_POLICY__NAME", "random")
        .env("ROUTER_TIMEOUTS__CONNECT_MS", "250")
        .env("ROUTER_PORT", "not a config key: ignored")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("name: random") && text.contains("connect_ms: 250"),
        "{text}"
    );

    let out = router()
        .args(["check-config", "--policy", "round_robin", "--config"])
        .arg(&path)
        .env("ROUTER_POLICY__NAME", "random")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("name: round_robin"),
        "the flag wins over the environment: {text}"
    );
}

#[test]
fn invalid_configs_fail_naming_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "listen: 127.0.0.1:0\nreplicas:\n  - url: http://127.0.0.1:8001\n    wieght: 2\n",
    );
    let out = check_config(&path);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains("replicas.0.wieght") && err.contains("unknown field"),
        "{err}"
    );

    let path = write(&dir, "timeouts:\n  idle_ms: 0\n");
    let out = check_config(&path);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success() && err.contains("timeouts.idle_ms") && err.contains("greater than 0"),
        "{err}"
    );

    // A bad value from the environment names the variable, not the file.
    let path = write(&dir, "listen: 127.0.0.1:0\n");
    let out = router()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("ROUTER_REPLICAS", "ftp://a:1")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success() && err.contains("env ROUTER_REPLICAS") && err.contains("scheme"),
        "{err}"
    );

    let out = router()
        .args(["check-config", "--config", "/nonexistent/router.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("cannot read config file /nonexistent/router.yaml")
    );
}

#[test]
fn the_repository_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.yaml");
    let out = router()
        .args(["check-config", "--config", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("name: gpu-0")
    );
}

/// The line of `check-config` output that sets `key` (first match), trimmed.
fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .map(|l| l.trim_start().trim_start_matches("- "))
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no `{key}` in\n{text}"))
}

#[test]
fn check_config_says_where_each_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "listen: 127.0.0.1:0\npolicy: random\nlogging: debug\n",
    );
    let out = router()
        .args(["check-config", "--log-level", "warn", "--config"])
        .arg(&path)
        .env(
            "ROUTER_REPLICAS",
            "http://127.0.0.1:8001,http://127.0.0.1:8002",
        )
        .env("ROUTER_TIMEOUTS__CONNECT_MS", "250")
        .env("ROUTER_HEALTH", "false")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = format!("# file {}", path.display());
    assert!(line(&text, "listen:").ends_with(&file), "{text}");
    assert!(
        line(&text, "name: random").ends_with(&file),
        "shorthand `policy: random` from the file: {text}"
    );
    assert!(
        line(&text, "url: http://127.0.0.1:8002").ends_with("# env ROUTER_REPLICAS"),
        "{text}"
    );
    assert!(
        line(&text, "connect_ms: 250").ends_with("# env ROUTER_TIMEOUTS__CONNECT_MS"),
        "{text}"
    );
    assert!(
        line(&text, "enabled: false").ends_with("# env ROUTER_HEALTH"),
        "{text}"
    );
    assert!(
        line(&text, "level: warn").ends_with("# flag --log-level"),
        "the flag wins over the file's `logging: debug`: {text}"
    );
    assert!(
        line(&text, "first_byte_ms: 120000").ends_with("# default"),
        "{text}"
    );
}

#[test]
fn check_config_redacts_secrets_and_keeps_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "listen: 127.0.0.1:0\nreplicas:\n  - url: http://127.0.0.1:8001\nauth:\n  api_keys:\n    - key: client-secret-1\n      name: team-a\n  upstream:\n    api_key: upstream-secret-2\n",
    );
    let out = router()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("ROUTER_ADMIN__TOKEN", "admin-secret-3")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for secret in ["client-secret-1", "upstream-secret-2", "admin-secret-3"] {
        assert!(!text.contains(secret), "`{secret}` printed: {text}");
    }
    let file = format!("# file {}", path.display());
    assert!(line(&text, "key: '***'").ends_with(&file), "{text}");
    assert!(line(&text, "api_key: '***'").ends_with(&file), "{text}");
    assert!(
        line(&text, "token: '***'").ends_with("# env ROUTER_ADMIN__TOKEN"),
        "{text}"
    );
    assert!(
        line(&text, "name: team-a").ends_with(&file),
        "names stay: {text}"
    );
}

#[test]
fn the_kubernetes_configmap_config_is_valid() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/k8s/router.yaml");
    let text = std::fs::read_to_string(manifest).unwrap();
    let config = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .find(|doc| doc["kind"] == "ConfigMap" && doc["metadata"]["name"] == "prefix-router-config")
        .expect("a prefix-router-config ConfigMap")["data"]["config.yaml"]
        .as_str()
        .expect("data.config.yaml")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let out = check_config(&write(&dir, &config));
    assert!(
        out.status.success(),
        "{manifest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        line(&text, "service: vllm").ends_with("config.yaml"),
        "replicas come from EndpointSlice discovery: {text}"
    );
    assert!(
        text.contains("api_server: http://127.0.0.1:8001"),
        "through the kubectl-proxy sidecar: {text}"
    );
    assert!(text.contains("listen: 0.0.0.0:8000"), "{text}");
}
