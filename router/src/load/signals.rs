//! The latest scrape of a replica as decisions see it: fresh or stale, and the load it shows
//! beyond what this router itself has in flight there.

use std::{sync::Arc, time::Instant};

use arc_swap::ArcSwapOption;

use super::PrefillSample;
use super::ScrapedLoad;

/// Load a replica reports that this router did not send (other clients, other routers).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExternalLoad {
    /// Waiting requests beyond the router's own not-yet-answered ones.
    pub waiting: f64,
    /// Running requests beyond the router's own.
    pub running: f64,
    /// KV-cache usage (0..=1), when reported.
    pub kv_usage: Option<f64>,
}

impl ExternalLoad {
    /// Load a scrape shows beyond what the router had in flight when the scrape landed:
    /// `router_inflight` requests, `router_pending` of them not yet past first byte.
    pub fn from_scrape(load: &ScrapedLoad, router_inflight: u64, router_pending: u64) -> Self {
        let total = (load.waiting + load.running - router_inflight as f64).max(0.0);
        let waiting = (load.waiting - router_pending as f64).max(0.0).min(total);
        Self {
            waiting,
            running: total - waiting,
            kv_usage: load.kv_usage,
        }
    }
}

/// What the requests a replica finished between two scrapes spent in prefill, from the deltas
/// of its `request_prefill_time_seconds` and `request_prefill_kv_computed_tokens` histograms;
/// `None` without both, without finished requests, or across a counter reset.
pub fn prefill_sample(earlier: &ScrapedLoad, later: &ScrapedLoad) -> Option<PrefillSample> {
    let (a, b) = (&earlier.latency, &later.latency);
    let (t0, t1) = (a.prefill_s?, b.prefill_s?);
    let (k0, k1) = (a.computed_tokens?, b.computed_tokens?);
    let (dt, dn) = (t1.sum - t0.sum, t1.count - t0.count);
    let (dk, dkn) = (k1.sum - k0.sum, k1.count - k0.count);
    (dn >= 1.0 && dkn >= 1.0 && dt >= 0.0 && dk >= 0.0).then(|| PrefillSample {
        requests: dn,
        mean_prefill_s: dt / dn,
        mean_uncached_tokens: dk / dkn,
    })
}

/// One successful scrape with what it implies.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeSignals {
    /// What the replica reported.
    pub load: ScrapedLoad,
    /// The part of it this router did not send.
    pub external: ExternalLoad,
    /// After this instant the scrape is stale.
    pub valid_until: Instant,
}

/// Holder of a replica's latest scrape; read lock-free on every decision.
#[derive(Debug, Default)]
pub struct ScrapeSlot {
    latest: ArcSwapOption<ScrapeSignals>,
}

impl ScrapeSlot {
    /// Publishes a new scrape.
    pub fn store(&self, signals: ScrapeSignals) {
        self.latest.store(Some(Arc::new(signals)));
    }

    /// The latest scrape, fresh or not (for deltas between scrapes).
    pub fn latest(&self) -> Option<Arc<ScrapeSignals>> {
        self.latest.load_full()
    }

    /// Forgets the scrape (a failed scrape makes the signal stale at once).
    pub fn mark_stale(&self) {
        self.latest.store(None);
    }

    /// The latest scrape if it is still fresh at `now`.
    pub fn fresh(&self, now: Instant) -> Option<Arc<ScrapeSignals>> {
        self.latest.load_full().filter(|s| now <= s.valid_until)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn load(waiting: f64, running: f64) -> ScrapedLoad {
        let text =
            format!("vllm:num_requests_waiting {waiting}\nvllm:num_requests_running {running}\n");
        ScrapedLoad::parse(&text, Instant::now()).unwrap()
    }

    #[test]
    fn external_load_subtracts_the_routers_own_requests() {
        let e = ExternalLoad::from_scrape(&load(3.0, 5.0), 6, 2);
        assert_eq!((e.waiting, e.running), (1.0, 1.0));
        let e = ExternalLoad::from_scrape(&load(0.0, 2.0), 6, 2);
        assert_eq!(
            (e.waiting, e.running),
            (0.0, 0.0),
            "an old low count never goes negative"
        );
        let e = ExternalLoad::from_scrape(&load(4.0, 0.0), 0, 0);
        assert_eq!((e.waiting, e.running), (4.0, 0.0));
    }

    #[test]
    fn prefill_samples_come_from_histogram_deltas() {
        let page = |n: f64, secs: f64, tokens: f64| {
            format!(
                "vllm:num_requests_waiting 0\n\
                 vllm:request_prefill_time_seconds_sum {secs}\n\
                 vllm:request_prefill_time_seconds_count {n}\n\
                 vllm:request_prefill_kv_computed_tokens_sum {tokens}\n\
                 vllm:request_prefill_kv_computed_tokens_count {n}\n"
            )
        };
        let parse = |text: String| ScrapedLoad::parse(&text, Instant::now()).unwrap();
        let a = parse(page(10.0, 1.0, 5000.0));
        let b = parse(page(14.0, 1.4, 9000.0));
        let s = prefill_sample(&a, &b).unwrap();
        assert_eq!(s.requests, 4.0);
        assert!((s.mean_prefill_s - 0.1).abs() < 1e-9);
        assert!((s.mean_uncached_tokens - 1000.0).abs() < 1e-9);
        assert_eq!(prefill_sample(&a, &a), None, "nothing finished");
        assert_eq!(prefill_sample(&b, &a), None, "counter reset");
        assert_eq!(prefill_sample(&load(0.0, 0.0), &b), None, "no histograms");
    }

    #[test]
    fn slot_goes_stale_by_time_or_failure() {
        let slot = ScrapeSlot::default();
        let now = Instant::now();
        assert!(slot.fresh(now).is_none());
        let l = load(1.0, 1.0);
        slot.store(ScrapeSignals {
            external: ExternalLoad::from_scrape(&l, 0, 0),
            load: l,
            valid_until: now + Duration::from_secs(1),
        });
        assert!(slot.fresh(now).is_some());
        assert!(
            slot.fresh(now + Duration::from_secs(2)).is_none(),
            "too old"
        );
        slot.mark_stale();
        assert!(slot.fresh(now).is_none(), "failed scrape");
    }
}
