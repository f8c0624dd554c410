//! In-process replicas and router for sweeps and the demo: start, configure, reset, stop.

use crate::error::{Error, Result};
use serde_yaml::{Mapping, Value};
use std::time::Duration;
use vllm_sim::{SimConfig, SimServer};

fn router_err(reason: impl std::fmt::Display) -> Error {
    Error::Component {
        component: "router",
        reason: reason.to_string(),
    }
}

/// Starts `n` simulated replicas on ephemeral ports (whatever port `config` names): the one
/// replica fixture of the sweeps, the demo and the end-to-end tests.
pub async fn start_sims(n: usize, config: &SimConfig) -> Result<Vec<SimServer>> {
    if n == 0 {
        return Err(Error::invalid("--replicas", "must be at least 1"));
    }
    let cfg = SimConfig {
        port: 0,
        ..config.clone()
    };
    vllm_sim::start_replicas(cfg, n)
        .await
        .map_err(|e| Error::Component {
            component: "vllm-sim",
            reason: e.to_string(),
        })
}

/// Router YAML: `base` (if any) with listen on an ephemeral port, the replicas and the policy.
pub fn router_yaml(
    base: Option<&str>,
    replica_urls: &[String],
    policy: &str,
    seed: u64,
) -> Result<String> {
    let mut doc = match base {
        Some(text) => serde_yaml::from_str::<Value>(text)
            .map_err(|e| router_err(format!("base config: {e}")))?,
        None => Value::Mapping(Mapping::new()),
    };
    let Value::Mapping(root) = &mut doc else {
        return Err(router_err("base config must be a YAML mapping"));
    };
    root.insert("listen".into(), "127.0.0.1:0".into());
    let replicas = replica_urls
        .iter()
        .map(|u| {
            let mut m = Mapping::new();
            m.insert("url".into(), u.as_str().into());
            Value::Mapping(m)
        })
        .collect();
    root.insert("replicas".into(), Value::Sequence(replicas));
    let policy_key = Value::from("policy");
    let mut p = match root.remove(&policy_key) {
        Some(Value::Mapping(m)) => m,
        _ => Mapping::new(),
    };
    p.insert("name".into(), policy.into());
    if !p.contains_key("seed") {
        p.insert("seed".into(), seed.into());
    }
    root.insert(policy_key, Value::Mapping(p));
    serde_yaml::to_string(&doc).map_err(router_err)
}

/// Parses and validates a router config (an unknown policy name is an error here).
pub fn router_config(yaml: &str) -> Result<router::Config> {
    router::Config::from_yaml_str(yaml).map_err(router_err)
}

/// True when this build of the router knows `policy`.
pub fn policy_supported(policy: &str) -> bool {
    let yaml = router_yaml(None, &["http://127.0.0.1:9".to_string()], policy, 0);
    yaml.and_then(|y| router_config(&y)).is_ok()
}

/// Starts the router and waits (up to 5 s) until `/readiness` answers 200.
pub async fn start_router(
    config: router::Config,
    client: &reqwest::Client,
) -> Result<router::RouterServer> {
    let server = router::start(config).await.map_err(router_err)?;
    let url = format!("{}/readiness", server.url());
    for _ in 0..50 {
        if let Ok(r) = client
            .get(&url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().await;
    Err(router_err(format!("{url} did not answer 200 within 5 s")))
}

/// POSTs `/reset_prefix_cache` to every replica; returns the replicas that refused.
pub async fn reset_prefix_caches(client: &reqwest::Client, urls: &[String]) -> Vec<String> {
    let mut refused = Vec::new();
    for u in urls {
        let ok = client
            .post(format!("{u}/reset_prefix_cache"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !ok {
            refused.push(u.clone());
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_sets_listen_replicas_and_policy_over_the_base() {
        let base = "policy:\n  name: random\n  seed: 7\nhealth:\n  enabled: false\n";
        let y = router_yaml(Some(base), &["http://127.0.0.1:1".into()], "round_robin", 3).unwrap();
        let v: Value = serde_yaml::from_str(&y).unwrap();
        assert_eq!(v["listen"], Value::from("127.0.0.1:0"));
        assert_eq!(v["replicas"][0]["url"], Value::from("http://127.0.0.1:1"));
        assert_eq!(v["policy"]["name"], Value::from("round_robin"));
        assert_eq!(v["policy"]["seed"], Value::from(7));
        assert_eq!(v["health"]["enabled"], Value::from(false));
        assert!(router_config(&y).is_ok(), "{y}");
        assert!(router_yaml(Some("- a list"), &[], "x", 0).is_err());
    }

    #[test]
    fn unknown_policy_is_detected() {
        assert!(policy_supported("round_robin"));
        assert!(!policy_supported("no_such_policy"));
    }
}
