//! Where each effective config value came from (built-in default, file, environment, flag), and
//! the annotated YAML `router check-config` prints.

use std::{collections::BTreeMap, fmt, path::PathBuf};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::Serialized,
    value::{Dict, Map, Value},
};
use serde::Serialize;

use super::Config;

/// Name prefix of the metadata of command-line providers.
const FLAG_PREFIX: &str = "command-line flag ";

/// The origin of one config value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Not set anywhere: the built-in default.
    Default,
    /// Set in this YAML file.
    File(PathBuf),
    /// Set by this environment variable.
    Env(String),
    /// Set by this command-line flag.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(var) => write!(f, "env {var}"),
            Self::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// The source of every value a file, the environment or a flag set, by dotted key
/// (list items by index: `replicas.0.url`); any other key holds its default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    by_key: BTreeMap<String, Source>,
}

impl Sources {
    /// Records the source of every leaf of `figment`'s merged value.
    pub(super) fn of(figment: &Figment) -> Self {
        let mut sources = Self::default();
        if let Ok(root) = figment.extract::<Value>() {
            let mut path = Vec::new();
            sources.collect(figment, &root, &mut path);
        }
        sources
    }

    fn collect(&mut self, figment: &Figment, value: &Value, path: &mut Vec<String>) {
        match value {
            Value::Dict(_, dict) if !dict.is_empty() => {
                for (key, child) in dict {
                    path.push(key.clone());
                    self.collect(figment, child, path);
                    path.pop();
                }
            }
            Value::Array(_, items) if !items.is_empty() => {
                for (i, child) in items.iter().enumerate() {
                    path.push(i.to_string());
                    self.collect(figment, child, path);
                    path.pop();
                }
            }
            leaf => {
                let source = figment
                    .get_metadata(leaf.tag())
                    .map_or(Source::Default, |md| classify(md, path));
                self.by_key.insert(path.join("."), source);
            }
        }
    }

    /// Where the value at dotted `key` came from.
    pub fn get(&self, key: &str) -> Source {
        self.by_key.get(key).cloned().unwrap_or(Source::Default)
    }

    /// A validation error's origin made the environment variable or flag that set the bad
    /// value (validation names the file by default); other errors pass through.
    pub(super) fn name_origin(&self, error: crate::Error) -> crate::Error {
        match error {
            crate::Error::Config {
                origin,
                key,
                reason,
            } => {
                let dotted = key.replace('[', ".").replace(']', "");
                let origin = match self.get(&dotted) {
                    source @ (Source::Env(_) | Source::Flag(_)) => source.to_string(),
                    _ => origin,
                };
                crate::Error::Config {
                    origin,
                    key,
                    reason,
                }
            }
            other => other,
        }
    }
}

/// Names the source behind a provider's metadata; `path` picks the environment variable.
fn classify(md: &Metadata, path: &[String]) -> Source {
    if let Some(figment::Source::File(file)) = &md.source {
        return Source::File(file.clone());
    }
    if let Some(flag) = md.name.strip_prefix(FLAG_PREFIX) {
        return Source::Flag(flag.to_owned());
    }
    if md.name.contains("environment") {
        // The longest `ROUTER_A__B` that is set: a shorthand (`ROUTER_POLICY=cost`) sets a
        // value deeper than its own name.
        let var = (1..=path.len())
            .rev()
            .map(|n| format!("ROUTER_{}", path[..n].join("__").to_ascii_uppercase()))
            .find(|var| std::env::var_os(var).is_some())
            .unwrap_or_else(|| "ROUTER_*".to_owned());
        return Source::Env(var);
    }
    Source::File(PathBuf::from(md.name.to_string()))
}

/// A provider for one command-line flag's value at a dotted config key.
pub(super) struct Flag<T> {
    flag: &'static str,
    inner: Serialized<T>,
}

impl<T: Serialize> Flag<T> {
    /// `flag` (e.g. `--policy`) sets `key` (e.g. `policy.name`) to `value`.
    pub(super) fn new(flag: &'static str, key: &str, value: T) -> Self {
        Self {
            flag,
            inner: Serialized::default(key, value),
        }
    }
}

impl<T: Serialize> Provider for Flag<T> {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("{FLAG_PREFIX}{}", self.flag))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// Column where the source comments start.
const COMMENT_COLUMN: usize = 44;

impl Config {
    /// The effective configuration as YAML with each value's source as a trailing comment
    /// (`# default`, `# file config.yaml`, `# env ROUTER_POLICY__NAME`, `# flag --policy`).
    pub fn to_annotated_yaml(&self, sources: &Sources) -> String {
        let mut out = String::new();
        match serde_yaml::to_value(self) {
            Ok(serde_yaml::Value::Mapping(map)) => {
                let mut path = Vec::new();
                emit_map(&mut out, &map, 0, None, &mut path, sources);
            }
            Ok(_) => out.push_str("# cannot render config: not a mapping\n"),
            Err(e) => out.push_str(&format!("# cannot render config: {e}\n")),
        }
        out
    }
}

/// Writes `map` at `indent`; `first` replaces the indentation of its first line (`- ` items).
fn emit_map(
    out: &mut String,
    map: &serde_yaml::Mapping,
    indent: usize,
    first: Option<String>,
    path: &mut Vec<String>,
    sources: &Sources,
) {
    let mut lead = first;
    for (key, value) in map {
        let key = scalar(key);
        let prefix = lead.take().unwrap_or_else(|| " ".repeat(indent));
        path.push(key.clone());
        emit_entry(out, format!("{prefix}{key}:"), value, indent, path, sources);
        path.pop();
    }
}

/// Writes one `head` (`key:` or `-`) and its value, nested ones below it.
fn emit_entry(
    out: &mut String,
    head: String,
    value: &serde_yaml::Value,
    indent: usize,
    path: &mut Vec<String>,
    sources: &Sources,
) {
    use serde_yaml::Value as Y;
    match value {
        Y::Mapping(map) if !map.is_empty() => {
            out.push_str(&head);
            out.push('\n');
            emit_map(out, map, indent + 2, None, path, sources);
        }
        Y::Sequence(items) if !items.is_empty() => {
            out.push_str(&head);
            out.push('\n');
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                let dash = format!("{}- ", " ".repeat(indent + 2));
                match item {
                    Y::Mapping(map) if !map.is_empty() => {
                        emit_map(out, map, indent + 4, Some(dash), path, sources);
                    }
                    _ => {
                        let head = dash.trim_end().to_owned();
                        emit_entry(out, head, item, indent + 2, path, sources);
                    }
                }
                path.pop();
            }
        }
        leaf => {
            let shown = if is_secret(path) && !leaf.is_null() {
                &serde_yaml::Value::String(REDACTED.to_owned())
            } else {
                leaf
            };
            let line = format!("{head} {}", scalar(shown));
            let pad = COMMENT_COLUMN.saturating_sub(line.len()).max(1);
            let source = sources.get(&path.join("."));
            out.push_str(&format!("{line}{}# {source}\n", " ".repeat(pad)));
        }
    }
}

/// What `check-config` prints in place of a secret.
const REDACTED: &str = "***";

/// Whether the value at `path` is a secret (client API keys, the upstream key, the admin
/// token), printed redacted.
fn is_secret(path: &[String]) -> bool {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(
        path.as_slice(),
        ["auth", "api_keys", _, "key"] | ["auth", "upstream", "api_key"] | ["admin", "token"]
    )
}

/// One scalar (or empty collection) in YAML flow syntax, quoted where YAML needs it.
fn scalar(value: &serde_yaml::Value) -> String {
    serde_yaml::to_string(value)
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default()
}
