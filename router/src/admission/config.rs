//! Settings of the admission queue (`queue`) and of the per-replica concurrency caps (`caps`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Order in which waiting requests are admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// First come, first served, whatever the priority.
    #[default]
    Fcfs,
    /// Lowest priority value first (strict), first come first served within a class.
    Priority,
    /// Weighted turns between the waiting classes, FCFS within a class: no class starves.
    PriorityRoundRobin,
}

impl QueuePolicy {
    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fcfs => "fcfs",
            Self::Priority => "priority",
            Self::PriorityRoundRobin => "priority_round_robin",
        }
    }
}

/// When a waiting request's replica is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueuePlacement {
    /// On arrival: the routing policy places the request on its home replica (over every
    /// healthy replica of its group, its load counted there while it waits, as a replica's own
    /// queue would), and it waits for a slot there; a replica with room that no waiter calls
    /// home takes the earliest waiter instead (spill-over), so no replica idles.
    Arrival,
    /// On admission: a freed slot goes to the head of the queue, which the routing policy then
    /// places over the replicas with room (`affinity_window` may favour a cached prefix).
    #[default]
    Admission,
}

/// Settings of one priority class (a priority value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassConfig {
    /// The priority value this class is (lower is served first).
    pub priority: i64,
    /// Share of turns under `priority_round_robin` (>= 1).
    pub weight: u32,
    /// Longest wait in the queue before a 503, in milliseconds; unset: `queue.max_wait_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_wait_ms: Option<u64>,
    /// Most requests of this class waiting at once before a 429; unset: only `queue.max_length`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
}

impl Default for ClassConfig {
    fn default() -> Self {
        Self {
            priority: 0,
            weight: 1,
            max_wait_ms: None,
            max_length: None,
        }
    }
}

/// The router's admission queue: requests wait here while every replica is at its cap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Which waiting request goes next.
    pub policy: QueuePolicy,
    /// Most requests waiting at once, all classes together (429 beyond).
    pub max_length: usize,
    /// Longest wait in milliseconds for classes without their own (503 beyond).
    pub max_wait_ms: u64,
    /// `Retry-After` seconds sent with a 429 or 503 from the queue.
    pub retry_after_s: u64,
    /// Priority of requests that give none in the body or `x-priority` header.
    pub default_priority: i64,
    /// Default priority per request path (e.g. `/v1/completions: 1`), before `default_priority`.
    pub route_priority: BTreeMap<String, i64>,
    /// Per-class settings (weight, bounds), one entry per priority value.
    pub classes: Vec<ClassConfig>,
    /// How many waiting requests, in turn, a slot freed on a replica looks through for one
    /// whose cached prefix the routing policy places there (it goes first, keeping cache
    /// affinity under late binding); 0: the next in turn always goes.
    pub affinity_window: usize,
    /// When a waiting request's replica is chosen: on `arrival` (kept while it waits, cache
    /// affinity intact) or on `admission` (late binding to whichever replica has room).
    pub placement: QueuePlacement,
    /// Under placement on arrival: a replica with room takes a waiter whose home is elsewhere
    /// ahead of its own next one when that waiter arrived more than this many milliseconds
    /// earlier (affinity never costs more than this over first come, first served).
    pub home_tolerance_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            policy: QueuePolicy::Fcfs,
            max_length: 1024,
            max_wait_ms: 60_000,
            retry_after_s: 1,
            default_priority: 0,
            route_priority: BTreeMap::new(),
            classes: Vec::new(),
            affinity_window: 0,
            placement: QueuePlacement::Admission,
            home_tolerance_ms: 1500,
        }
    }
}

impl QueueConfig {
    /// The settings of `priority`, if configured.
    pub fn class(&self, priority: i64) -> Option<&ClassConfig> {
        self.classes.iter().find(|c| c.priority == priority)
    }

    /// Weight of `priority` under round robin (1 unless configured).
    pub fn weight(&self, priority: i64) -> u32 {
        self.class(priority).map_or(1, |c| c.weight.max(1))
    }

    /// Longest wait of `priority` in milliseconds.
    pub fn max_wait_ms(&self, priority: i64) -> u64 {
        self.class(priority)
            .and_then(|c| c.max_wait_ms)
            .unwrap_or(self.max_wait_ms)
    }

    /// Most waiting requests of `priority`, if bounded per class.
    pub fn class_max_length(&self, priority: i64) -> Option<usize> {
        self.class(priority).and_then(|c| c.max_length)
    }

    /// Checks the values serde cannot; returns the offending key and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let zero = |key: &str| Err((key.to_owned(), "must be greater than 0".to_owned()));
        if self.max_length == 0 {
            return zero("queue.max_length");
        }
        if self.max_wait_ms == 0 {
            return zero("queue.max_wait_ms");
        }
        for (i, class) in self.classes.iter().enumerate() {
            if class.weight == 0 {
                return zero(&format!("queue.classes[{i}].weight"));
            }
            if class.max_wait_ms == Some(0) {
                return zero(&format!("queue.classes[{i}].max_wait_ms"));
            }
            if class.max_length == Some(0) {
                return zero(&format!("queue.classes[{i}].max_length"));
            }
            if self.classes[..i]
                .iter()
                .any(|c| c.priority == class.priority)
            {
                return Err((
                    format!("queue.classes[{i}].priority"),
                    format!("priority {} is listed twice", class.priority),
                ));
            }
        }
        if let Some(path) = self.route_priority.keys().find(|p| !p.starts_with('/')) {
            return Err((
                format!("queue.route_priority.{path}"),
                "a route must start with `/`".to_owned(),
            ));
        }
        Ok(())
    }
}

/// How a replica's concurrency cap is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CapsMode {
    /// No cap: every request is dispatched at once (the queue never holds one).
    #[default]
    None,
    /// Fixed caps from `caps.max_requests` / `caps.max_prompt_tokens`.
    Static,
    /// Caps that shrink under scraped KV pressure or a growing replica queue and grow back.
    Adaptive,
}

impl CapsMode {
    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Static => "static",
            Self::Adaptive => "adaptive",
        }
    }
}

/// Per-replica concurrency caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapsConfig {
    /// None, static or adaptive.
    pub mode: CapsMode,
    /// Requests in flight per replica: the static cap, and the adaptive cap's upper bound
    /// (default 256, vLLM's `max_num_seqs`).
    pub max_requests: u32,
    /// Estimated prompt tokens in flight per replica; unset: the replica's KV capacity from
    /// `vllm:cache_config_info` when scraped, else unbounded. One request always fits an idle
    /// replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<u64>,
    /// Count each request's output budget (`max_tokens` / `max_completion_tokens`) with its
    /// prompt against `max_prompt_tokens` (or the KV capacity): what it may hold in KV by its
    /// end, so the requests admitted cannot outgrow the replica's cache and get preempted.
    pub count_max_tokens: bool,
    /// The adaptive controller.
    pub adaptive: AdaptiveConfig,
}

impl Default for CapsConfig {
    fn default() -> Self {
        Self {
            mode: CapsMode::None,
            max_requests: 256,
            max_prompt_tokens: None,
            count_max_tokens: false,
            adaptive: AdaptiveConfig::default(),
        }
    }
}

/// The adaptive cap: multiplicative decrease under pressure, additive increase when it falls,
/// a hold band between the two thresholds (no oscillation), smoothed signals, bounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConfig {
    /// Smallest cap (>= 1).
    pub min_requests: u32,
    /// Cap a replica starts with; unset: `caps.max_requests`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_requests: Option<u32>,
    /// Smoothed KV usage (0..1) above which the cap shrinks.
    pub kv_high: f64,
    /// Smoothed KV usage below which the cap may grow.
    pub kv_low: f64,
    /// Smoothed replica waiting queue above which the cap shrinks.
    pub waiting_high: f64,
    /// Smoothed replica waiting queue at or below which the cap may grow.
    pub waiting_low: f64,
    /// Factor applied on a shrink (0..1).
    pub decrease_factor: f64,
    /// When set, a replica whose latest scrape shows requests waiting in its own queue gets its
    /// cap cut at once to the requests it runs plus this many: the router holds the rest,
    /// where it can still choose the replica (and keeps its queue order). Unset: only the
    /// smoothed waiting queue counts, against `waiting_high`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_headroom: Option<u32>,
    /// Requests added on a grow.
    pub increase_step: u32,
    /// Weight of the newest sample in the exponential smoothing (0..=1).
    pub smoothing: f64,
    /// Milliseconds between two controller steps.
    pub interval_ms: u64,
    /// The token budget's scale, learnt from the replica's KV usage (needs its KV capacity).
    pub token_scale: TokenScaleConfig,
}

/// Bounds and steps of the adaptive token budget's scale (which starts at 1: the configured
/// `caps.max_prompt_tokens`, else the scraped KV capacity). `min: 1, max: 1` turns it off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenScaleConfig {
    /// Lowest scale (0 < min <= 1).
    pub min: f64,
    /// Highest scale (>= 1).
    pub max: f64,
    /// Largest relative growth in one step (0.05: 5%).
    pub step: f64,
    /// Factor applied on KV usage past `kv_high` or a preemption (0..1).
    pub decrease_factor: f64,
    /// Controller steps the scale holds after each move, so the replica's KV usage shows the
    /// move before the next one (a lagging signal would make it overshoot and saw-tooth).
    pub hold_steps: u32,
}

impl Default for TokenScaleConfig {
    fn default() -> Self {
        Self {
            min: 0.5,
            max: 2.0,
            step: 0.05,
            decrease_factor: 0.9,
            hold_steps: 2,
        }
    }
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            min_requests: 4,
            initial_requests: None,
            kv_high: 0.9,
            kv_low: 0.75,
            waiting_high: 2.0,
            waiting_low: 0.5,
            decrease_factor: 0.8,
            queue_headroom: None,
            increase_step: 2,
            smoothing: 0.5,
            interval_ms: 1000,
            token_scale: TokenScaleConfig::default(),
        }
    }
}

impl CapsConfig {
    /// Checks the values serde cannot (the `adaptive` ones in adaptive mode only); returns the
    /// offending key and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, reason: &str| Err((format!("caps.{key}"), reason.to_owned()));
        let a = &self.adaptive;
        if self.max_requests == 0 {
            return bad("max_requests", "must be greater than 0");
        }
        if self.max_prompt_tokens == Some(0) {
            return bad("max_prompt_tokens", "must be greater than 0");
        }
        if self.mode != CapsMode::Adaptive {
            return Ok(());
        }
        if a.min_requests == 0 || a.min_requests > self.max_requests {
            return bad(
                "adaptive.min_requests",
                "must be between 1 and caps.max_requests",
            );
        }
        if a.initial_requests
            .is_some_and(|i| i < a.min_requests || i > self.max_requests)
        {
            return bad(
                "adaptive.initial_requests",
                "must be between caps.adaptive.min_requests and caps.max_requests",
            );
        }
        if !(0.0..=1.0).contains(&a.kv_low) || !(0.0..=1.0).contains(&a.kv_high) {
            return bad("adaptive.kv_high", "KV thresholds must be within 0..=1");
        }
        if a.kv_low >= a.kv_high {
            return bad("adaptive.kv_low", "must be below caps.adaptive.kv_high");
        }
        if !(a.waiting_low >= 0.0 && a.waiting_low < a.waiting_high) {
            return bad(
                "adaptive.waiting_low",
                "must be at least 0 and below caps.adaptive.waiting_high",
            );
        }
        if !(a.decrease_factor > 0.0 && a.decrease_factor < 1.0) {
            return bad("adaptive.decrease_factor", "must be between 0 and 1");
        }
        if a.increase_step == 0 {
            return bad("adaptive.increase_step", "must be greater than 0");
        }
        if !(a.smoothing > 0.0 && a.smoothing <= 1.0) {
            return bad("adaptive.smoothing", "must be within (0, 1]");
        }
        if a.interval_ms == 0 {
            return bad("adaptive.interval_ms", "must be greater than 0");
        }
        let t = &a.token_scale;
        if !(t.min > 0.0 && t.min <= 1.0) {
            return bad("adaptive.token_scale.min", "must be within (0, 1]");
        }
        if !(t.max >= 1.0 && t.max.is_finite()) {
            return bad("adaptive.token_scale.max", "must be at least 1");
        }
        if !(t.step > 0.0 && t.step <= 1.0) {
            return bad("adaptive.token_scale.step", "must be within (0, 1]");
        }
        if !(t.decrease_factor > 0.0 && t.decrease_factor < 1.0) {
            return bad(
                "adaptive.token_scale.decrease_factor",
                "must be between 0 and 1",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_scale_bounds_are_checked_with_their_key() {
        let mut caps = CapsConfig {
            mode: CapsMode::Adaptive,
            ..CapsConfig::default()
        };
        assert_eq!(caps.check(), Ok(()));
        let key = |caps: &CapsConfig| caps.check().err().map(|(key, _)| key);
        caps.adaptive.token_scale.min = 1.5;
        assert_eq!(key(&caps).as_deref(), Some("caps.adaptive.token_scale.min"));
        caps.adaptive.token_scale.min = 1.0;
        caps.adaptive.token_scale.max = 0.9;
        assert_eq!(key(&caps).as_deref(), Some("caps.adaptive.token_scale.max"));
        caps.adaptive.token_scale.max = 1.0;
        assert_eq!(caps.check(), Ok(()), "1..1: off");
        caps.adaptive.token_scale.step = 0.0;
        assert_eq!(
            key(&caps).as_deref(),
            Some("caps.adaptive.token_scale.step")
        );
        caps.adaptive.token_scale.step = 0.1;
        caps.adaptive.token_scale.decrease_factor = 1.0;
        assert_eq!(
            key(&caps).as_deref(),
            Some("caps.adaptive.token_scale.decrease_factor")
        );
    }
}
