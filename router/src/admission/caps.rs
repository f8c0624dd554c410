//! Per-replica concurrency caps: the cap itself, and the adaptive controller that moves it with
//! the replica's scraped KV usage and waiting queue.

use super::config::{AdaptiveConfig, CapsConfig, CapsMode};

/// What one replica may have in flight from this router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Requests in flight.
    pub requests: u32,
    /// Estimated prompt tokens in flight, if bounded.
    pub prompt_tokens: Option<u64>,
}

impl Cap {
    /// No limit at all.
    pub const UNLIMITED: Cap = Cap {
        requests: u32::MAX,
        prompt_tokens: None,
    };

    /// Whether one more request of `tokens` fits beside `requests` / `in_tokens` in flight.
    /// A request always fits an idle replica, however large.
    pub fn fits(&self, requests: u32, in_tokens: u64, tokens: u64) -> bool {
        if requests >= self.requests {
            return false;
        }
        match self.prompt_tokens {
            Some(limit) => requests == 0 || in_tokens.saturating_add(tokens) <= limit,
            None => true,
        }
    }
}

/// The replica signals the adaptive controller reads (from the latest fresh scrape).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pressure {
    /// KV-cache usage (0..=1), when reported.
    pub kv_usage: Option<f64>,
    /// Requests waiting in the replica's own queue.
    pub waiting: f64,
    /// Requests the replica is running (prefill or decode).
    pub running: f64,
    /// KV capacity in tokens, when reported (`vllm:cache_config_info`).
    pub kv_capacity_tokens: Option<u64>,
}

/// Where an adaptive step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Pressure above the high thresholds: the cap shrank (or stayed at its minimum).
    Shrink,
    /// Pressure below the low thresholds: the cap grew (or stayed at its maximum).
    Grow,
    /// Between the thresholds, or no fresh signal: the cap held.
    Hold,
}

/// The cap of one replica: fixed, or adaptive (AIMD with a hold band and smoothed signals).
#[derive(Debug, Clone)]
pub struct CapController {
    mode: CapsMode,
    max_requests: u32,
    max_prompt_tokens: Option<u64>,
    adaptive: AdaptiveConfig,
    current: f64,
    kv: Option<f64>,
    waiting: Option<f64>,
    kv_capacity: Option<u64>,
}

impl CapController {
    /// A controller for one replica under `config`.
    pub fn new(config: &CapsConfig) -> Self {
        let start = match config.mode {
            CapsMode::Adaptive => config
                .adaptive
                .initial_requests
                .unwrap_or(config.max_requests),
            _ => config.max_requests,
        };
        Self {
            mode: config.mode,
            max_requests: config.max_requests,
            max_prompt_tokens: config.max_prompt_tokens,
            adaptive: config.adaptive.clone(),
            current: f64::from(start),
            kv: None,
            waiting: None,
            kv_capacity: None,
        }
    }

    /// The cap in force now.
    pub fn cap(&self) -> Cap {
        match self.mode {
            CapsMode::None => Cap::UNLIMITED,
            CapsMode::Static | CapsMode::Adaptive => Cap {
                requests: (self.current.floor() as u32).max(1),
                prompt_tokens: self.max_prompt_tokens.or(self.kv_capacity),
            },
        }
    }

    /// Feeds the latest signals (`None`: no fresh scrape) and, if adaptive, moves the cap one
    /// step. Static caps only learn the KV capacity.
    pub fn observe(&mut self, pressure: Option<Pressure>) -> Step {
        let Some(p) = pressure else {
            return Step::Hold;
        };
        if p.kv_capacity_tokens.is_some() {
            self.kv_capacity = p.kv_capacity_tokens;
        }
        if self.mode != CapsMode::Adaptive {
            return Step::Hold;
        }
        let a = &self.adaptive;
        let smooth = |old: Option<f64>, new: f64| match old {
            Some(old) => old + a.smoothing * (new - old),
            None => new,
        };
        self.kv = p.kv_usage.map(|kv| smooth(self.kv, kv)).or(self.kv);
        let waiting = smooth(self.waiting, p.waiting);
        self.waiting = Some(waiting);
        let kv = self.kv.unwrap_or(0.0);
        let (min, max) = (f64::from(a.min_requests), f64::from(self.max_requests));
        if let Some(headroom) = a.queue_headroom.filter(|_| p.waiting > 0.0) {
            // The engine queues already: what it does not run yet, the router holds instead
            // (where it can still choose the replica).
            let running = (p.running + f64::from(headroom)).floor().max(min);
            self.current = self.current.min(running);
            return Step::Shrink;
        }
        if kv > a.kv_high || waiting > a.waiting_high {
            self.current = (self.current * a.decrease_factor).floor().max(min);
            Step::Shrink
        } else if kv < a.kv_low && waiting <= a.waiting_low {
            self.current = (self.current + f64::from(a.increase_step)).min(max);
            Step::Grow
        } else {
            Step::Hold
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adaptive() -> CapsConfig {
        CapsConfig {
            mode: CapsMode::Adaptive,
            max_requests: 64,
            adaptive: AdaptiveConfig {
                min_requests: 4,
                ..AdaptiveConfig::default()
            },
            ..CapsConfig::default()
        }
    }

    fn pressure(kv: f64, waiting: f64) -> Option<Pressure> {
        Some(Pressure {
            kv_usage: Some(kv),
            waiting,
            ..Pressure::default()
        })
    }

    #[test]
    fn fits_counts_requests_and_tokens_but_an_idle_replica_takes_anything() {
        let cap = Cap {
            requests: 2,
            prompt_tokens: Some(100),
        };
        assert!(cap.fits(0, 0, 5000), "idle replica");
        assert!(cap.fits(1, 60, 40));
        assert!(!cap.fits(1, 60, 41));
        assert!(!cap.fits(2, 0, 1));
        assert!(Cap::UNLIMITED.fits(1_000_000, u64::MAX, 1));
    }

    #[test]
    fn static_cap_holds_and_learns_kv_capacity() {
        let mut c = CapController::new(&CapsConfig {
            mode: CapsMode::Static,
            max_requests: 8,
            ..CapsConfig::default()
        });
        let step = c.observe(Some(Pressure {
            kv_usage: Some(1.0),
            waiting: 50.0,
            kv_capacity_tokens: Some(4096),
            ..Pressure::default()
        }));
        assert_eq!(step, Step::Hold);
        assert_eq!(
            c.cap(),
            Cap {
                requests: 8,
                prompt_tokens: Some(4096)
            }
        );
    }

    #[test]
    fn adaptive_shrinks_under_pressure_to_its_floor_and_grows_back_to_its_ceiling() {
        let mut c = CapController::new(&adaptive());
        assert_eq!(c.cap().requests, 64);
        let mut caps = vec![];
        for _ in 0..30 {
            assert_eq!(c.observe(pressure(0.98, 10.0)), Step::Shrink);
            caps.push(c.cap().requests);
        }
        assert!(caps.windows(2).all(|w| w[1] <= w[0]), "monotone: {caps:?}");
        assert_eq!(c.cap().requests, 4, "bounded below");
        let mut steps = 0;
        while c.cap().requests < 64 {
            c.observe(pressure(0.1, 0.0));
            steps += 1;
            assert!(steps < 100);
        }
        assert_eq!(c.cap().requests, 64, "bounded above");
        c.observe(pressure(0.1, 0.0));
        assert_eq!(c.cap().requests, 64);
    }

    #[test]
    fn adaptive_holds_inside_the_band_and_ignores_a_single_spike() {
        let mut c = CapController::new(&adaptive());
        for _ in 0..5 {
            c.observe(pressure(0.5, 0.0));
        }
        // One scrape past kv_high is smoothed below it: no shrink.
        assert_ne!(c.observe(pressure(0.95, 0.0)), Step::Shrink);
        assert_eq!(c.cap().requests, 64);
        // Sustained mid-band pressure: the cap does not move either way.
        for _ in 0..20 {
            assert_eq!(c.observe(pressure(0.8, 1.0)), Step::Hold);
        }
        assert_eq!(c.cap().requests, 64);
        assert_eq!(c.observe(None), Step::Hold, "no fresh scrape: hold");
    }

    #[test]
    fn a_growing_replica_queue_shrinks_the_cap() {
        let mut c = CapController::new(&adaptive());
        let mut shrunk = false;
        for waiting in [0.0, 2.0, 4.0, 8.0, 16.0] {
            shrunk |= c.observe(pressure(0.2, waiting)) == Step::Shrink;
        }
        assert!(shrunk && c.cap().requests < 64);
    }

    #[test]
    fn with_queue_headroom_a_queueing_engine_gets_what_it_runs_at_once() {
        let mut config = adaptive();
        config.adaptive.queue_headroom = Some(1);
        let mut c = CapController::new(&config);
        let queueing = |running: f64, waiting: f64| {
            Some(Pressure {
                kv_usage: Some(0.5),
                waiting,
                running,
                kv_capacity_tokens: None,
            })
        };
        assert_eq!(c.observe(queueing(20.0, 3.0)), Step::Shrink);
        assert_eq!(c.cap().requests, 21, "running 20 plus 1, in one step");
        c.observe(queueing(30.0, 1.0));
        assert_eq!(c.cap().requests, 21, "never raised by a queueing engine");
        c.observe(queueing(1.0, 5.0));
        assert_eq!(c.cap().requests, 4, "bounded below");
        // No queue and low KV: grows back as before, once the smoothed queue is under
        // `waiting_low`, one step at a time.
        let mut steps = 0;
        while c.cap().requests == 4 {
            c.observe(queueing(4.0, 0.0));
            steps += 1;
            assert!(steps < 10, "grows again");
        }
        assert_eq!(c.cap().requests, 6);
    }
}
