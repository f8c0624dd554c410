//! The Grafana dashboard in `deploy/grafana/`: its panels, their PromQL, and the template
//! variables a query needs substituted before Prometheus can run it.

use serde_json::Value;

/// Path of the dashboard JSON in the repository.
pub const DASHBOARD_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/grafana/prefix-router.json"
);

/// Reads and parses the dashboard; panics with the reason if it is not JSON.
pub fn load() -> Value {
    let text = std::fs::read_to_string(DASHBOARD_PATH).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is valid JSON")
}

/// Every panel, rows' nested panels included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// One PromQL query of one panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    /// The panel's title.
    pub panel: String,
    /// The target's `refId`.
    pub ref_id: String,
    /// The expression as written in the dashboard.
    pub expr: String,
}

/// Every target expression of every panel.
pub fn queries(dashboard: &Value) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(PanelQuery {
                    panel: panel["title"].as_str().unwrap_or("?").to_owned(),
                    ref_id: target["refId"].as_str().unwrap_or("?").to_owned(),
                    expr: expr.to_owned(),
                });
            }
        }
    }
    out
}

/// `expr` with Grafana's variables replaced as Grafana would before querying: interval
/// built-ins by `1m`, dashboard variables by their current value (or `.*`, matching all).
pub fn substitute(expr: &str, dashboard: &Value) -> String {
    let mut vars: Vec<(String, String)> = ["__rate_interval", "__interval", "__range"]
        .iter()
        .map(|v| ((*v).to_owned(), "1m".to_owned()))
        .collect();
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(name) = var["name"].as_str() else {
            continue;
        };
        let value = match &var["current"]["value"] {
            Value::String(v) if v != "$__all" => v.clone(),
            _ => ".*".to_owned(),
        };
        vars.push((name.to_owned(), value));
    }
    // Longest names first, so `$__interval` is not taken for a `$__interval_ms` prefix.
    vars.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = expr.to_owned();
    for (name, value) in &vars {
        for pattern in [
            format!("${{{name}}}"),
            format!("[[{name}]]"),
            format!("${name}"),
        ] {
            out = out.replace(&pattern, value);
        }
    }
    out
}

/// Every `router_*` and `vllm:*` series name the dashboard's expressions use.
pub fn series_names(dashboard: &Value) -> Vec<String> {
    let mut names: Vec<String> = queries(dashboard)
        .iter()
        .flat_map(|q| {
            q.expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .filter(|t| t.starts_with("router_") || t.starts_with("vllm:"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}
