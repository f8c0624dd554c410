//! Shorthand forms of config sections, expanded per source before sources are merged:
//! `policy: cost`, `logging: debug`, `health: false`, `scrape: false`, `retry: 3`, and replicas
//! given as bare URLs (`replicas: [http://a:8001]`, or `ROUTER_REPLICAS=http://a:1,http://b:1`).

use figment::{
    Metadata, Profile, Provider,
    value::{Dict, Map, Tag, Value},
};

/// Wraps a figment provider and expands the shorthand forms in what it provides; the source
/// (file, environment) stays the wrapped provider's, so errors still name it.
pub(super) struct Shorthand<P>(pub(super) P);

impl<P: Provider> Provider for Shorthand<P> {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.0.data()?;
        for dict in data.values_mut() {
            expand(dict);
        }
        Ok(data)
    }

    fn profile(&self) -> Option<Profile> {
        self.0.profile()
    }
}

/// Rewrites every shorthand section of one profile's top-level dict into its full block.
pub(super) fn expand(dict: &mut Dict) {
    for (key, value) in dict.iter_mut() {
        match (key.as_str(), &*value) {
            ("policy", Value::String(..)) => wrap(value, "name"),
            ("logging", Value::String(..)) => wrap(value, "level"),
            ("health" | "scrape", Value::Bool(..)) => wrap(value, "enabled"),
            ("retry", Value::Num(..)) => wrap(value, "max_retries"),
            ("replicas", Value::String(_, urls)) => {
                let items = urls
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(|u| Value::String(Tag::Default, u.to_owned()))
                    .collect();
                *value = Value::Array(value.tag(), items);
                expand_replicas(value);
            }
            ("replicas", Value::Array(..)) => expand_replicas(value),
            _ => {}
        }
    }
}

/// `key: x` becomes `key: {field: x}`.
fn wrap(value: &mut Value, field: &str) {
    let tag = value.tag();
    let inner = std::mem::replace(value, Value::Dict(tag, Dict::new()));
    if let Value::Dict(_, dict) = value {
        dict.insert(field.to_owned(), inner);
    }
}

/// Each bare URL in the replica list becomes `{url: URL}`.
fn expand_replicas(value: &mut Value) {
    if let Value::Array(_, items) = value {
        for item in items.iter_mut() {
            if matches!(item, Value::String(..)) {
                wrap(item, "url");
            }
        }
    }
}
