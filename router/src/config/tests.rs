//! Config parsing, defaults and error messages.

use super::*;
use crate::Error;

fn config_error(yaml: &str) -> (String, String, String) {
    match Config::from_yaml_str(yaml) {
        Err(Error::Config {
            origin,
            key,
            reason,
        }) => (origin, key, reason),
        other => panic!("expected a config error for {yaml:?}, got {other:?}"),
    }
}

#[test]
fn minimal_yaml_gets_defaults() {
    let yaml = "listen: 127.0.0.1:0\nreplicas:\n  - url: http://127.0.0.1:8001\npolicy:\n  name: power_of_two\n";
    let config = Config::from_yaml_str(yaml).unwrap();
    assert_eq!(config.listen.port(), 0);
    assert_eq!(config.replicas[0].resolved_name(), "127.0.0.1:8001");
    assert_eq!(config.replicas[0].weight, 1);
    assert_eq!(config.policy.name, PolicyName::PowerOfTwo);
    assert_eq!(config.health, HealthConfig::default());
    assert_eq!(config.retry.max_retries, 2);
    let round_trip = Config::from_yaml_str(&config.to_yaml()).unwrap();
    assert_eq!(
        round_trip, config,
        "check-config output parses back to the same config"
    );
}

#[test]
fn every_policy_name_parses() {
    for name in ["round_robin", "random", "power_of_two"] {
        let config =
            Config::from_yaml_str(&format!("policy:\n  name: {name}\n  seed: 3\n")).unwrap();
        assert_eq!(config.policy.name.as_str(), name);
        assert_eq!(config.policy.seed, Some(3));
    }
}

#[test]
fn unknown_keys_are_named() {
    let (origin, key, reason) = config_error("listen: 127.0.0.1:0\nlisen: 1\n");
    assert_eq!((origin.as_str(), key.as_str()), ("YAML string", "lisen"));
    assert!(reason.contains("unknown field"), "{reason}");

    let (_, key, reason) = config_error("replicas:\n  - url: http://a:1\n    wieght: 2\n");
    assert_eq!(key, "replicas.0.wieght");
    assert!(
        reason.contains("weight"),
        "the reason lists the valid keys: {reason}"
    );

    let (_, key, _) = config_error("health:\n  interval: 5\n");
    assert_eq!(key, "health.interval");
}

#[test]
fn bad_values_are_named_with_a_reason() {
    let cases = [
        (
            "policy:\n  name: fastest\n",
            "policy.name",
            "unknown variant",
        ),
        ("listen: not-an-address\n", "listen", "invalid"),
        ("health:\n  interval_ms: -3\n", "health.interval_ms", "u64"),
        (
            "health:\n  interval_ms: 0\n",
            "health.interval_ms",
            "greater than 0",
        ),
        (
            "timeouts:\n  connect_ms: 0\n",
            "timeouts.connect_ms",
            "greater than 0",
        ),
        ("health:\n  path: health\n", "health.path", "start with"),
        (
            "replicas:\n  - name: a\n",
            "replicas.0.url",
            "missing field",
        ),
        (
            "replicas:\n  - url: ftp://a:1\n",
            "replicas[0].url",
            "scheme",
        ),
        (
            "replicas:\n  - url: 127.0.0.1:8001\n",
            "replicas[0].url",
            "",
        ),
        (
            "replicas:\n  - url: http://a:1\n    weight: 0\n",
            "replicas[0].weight",
            "at least 1",
        ),
        (
            "replicas:\n  - url: http://a:1\n  - url: http://a:1/\n",
            "replicas[1].name",
            "duplicate",
        ),
    ];
    for (yaml, want_key, want_reason) in cases {
        let (_, key, reason) = config_error(yaml);
        assert_eq!(key, want_key, "{yaml}");
        assert!(reason.contains(want_reason), "{yaml}: {reason}");
    }
}

#[test]
fn load_reads_a_file_and_cli_overrides_win() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.yaml");
    std::fs::write(&path, "listen: 127.0.0.1:9000\npolicy:\n  name: random\n").unwrap();
    let config = Config::load(&path, &ConfigOverrides::default()).unwrap();
    assert_eq!(
        (config.listen.port(), config.policy.name),
        (9000, PolicyName::Random)
    );

    let overrides = ConfigOverrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        policy: Some(PolicyName::RoundRobin),
        log_level: Some("debug".into()),
    };
    let config = Config::load(&path, &overrides).unwrap();
    assert_eq!(config.listen.port(), 0);
    assert_eq!(config.policy.name, PolicyName::RoundRobin);
    assert_eq!(config.logging.level, "debug");

    std::fs::write(&path, "listen: 127.0.0.1:9000\nbogus: true\n").unwrap();
    match Config::load(&path, &ConfigOverrides::default()) {
        Err(Error::Config { origin, key, .. }) => {
            assert_eq!(
                origin,
                path.display().to_string(),
                "the error names the file"
            );
            assert_eq!(key, "bogus");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    assert!(matches!(
        Config::load(
            &dir.path().join("missing.yaml"),
            &ConfigOverrides::default()
        ),
        Err(Error::ConfigFile { .. })
    ));
}

#[test]
fn shorthand_sections_expand_to_their_full_blocks() {
    let short = Config::from_yaml_str(
        "policy: prefix_aware\nlogging: debug\nhealth: false\nscrape: false\nretry: 0\n\
         replicas:\n  - http://127.0.0.1:8001\n  - url: http://127.0.0.1:8002\n    name: b\n",
    )
    .unwrap();
    let full = Config::from_yaml_str(
        "policy:\n  name: prefix_aware\nlogging:\n  level: debug\nhealth:\n  enabled: false\n\
         scrape:\n  enabled: false\nretry:\n  max_retries: 0\n\
         replicas:\n  - url: http://127.0.0.1:8001\n  - url: http://127.0.0.1:8002\n    name: b\n",
    )
    .unwrap();
    assert_eq!(short, full);
    assert_eq!(short.policy.name, PolicyName::PrefixAware);
    assert_eq!(short.policy.cost, crate::policy::CostConfig::default());
    assert_eq!(short.replicas[0], ReplicaSpec::new("http://127.0.0.1:8001"));
    // A comma-separated string is a replica list (handy as ROUTER_REPLICAS).
    let listed = Config::from_yaml_str("replicas: http://a:1, http://b:2,\n").unwrap();
    assert_eq!(
        listed.replicas,
        [
            ReplicaSpec::new("http://a:1"),
            ReplicaSpec::new("http://b:2")
        ]
    );
}

#[test]
fn shorthand_errors_still_name_key_and_reason() {
    let (_, key, reason) = config_error("policy: fastest\n");
    assert_eq!(key, "policy.name");
    assert!(reason.contains("unknown variant"), "{reason}");
    let (_, key, reason) = config_error("replicas:\n  - ftp://a:1\n");
    assert_eq!(key, "replicas[0].url");
    assert!(reason.contains("scheme"), "{reason}");
    let (_, key, _) = config_error("health: sometimes\n");
    assert_eq!(key, "health", "a string is not a health shorthand");
    let (_, key, _) = config_error("retry: -1\n");
    assert_eq!(key, "retry.max_retries");
}

#[test]
fn sources_name_file_environment_flag_or_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:9000\npolicy: random\nreplicas:\n  - http://127.0.0.1:8001\n",
    )
    .unwrap();
    let overrides = ConfigOverrides {
        log_level: Some("debug".into()),
        ..ConfigOverrides::default()
    };
    let (config, sources) = Config::load_with_sources(&path, &overrides).unwrap();
    assert_eq!(config.policy.name, PolicyName::Random);
    assert_eq!(sources.get("listen"), Source::File(path.clone()));
    assert_eq!(sources.get("policy.name"), Source::File(path.clone()));
    assert_eq!(sources.get("replicas.0.url"), Source::File(path.clone()));
    assert_eq!(sources.get("replicas.0.weight"), Source::Default);
    assert_eq!(sources.get("health.interval_ms"), Source::Default);
    assert_eq!(
        sources.get("logging.level"),
        Source::Flag("--log-level".into())
    );

    let yaml = config.to_annotated_yaml(&sources);
    let line = |key: &str| {
        yaml.lines()
            .find(|l| l.trim_start().trim_start_matches("- ").starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in\n{yaml}"))
            .to_owned()
    };
    let file = format!("# file {}", path.display());
    assert!(line("listen:").ends_with(&file), "{yaml}");
    assert!(line("url:").ends_with(&file), "{yaml}");
    assert!(line("weight:").ends_with("# default"), "{yaml}");
    assert!(line("interval_ms:").ends_with("# default"), "{yaml}");
    assert!(line("level:").ends_with("# flag --log-level"), "{yaml}");
    // The annotated output is still the same config.
    assert_eq!(Config::from_yaml_str(&yaml).unwrap(), config);
}

#[test]
fn queue_and_caps_sections_parse_and_bad_values_name_their_key() {
    let yaml = "queue:\n  policy: priority_round_robin\n  route_priority:\n    /v1/completions: 1\n  \
                classes:\n    - priority: 0\n      weight: 3\n      max_wait_ms: 500\n\
                caps:\n  mode: adaptive\n  max_requests: 32\n";
    let config = Config::from_yaml_str(yaml).unwrap();
    assert_eq!(
        config.queue.policy,
        crate::admission::QueuePolicy::PriorityRoundRobin
    );
    assert_eq!((config.queue.weight(0), config.queue.weight(1)), (3, 1));
    assert_eq!(
        (config.queue.max_wait_ms(0), config.queue.max_wait_ms(1)),
        (500, 60_000)
    );
    assert_eq!(config.queue.route_priority["/v1/completions"], 1);
    assert_eq!(config.caps.mode, crate::admission::CapsMode::Adaptive);
    let cases = [
        ("queue:\n  max_length: 0\n", "queue.max_length"),
        (
            "queue:\n  classes:\n    - priority: 1\n    - priority: 1\n",
            "queue.classes[1].priority",
        ),
        ("queue:\n  policy: lifo\n", "queue.policy"),
        (
            "caps:\n  mode: adaptive\n  adaptive:\n    kv_low: 0.95\n",
            "caps.adaptive.kv_low",
        ),
        (
            "caps:\n  mode: adaptive\n  max_requests: 2\n",
            "caps.adaptive.min_requests",
        ),
    ];
    for (yaml, want_key) in cases {
        let (_, key, _) = config_error(yaml);
        assert_eq!(key, want_key, "{yaml}");
    }
}
