//! Per-replica concurrency caps: the cap itself, and the adaptive controller that moves it (and
//! the token budget, calibrated against the replica's own KV usage) with its scraped signals.

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
    /// Requests the replica preempted since it started (`vllm:num_preemptions_total`), when
    /// reported.
    pub preemptions: Option<f64>,
}

/// What the router itself holds on the replica when the controller steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Booked {
    /// Tokens the router counts in flight there (prompts, and output budgets if counted).
    pub tokens: u64,
    /// Requests bound there.
    pub requests: u32,
    /// Of those, the ones whose first byte came back: they hold KV there (the others may still
    /// be on their way or in the replica's queue).
    pub started: u32,
    /// Whether, since the last step, the token budget turned away a request that the request
    /// cap had room for: the router held work back for lack of tokens.
    pub token_bound: bool,
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

/// Where one adaptive step moved the request cap and the token budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    /// The request cap.
    pub requests: Step,
    /// The token budget's scale.
    pub tokens: Step,
}

impl Steps {
    const HOLD: Steps = Steps {
        requests: Step::Hold,
        tokens: Step::Hold,
    };
}

/// The cap of one replica: fixed, or adaptive (AIMD with a hold band and smoothed signals).
///
/// Adaptive, once the replica reports its KV capacity and usage, the token budget moves too: a
/// scale on it (bounded by `caps.adaptive.token_scale`, starting at 1) grows while the replica's
/// KV usage stays under `kv_low`, its queue is short and the budget holds work back, never past
/// the budget at which the replica's KV tokens per token the router counts (measured while the
/// scale held, on requests past their first byte) would fill it to `kv_low`; it shrinks when KV
/// usage passes `kv_high` or the replica preempts; after each move it holds `hold_steps` steps.
/// The KV job is then the budget's: KV usage no longer shrinks the request cap (unless the
/// scale is at its floor), whose guard is the replica's waiting queue.
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
    /// Multiplier of the token budget.
    scale: f64,
    /// Smoothed KV tokens the replica holds per token the router counts for its requests there
    /// past their first byte.
    kv_per_counted: Option<f64>,
    /// The replica's preemption counter at the previous step.
    preemptions: Option<f64>,
    /// Steps since the scale last moved.
    since_move: u32,
    /// The tokens counted for requests holding KV at the previous step.
    last_in_kv: f64,
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
            scale: 1.0,
            kv_per_counted: None,
            preemptions: None,
            since_move: config.adaptive.token_scale.hold_steps,
            last_in_kv: 0.0,
        }
    }

    /// The cap in force now.
    pub fn cap(&self) -> Cap {
        match self.mode {
            CapsMode::None => Cap::UNLIMITED,
            CapsMode::Static | CapsMode::Adaptive => Cap {
                requests: (self.current.floor() as u32).max(1),
                prompt_tokens: self.budget_base().map(|base| self.scaled(base)),
            },
        }
    }

    /// The multiplier of the token budget now (1 unless adaptive with a known KV capacity).
    pub fn token_scale(&self) -> f64 {
        self.scale
    }

    /// The configured token budget: `caps.max_prompt_tokens`, else the KV capacity.
    fn budget_base(&self) -> Option<u64> {
        self.max_prompt_tokens.or(self.kv_capacity)
    }

    fn scaled(&self, base: u64) -> u64 {
        if self.scale == 1.0 {
            base
        } else {
            (base as f64 * self.scale).round().max(1.0) as u64
        }
    }

    /// Whether the token budget adapts: adaptive mode, a scale range, and a replica reporting
    /// its KV capacity and usage.
    fn tokens_adapt(&self) -> bool {
        let t = &self.adaptive.token_scale;
        self.mode == CapsMode::Adaptive
            && t.min < t.max
            && self.kv_capacity.is_some()
            && self.kv.is_some()
    }

    /// Feeds the latest signals (`None`: no fresh scrape) and what the router holds there, and
    /// if adaptive moves the cap and the token budget one step. Static caps only learn the KV
    /// capacity.
    pub fn observe(&mut self, pressure: Option<Pressure>, booked: Booked) -> Steps {
        let Some(p) = pressure else {
            return Steps::HOLD;
        };
        if p.kv_capacity_tokens.is_some() {
            self.kv_capacity = p.kv_capacity_tokens;
        }
        if self.mode != CapsMode::Adaptive {
            return Steps::HOLD;
        }
        let a = &self.adaptive;
        let smooth = |old: Option<f64>, new: f64| match old {
            Some(old) => old + a.smoothing * (new - old),
            None => new,
        };
        self.kv = p.kv_usage.map(|kv| smooth(self.kv, kv)).or(self.kv);
        let waiting = smooth(self.waiting, p.waiting);
        self.waiting = Some(waiting);
        let preempted = match (self.preemptions, p.preemptions) {
            (Some(old), Some(new)) => new > old,
            _ => false,
        };
        self.preemptions = p.preemptions.or(self.preemptions);
        let tokens = if self.tokens_adapt() {
            self.step_tokens(&p, booked, preempted)
        } else {
            Step::Hold
        };
        Steps {
            requests: self.step_requests(&p),
            tokens,
        }
    }

    /// Moves the token budget's scale (see the type's doc).
    fn step_tokens(&mut self, p: &Pressure, booked: Booked, preempted: bool) -> Step {
        let (Some(capacity), Some(kv), Some(base)) =
            (self.kv_capacity, self.kv, self.budget_base())
        else {
            return Step::Hold;
        };
        let a = &self.adaptive;
        let t = &a.token_scale;
        let capacity = capacity as f64;
        let settled = self.since_move >= t.hold_steps;
        // Calibration, once the last move shows and under enough load to mean something: the
        // KV tokens the replica holds per token the router counts for the requests that hold
        // KV there (past their first byte; at least half of them), which measures the
        // estimate's offset and the output not generated yet, not a prefill backlog.
        // The scrape may be a step older than the count: of this step's count and the last
        // one, the smaller (the larger ratio: never an optimistic one while the load moves).
        let in_kv_now = if booked.requests > 0 && booked.started * 2 >= booked.requests {
            booked.tokens as f64 * f64::from(booked.started) / f64::from(booked.requests)
        } else {
            0.0
        };
        let in_kv = in_kv_now.min(self.last_in_kv);
        self.last_in_kv = in_kv_now;
        if let Some(kv_now) = p.kv_usage
            && settled
            && in_kv >= capacity / 8.0
        {
            let ratio = kv_now * capacity / in_kv;
            self.kv_per_counted = Some(match self.kv_per_counted {
                Some(old) => old + a.smoothing * (ratio - old),
                None => ratio,
            });
        }
        let waiting = self.waiting.unwrap_or(0.0);
        // Growth also needs the latest scrape under kv_low (smoothing lags a rise).
        let kv_rising = kv.max(p.kv_usage.unwrap_or(kv));
        let step = if !settled {
            Step::Hold
        } else if preempted || kv > a.kv_high {
            self.scale = (self.scale * t.decrease_factor).max(t.min);
            Step::Shrink
        } else if let Some(ratio) = self.kv_per_counted.filter(|r| *r > 0.0)
            && kv_rising < a.kv_low
            && waiting <= a.waiting_low
            && booked.token_bound
        {
            // Calibrated only, and never past the budget that, filled, would put the replica
            // at kv_low (KV usage swings: the band above is headroom).
            let ceiling = a.kv_low * capacity / (ratio * base as f64);
            let grown = (self.scale * (1.0 + t.step)).min(ceiling).min(t.max);
            if grown > self.scale {
                self.scale = grown;
                Step::Grow
            } else {
                Step::Hold
            }
        } else {
            Step::Hold
        };
        if step == Step::Hold {
            self.since_move = self.since_move.saturating_add(1);
        } else {
            self.since_move = 0;
        }
        step
    }

    /// Moves the request cap: down on a queueing replica (or KV pressure the token budget does
    /// not handle), up when both fall.
    fn step_requests(&mut self, p: &Pressure) -> Step {
        let a = &self.adaptive;
        // The token budget does the KV job, until its scale is at its floor.
        let kv = if self.tokens_adapt() && self.scale > a.token_scale.min {
            0.0
        } else {
            self.kv.unwrap_or(0.0)
        };
        let waiting = self.waiting.unwrap_or(0.0);
        let (min, max) = (f64::from(a.min_requests), f64::from(self.max_requests));
        if let Some(headroom) = a.queue_headroom.filter(|_| p.waiting > 0.0) {
            // The engine queues already: what it does not run yet, the router holds instead
            // (where it can still choose the replica).
            let running = (p.running + f64::from(headroom)).floor().max(min);
            self.current = self.current.min(running);
            return Step::Shrink;
        }
        if kv > a.kv_high || waiting > a.waiting_high {
            // With the budget on KV, a queue shrinks the cap to what the replica runs, never
            // below (a cap under it would only idle the replica and saw-tooth back up).
            let floor = if self.tokens_adapt() {
                p.running.floor().max(min)
            } else {
                min
            };
            let shrunk = (self.current * a.decrease_factor).floor().max(floor);
            self.current = self.current.min(shrunk);
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

    impl CapController {
        /// A step with nothing of the router's own in flight; the request cap's move.
        fn observe_now(&mut self, pressure: Option<Pressure>) -> Step {
            self.observe(pressure, Booked::default()).requests
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
        let step = c.observe_now(Some(Pressure {
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
            assert_eq!(c.observe_now(pressure(0.98, 10.0)), Step::Shrink);
            caps.push(c.cap().requests);
        }
        assert!(caps.windows(2).all(|w| w[1] <= w[0]), "monotone: {caps:?}");
        assert_eq!(c.cap().requests, 4, "bounded below");
        let mut steps = 0;
        while c.cap().requests < 64 {
            c.observe_now(pressure(0.1, 0.0));
            steps += 1;
            assert!(steps < 100);
        }
        assert_eq!(c.cap().requests, 64, "bounded above");
        c.observe_now(pressure(0.1, 0.0));
        assert_eq!(c.cap().requests, 64);
    }

    #[test]
    fn adaptive_holds_inside_the_band_and_ignores_a_single_spike() {
        let mut c = CapController::new(&adaptive());
        for _ in 0..5 {
            c.observe_now(pressure(0.5, 0.0));
        }
        // One scrape past kv_high is smoothed below it: no shrink.
        assert_ne!(c.observe_now(pressure(0.95, 0.0)), Step::Shrink);
        assert_eq!(c.cap().requests, 64);
        // Sustained mid-band pressure: the cap does not move either way.
        for _ in 0..20 {
            assert_eq!(c.observe_now(pressure(0.8, 1.0)), Step::Hold);
        }
        assert_eq!(c.cap().requests, 64);
        assert_eq!(c.observe_now(None), Step::Hold, "no fresh scrape: hold");
    }

    #[test]
    fn a_growing_replica_queue_shrinks_the_cap() {
        let mut c = CapController::new(&adaptive());
        let mut shrunk = false;
        for waiting in [0.0, 2.0, 4.0, 8.0, 16.0] {
            shrunk |= c.observe_now(pressure(0.2, waiting)) == Step::Shrink;
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
                ..Pressure::default()
            })
        };
        assert_eq!(c.observe_now(queueing(20.0, 3.0)), Step::Shrink);
        assert_eq!(c.cap().requests, 21, "running 20 plus 1, in one step");
        c.observe_now(queueing(30.0, 1.0));
        assert_eq!(c.cap().requests, 21, "never raised by a queueing engine");
        c.observe_now(queueing(1.0, 5.0));
        assert_eq!(c.cap().requests, 4, "bounded below");
        // No queue and low KV: grows back as before, once the smoothed queue is under
        // `waiting_low`, one step at a time.
        let mut steps = 0;
        while c.cap().requests == 4 {
            c.observe_now(queueing(4.0, 0.0));
            steps += 1;
            assert!(steps < 10, "grows again");
        }
        assert_eq!(c.cap().requests, 6);
    }

    /// KV capacity of the replicas in the token-budget tests.
    const CAPACITY: u64 = 10_000;

    /// Adaptive caps with the token budget on (thresholds of the GPU bench yaml), smoothing 1,
    /// no hold after a move.
    fn tokens() -> CapController {
        tokens_holding(0)
    }

    /// [`tokens`] holding `hold_steps` after each move.
    fn tokens_holding(hold_steps: u32) -> CapController {
        let mut config = adaptive();
        config.adaptive.token_scale.hold_steps = hold_steps;
        config.count_max_tokens = true;
        config.adaptive.kv_high = 0.97;
        config.adaptive.kv_low = 0.9;
        config.adaptive.waiting_high = 8.0;
        config.adaptive.waiting_low = 2.0;
        config.adaptive.smoothing = 1.0;
        CapController::new(&config)
    }

    /// A scrape of KV usage `kv`, queue `waiting` and the preemption counter `preempted`.
    fn scraped(kv: f64, waiting: f64, preempted: f64) -> Option<Pressure> {
        Some(Pressure {
            kv_usage: Some(kv),
            waiting,
            kv_capacity_tokens: Some(CAPACITY),
            preemptions: Some(preempted),
            ..Pressure::default()
        })
    }

    /// The router holds `tokens` there, turned away work for lack of tokens if `bound`.
    fn booked(tokens: u64, bound: bool) -> Booked {
        Booked {
            tokens,
            requests: 10,
            started: 10,
            token_bound: bound,
        }
    }

    fn budget(c: &CapController) -> u64 {
        c.cap().prompt_tokens.unwrap_or(0)
    }

    #[test]
    fn the_token_budget_grows_under_low_kv_only_while_it_holds_work_back() {
        let mut c = tokens();
        c.observe(scraped(0.3, 0.0, 0.0), booked(0, false));
        assert_eq!(budget(&c), CAPACITY, "starts at the configured budget");
        // Low KV but the budget turns nothing away: no reason to grow.
        let steps = c.observe(scraped(0.3, 0.0, 0.0), booked(5_000, false));
        assert_eq!((steps.tokens, budget(&c)), (Step::Hold, CAPACITY));
        // Low KV, but the replica queues: hold.
        let steps = c.observe(scraped(0.3, 5.0, 0.0), booked(CAPACITY, true));
        assert_eq!(steps.tokens, Step::Hold);
        // Low KV (the router over-counts: 0.5 KV tokens per counted one), short queue, the
        // budget full and turning work away: it grows, 5% a step...
        let steps = c.observe(scraped(0.5, 0.0, 0.0), booked(CAPACITY, true));
        assert_eq!((steps.tokens, budget(&c)), (Step::Grow, 10_500));
        let mut grown = vec![];
        for _ in 0..40 {
            let full = budget(&c);
            let kv = 0.5 * full as f64 / CAPACITY as f64;
            if c.observe(scraped(kv, 0.0, 0.0), booked(full, true)).tokens == Step::Grow {
                grown.push(budget(&c));
            }
        }
        // ...while KV stays under kv_low: 0.5 x scale < 0.9, then holds.
        let last = *grown.last().expect("grew");
        assert!(grown.windows(2).all(|w| w[1] > w[0]), "{grown:?}");
        assert!(
            (17_000..=19_400).contains(&last),
            "stops near kv_low: {last}"
        );
        assert!(c.token_scale() <= 2.0);
    }

    #[test]
    fn the_token_budget_never_grows_past_what_would_fill_the_kv_cache() {
        // Half the budget in flight, a big request turned away, and the replica at 0.43 KV
        // usage: 0.86 KV tokens per counted one. Filled, a budget past 0.9 / 0.86 = 1.047x
        // would put it above kv_low: it grows that far, not 5%, then holds.
        let mut c = tokens();
        for _ in 0..10 {
            c.observe(scraped(0.43, 0.0, 0.0), booked(CAPACITY / 2, true));
        }
        assert_eq!(budget(&c), 10_465);
        // A lagging scrape right after a move does not teach the ratio.
        let mut c = tokens_holding(2);
        c.observe(scraped(0.43, 0.0, 0.0), booked(CAPACITY / 2, true));
        assert_eq!(budget(&c), CAPACITY, "a first count to compare with");
        c.observe(scraped(0.43, 0.0, 0.0), booked(CAPACITY / 2, true));
        assert_eq!(budget(&c), 10_465);
        c.observe(scraped(0.05, 0.0, 0.0), booked(CAPACITY / 2, true));
        c.observe(scraped(0.05, 0.0, 0.0), booked(CAPACITY / 2, true));
        for _ in 0..10 {
            c.observe(scraped(0.43, 0.0, 0.0), booked(CAPACITY / 2, true));
        }
        assert_eq!(budget(&c), 10_465, "held, then at its ceiling");
    }

    #[test]
    fn the_token_budget_shrinks_on_kv_past_kv_high_and_on_a_preemption_within_bounds() {
        let mut c = tokens();
        let steps = c.observe(scraped(0.99, 0.0, 3.0), booked(CAPACITY, true));
        assert_eq!((steps.tokens, budget(&c)), (Step::Shrink, 9_000));
        let steps = c.observe(scraped(0.5, 0.0, 3.0), booked(CAPACITY, false));
        assert_eq!(steps.tokens, Step::Hold, "the counter did not move");
        let steps = c.observe(scraped(0.93, 0.0, 4.0), booked(CAPACITY, true));
        assert_eq!(
            (steps.tokens, budget(&c)),
            (Step::Shrink, 8_100),
            "a preemption, KV in the band"
        );
        for _ in 0..30 {
            c.observe(scraped(1.0, 0.0, 4.0), booked(CAPACITY, true));
        }
        assert_eq!(budget(&c), CAPACITY / 2, "bounded below by token_scale.min");
        let steps = c.observe(scraped(0.5, 0.0, 0.0), booked(CAPACITY, false));
        assert_eq!(steps.tokens, Step::Hold, "a counter reset is no preemption");
        for _ in 0..100 {
            c.observe(scraped(0.05, 0.0, 0.0), booked(CAPACITY, true));
        }
        assert_eq!(budget(&c), 2 * CAPACITY, "bounded above by token_scale.max");
    }

    #[test]
    fn the_token_budget_settles_on_a_lagging_replica_without_oscillating() {
        // The replica holds 0.8 KV tokens per counted one, and its scrape shows the budget of
        // two steps ago; the router always has work to hold back.
        let mut c = tokens_holding(AdaptiveConfig::default().token_scale.hold_steps);
        let mut history = vec![CAPACITY; 3];
        let mut moves = vec![];
        for _ in 0..200 {
            let seen = history[history.len() - 3];
            let kv = (0.8 * seen as f64 / CAPACITY as f64).min(1.0);
            let preempted = if kv >= 1.0 { 1.0 } else { 0.0 };
            let steps = c.observe(scraped(kv, 0.0, preempted), booked(budget(&c), true));
            if steps.tokens != Step::Hold {
                moves.push(steps.tokens);
            }
            history.push(budget(&c));
        }
        let turns = moves.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(turns <= 2, "settles: {moves:?}");
        let last = history[history.len() - 20..].to_vec();
        assert!(last.iter().all(|b| *b == last[0]), "steady: {last:?}");
        let kv = 0.8 * last[0] as f64 / CAPACITY as f64;
        assert!((0.9..=0.97).contains(&kv), "in the hold band: {kv}");
    }

    #[test]
    fn with_the_token_budget_on_kv_usage_moves_the_budget_not_the_request_cap() {
        let mut c = tokens();
        for _ in 0..5 {
            let steps = c.observe(scraped(0.99, 0.0, 0.0), booked(CAPACITY, true));
            assert_eq!(
                steps,
                Steps {
                    requests: Step::Grow,
                    tokens: Step::Shrink
                }
            );
        }
        assert_eq!(c.cap().requests, 64, "the request cap holds its ceiling");
        let steps = c.observe(scraped(0.5, 10.0, 0.0), booked(CAPACITY, false));
        assert_eq!(
            steps.requests,
            Step::Shrink,
            "a queueing replica still shrinks it"
        );
        // With the budget at its floor, KV pressure falls to the request cap again.
        for _ in 0..10 {
            c.observe(scraped(0.99, 0.0, 0.0), booked(CAPACITY, true));
        }
        assert_eq!(c.token_scale(), 0.5);
        let before = c.cap().requests;
        let steps = c.observe(scraped(0.99, 0.0, 0.0), booked(CAPACITY, true));
        assert_eq!(steps.requests, Step::Shrink);
        assert!(c.cap().requests < before);
    }

    #[test]
    fn without_a_kv_capacity_or_with_static_caps_the_token_budget_stays_as_configured() {
        let mut c = tokens();
        let no_capacity = Some(Pressure {
            kv_usage: Some(0.99),
            preemptions: Some(1.0),
            ..Pressure::default()
        });
        let steps = c.observe(no_capacity, booked(CAPACITY, true));
        assert_eq!(
            steps,
            Steps {
                requests: Step::Shrink,
                tokens: Step::Hold
            },
            "as before"
        );
        assert_eq!(c.cap().prompt_tokens, None);
        let mut config = adaptive();
        config.mode = CapsMode::Static;
        config.max_prompt_tokens = Some(7_000);
        let mut c = CapController::new(&config);
        for _ in 0..10 {
            c.observe(scraped(0.1, 0.0, 0.0), booked(7_000, true));
        }
        assert_eq!(budget(&c), 7_000);
        let mut config = adaptive();
        config.adaptive.token_scale.min = 1.0;
        config.adaptive.token_scale.max = 1.0;
        let mut c = CapController::new(&config);
        for _ in 0..10 {
            c.observe(scraped(0.99, 0.0, 0.0), booked(CAPACITY, true));
        }
        assert_eq!(budget(&c), CAPACITY, "scale range 1..1: off");
        assert!(
            c.cap().requests < 64,
            "and KV moves the request cap as before"
        );
    }

    #[test]
    fn calibration_counts_only_requests_holding_kv_and_growth_waits_for_it() {
        let mut c = tokens();
        // A burst: the budget full, but only 2 of 10 requests past their first byte (the rest
        // on their way or queued): KV usage says nothing yet, so no calibration, no growth.
        let burst = Booked {
            tokens: CAPACITY,
            requests: 10,
            started: 2,
            token_bound: true,
        };
        for _ in 0..10 {
            assert_eq!(c.observe(scraped(0.1, 0.0, 0.0), burst).tokens, Step::Hold);
        }
        assert_eq!(budget(&c), CAPACITY);
        // 6 of 10 started, KV at 0.5: 0.5 x capacity over 0.6 of the tokens counted, so 0.83
        // KV tokens per counted one (not 0.5): the ceiling is 0.9 / 0.833 = 1.08x.
        let half = Booked {
            started: 6,
            ..burst
        };
        for _ in 0..10 {
            c.observe(scraped(0.5, 0.0, 0.0), half);
        }
        assert_eq!(budget(&c), 10_800);
    }
}
