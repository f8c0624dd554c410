//! Replica discovery: DNS (a headless Service's A records) and Kubernetes EndpointSlices. Each
//! source owns the replicas it added and turns what it sees into `ReplicaChange`s: new
//! endpoints are upserted, vanished or terminating ones drain (in-flight work finishes).

pub mod dns;
pub mod dns_wire;
pub mod k8s;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{replicas::ReplicaChange, replicas::ReplicaSpec};

/// The `discovery` config section; each source is off unless configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Resolve a DNS name periodically.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<dns::DnsConfig>,
    /// Watch a Service's EndpointSlices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<k8s::K8sConfig>,
}

impl DiscoveryConfig {
    /// Checks values serde cannot; `(key, reason)` on error.
    pub fn check(&self) -> Result<(), (String, String)> {
        if let Some(dns) = &self.dns {
            dns.check()?;
        }
        if let Some(k8s) = &self.kubernetes {
            k8s.check()?;
        }
        Ok(())
    }
}

/// The replicas one source has added, by name (value: URL), and the diff to a new view.
#[derive(Debug, Default)]
pub struct Reconciler {
    owned: BTreeMap<String, String>,
}

impl Reconciler {
    /// The changes that make this source's replicas match `wanted` (name -> URL): upserts for
    /// new or moved ones, drains for those gone.
    pub fn update(&mut self, wanted: BTreeMap<String, String>) -> Vec<ReplicaChange> {
        let mut changes = Vec::new();
        for (name, url) in &wanted {
            if self.owned.get(name) != Some(url) {
                let mut spec = ReplicaSpec::new(url.clone());
                spec.name = Some(name.clone());
                changes.push(ReplicaChange::Upsert(spec));
            }
        }
        for name in self.owned.keys() {
            if !wanted.contains_key(name) {
                changes.push(ReplicaChange::Drain(name.clone()));
            }
        }
        self.owned = wanted;
        changes
    }

    /// Names this source currently owns.
    pub fn owned(&self) -> impl Iterator<Item = &str> {
        self.owned.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(n, u)| ((*n).to_owned(), (*u).to_owned()))
            .collect()
    }

    #[test]
    fn adds_new_drains_gone_and_ignores_unchanged() {
        let mut r = Reconciler::default();
        let first = r.update(view(&[("a", "http://a:1"), ("b", "http://b:1")]));
        assert_eq!(first.len(), 2);
        assert!(
            r.update(view(&[("a", "http://a:1"), ("b", "http://b:1")]))
                .is_empty()
        );
        let next = r.update(view(&[("b", "http://b:2"), ("c", "http://c:1")]));
        let names: Vec<String> = next
            .iter()
            .map(|c| match c {
                ReplicaChange::Upsert(s) => format!("+{}", s.resolved_name()),
                ReplicaChange::Drain(n) => format!("~{n}"),
                ReplicaChange::Remove(n) => format!("-{n}"),
            })
            .collect();
        assert_eq!(names, ["+b", "+c", "~a"]);
        assert_eq!(r.owned().collect::<Vec<_>>(), ["b", "c"]);
    }
}
