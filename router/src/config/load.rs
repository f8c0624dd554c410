//! Loading (figment: YAML file, `ROUTER_*` environment, CLI overrides) and validation.

use std::{collections::HashSet, net::SocketAddr, path::Path};

use figment::{
    Figment,
    error::Kind,
    providers::{Env, Format, Yaml},
};
use serde::Serialize;

use super::shorthand::Shorthand;
use super::sources::{Flag, Sources};
use super::{Config, PolicyName};
use crate::Error;

/// Values given on the command line; each one set wins over the file and the environment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigOverrides {
    /// Overrides `listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides `policy.name`.
    pub policy: Option<PolicyName>,
    /// Overrides `logging.level`.
    pub log_level: Option<String>,
}

impl Config {
    /// Parses and validates a YAML document (no environment, no overrides).
    pub fn from_yaml_str(yaml: &str) -> Result<Config, Error> {
        let origin = "YAML string";
        let config: Config = Figment::from(Shorthand(Yaml::string(yaml)))
            .extract()
            .map_err(|e| from_figment(e, origin))?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Loads `path`, then `ROUTER_*` environment variables (`__` separates nesting, e.g.
    /// `ROUTER_POLICY__NAME`), then `overrides`; later sources win. Validates the result.
    pub fn load(path: &Path, overrides: &ConfigOverrides) -> Result<Config, Error> {
        Self::load_with_sources(path, overrides).map(|(config, _)| config)
    }

    /// [`Config::load`], also returning where each value came from (for `check-config`).
    pub fn load_with_sources(
        path: &Path,
        overrides: &ConfigOverrides,
    ) -> Result<(Config, Sources), Error> {
        std::fs::metadata(path).map_err(|source| Error::ConfigFile {
            path: path.to_path_buf(),
            source,
        })?;
        let origin = path.display().to_string();
        let mut figment =
            Figment::from(Shorthand(Yaml::file_exact(path))).merge(Shorthand(router_env()));
        if let Some(listen) = overrides.listen {
            figment = figment.merge(Flag::new("--listen", "listen", listen));
        }
        if let Some(policy) = overrides.policy {
            figment = figment.merge(Flag::new("--policy", "policy.name", policy));
        }
        if let Some(level) = &overrides.log_level {
            figment = figment.merge(Flag::new("--log-level", "logging.level", level));
        }
        let config: Config = figment.extract().map_err(|e| from_figment(e, &origin))?;
        let sources = Sources::of(&figment);
        config
            .validate(&origin)
            .map_err(|e| sources.name_origin(e))?;
        Ok((config, sources))
    }

    /// The effective configuration as YAML (what `router check-config` prints).
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Checks values serde cannot: URLs, names, weights, thresholds, non-zero timeouts.
    pub fn validate(&self, origin: &str) -> Result<(), Error> {
        let bad = |key: String, reason: String| Error::Config {
            origin: origin.to_owned(),
            key,
            reason,
        };
        let mut names = HashSet::new();
        for (i, spec) in self.replicas.iter().enumerate() {
            let key = |field: &str| format!("replicas[{i}].{field}");
            if let Err(e) = spec.base_uri() {
                return Err(bad(key("url"), e.to_string()));
            }
            if spec.weight == 0 {
                return Err(bad(key("weight"), "must be at least 1".to_owned()));
            }
            let name = spec.resolved_name();
            if name.is_empty() {
                return Err(bad(key("name"), "must not be empty".to_owned()));
            }
            if !names.insert(name.clone()) {
                return Err(bad(key("name"), format!("duplicate replica name `{name}`")));
            }
        }
        let positive = [
            ("health.interval_ms", self.health.interval_ms),
            ("health.timeout_ms", self.health.timeout_ms),
            (
                "health.healthy_threshold",
                u64::from(self.health.healthy_threshold),
            ),
            (
                "health.unhealthy_threshold",
                u64::from(self.health.unhealthy_threshold),
            ),
            ("timeouts.connect_ms", self.timeouts.connect_ms),
            ("timeouts.first_byte_ms", self.timeouts.first_byte_ms),
            ("timeouts.idle_ms", self.timeouts.idle_ms),
            (
                "timeouts.stream_first_byte_ms",
                self.timeouts.stream_first_byte_ms,
            ),
            ("timeouts.header_read_ms", self.timeouts.header_read_ms),
            ("limits.max_body_bytes", self.limits.max_body_bytes as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(bad(key.to_owned(), "must be greater than 0".to_owned()));
            }
        }
        if self.limits.max_header_bytes < 8192 {
            return Err(bad(
                "limits.max_header_bytes".to_owned(),
                "must be at least 8192".to_owned(),
            ));
        }
        let checks = [
            self.outlier.check(),
            self.scrape.check(),
            self.prefix.check(),
            self.policy.cost.check(),
            self.auth.check(),
            self.admin.check(),
            self.models.check(),
            self.discovery.check(),
            self.queue.check(),
            self.caps.check(),
        ];
        if let Some(Err((key, reason))) = checks.into_iter().find(Result::is_err) {
            return Err(bad(key, reason));
        }
        if !self.health.path.starts_with('/') {
            return Err(bad(
                "health.path".to_owned(),
                "must start with `/`".to_owned(),
            ));
        }
        Ok(())
    }
}

/// `ROUTER_*` variables whose first segment names a config section (e.g. `ROUTER_LISTEN`,
/// `ROUTER_POLICY__NAME`); others such as `ROUTER_CONFIG` or a script's `ROUTER_PORT` are not
/// config keys and are left alone. Typos inside a section are still errors.
fn router_env() -> Env {
    let sections: Vec<String> = serde_json::to_value(Figment::new().extract::<Config>().ok())
        .ok()
        .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
        .unwrap_or_default();
    Env::prefixed("ROUTER_")
        .filter(move |key| {
            let first = key.as_str().split("__").next().unwrap_or_default();
            sections.iter().any(|s| s.eq_ignore_ascii_case(first))
        })
        .split("__")
}

/// Turns figment's error into ours, naming origin, dotted key and reason.
fn from_figment(error: figment::Error, default_origin: &str) -> Error {
    let mut path = error.path.clone();
    let field = match &error.kind {
        Kind::UnknownField(field, _) => Some(field.clone()),
        Kind::MissingField(field) => Some(field.to_string()),
        _ => None,
    };
    if let Some(field) = field {
        if path.last() != Some(&field) {
            path.push(field);
        }
    }
    let origin = match &error.metadata {
        Some(md) => match &md.source {
            Some(figment::Source::File(file)) => file.display().to_string(),
            _ if md.name.contains("environment") => md.name.to_string(),
            _ => default_origin.to_owned(),
        },
        None => default_origin.to_owned(),
    };
    let key = if path.is_empty() {
        "<root>".to_owned()
    } else {
        path.join(".")
    };
    Error::Config {
        origin,
        key,
        reason: error.kind.to_string(),
    }
}
