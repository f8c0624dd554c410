//! Runtime fault knobs shared by the HTTP layer and the accept loop.

use crate::config::FaultConfig;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Counts one held request down when it stops waiting (released or dropped).
struct HeldGuard<'a>(&'a AtomicUsize);

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A snapshot of the runtime fault settings (also the JSON of `GET/POST /admin/faults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FaultState {
    /// Fraction (0..=1) of completion requests that fail with `fail_status`.
    pub fail_fraction: f64,
    /// Status of injected failures (500 or 503 typically).
    pub fail_status: u16,
    /// Hold completion requests without answering while true.
    pub stall: bool,
    /// Abort streams after this many `data:` events.
    pub cut_stream_after: Option<usize>,
    /// Close accepted and open connections while true.
    pub refuse_connections: bool,
    /// Fraction (0..=1) of completion requests held `stall_ms` before any response byte.
    #[serde(default)]
    pub stall_fraction: f64,
    /// How long a request picked by `stall_fraction` is held, milliseconds.
    #[serde(default)]
    pub stall_ms: u64,
    /// Streams go silent (no further bytes, connection kept open) after this many events.
    #[serde(default)]
    pub stall_stream_after: Option<usize>,
    /// Fraction (0..=1) of completion requests whose connection is closed before any byte.
    #[serde(default)]
    pub close_fraction: f64,
}

/// A partial update of [`FaultState`]: the body of `POST /admin/faults` (absent = unchanged).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultUpdate {
    /// New failure fraction.
    pub fail_fraction: Option<f64>,
    /// New failure status.
    pub fail_status: Option<u16>,
    /// Start or stop stalling.
    pub stall: Option<bool>,
    /// New cut point; `0` or `null` with `clear_cut` turns it off.
    pub cut_stream_after: Option<usize>,
    /// Turn the stream cut off.
    #[serde(default)]
    pub clear_cut: bool,
    /// Start or stop refusing connections.
    pub refuse_connections: Option<bool>,
    /// With `refuse_connections: true`, stop refusing by itself after this many milliseconds
    /// (the admin endpoint is unreachable while refusing).
    pub refuse_for_ms: Option<u64>,
    /// Reset every knob to off before applying the rest.
    #[serde(default)]
    pub clear: bool,
    /// New fraction of requests held before headers.
    pub stall_fraction: Option<f64>,
    /// New hold time of `stall_fraction`, milliseconds.
    pub stall_ms: Option<u64>,
    /// New silent point of streams; `0` turns it off.
    pub stall_stream_after: Option<usize>,
    /// New fraction of connections closed before any response byte.
    pub close_fraction: Option<f64>,
}

/// Live fault knobs of one replica; cheap to check on every request.
#[derive(Debug)]
pub struct Faults {
    state: Mutex<FaultState>,
    any: AtomicBool,
    /// Requests waiting on the stall knob right now.
    held: AtomicUsize,
    rng: Mutex<SmallRng>,
    stall_tx: watch::Sender<bool>,
    refuse_tx: watch::Sender<bool>,
    ready_at: Mutex<Option<Instant>>,
    /// Fast path of [`Faults::is_ready`]: true once loading is over (or never started).
    ready: AtomicBool,
}

/// Faults applied inside one streaming response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct StreamFaults {
    /// Abort the connection after this many events.
    pub(crate) cut_after: Option<usize>,
    /// Go silent after this many events.
    pub(crate) stall_after: Option<usize>,
}

/// What the HTTP layer must do with an incoming completion request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve it normally after `delay`, with the stream faults.
    Serve {
        /// Hold the request this long before answering.
        delay: Option<Duration>,
        /// Faults inside the stream.
        stream: StreamFaults,
    },
    /// Answer with this error status.
    Fail(u16),
    /// Close the connection without answering.
    Close,
}

impl Faults {
    /// Builds the knobs from the startup config and an RNG seed.
    pub(crate) fn new(cfg: &FaultConfig, seed: u64) -> Self {
        let state = FaultState {
            fail_fraction: cfg.fail_fraction,
            fail_status: cfg.fail_status,
            stall: cfg.stall,
            cut_stream_after: cfg.cut_stream_after,
            refuse_connections: cfg.refuse_connections,
            ..FaultState::default()
        };
        let faults = Self {
            any: AtomicBool::new(false),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            stall_tx: watch::Sender::new(state.stall),
            refuse_tx: watch::Sender::new(state.refuse_connections),
            state: Mutex::new(state.clone()),
            ready_at: Mutex::new(None),
            ready: AtomicBool::new(true),
            held: AtomicUsize::new(0),
        };
        faults.store(state);
        faults
    }

    /// The current settings.
    pub fn state(&self) -> FaultState {
        self.state.lock().clone()
    }

    fn store(&self, s: FaultState) {
        let any = s.fail_fraction > 0.0
            || s.stall
            || s.cut_stream_after.is_some()
            || s.stall_fraction > 0.0
            || s.stall_stream_after.is_some()
            || s.close_fraction > 0.0;
        self.stall_tx.send_replace(s.stall);
        self.refuse_tx.send_replace(s.refuse_connections);
        *self.state.lock() = s;
        self.any.store(any, Ordering::Release);
    }

    fn modify(&self, f: impl FnOnce(&mut FaultState)) {
        let mut s = self.state();
        f(&mut s);
        self.store(s);
    }

    /// Fails this fraction (clamped to 0..=1) of completion requests with `status`.
    pub fn set_fail(&self, fraction: f64, status: u16) {
        self.modify(|s| {
            s.fail_fraction = if fraction.is_nan() {
                0.0
            } else {
                fraction.clamp(0.0, 1.0)
            };
            s.fail_status = status;
        });
    }

    /// Starts (true) or stops (false) holding completion requests without an answer.
    pub fn set_stall(&self, stall: bool) {
        self.modify(|s| s.stall = stall);
    }

    /// Cuts every stream after `events` data events; `None` turns the cut off.
    pub fn set_cut_stream_after(&self, events: Option<usize>) {
        self.modify(|s| s.cut_stream_after = events);
    }

    /// Starts (true) or stops (false) refusing connections; open connections are closed too.
    pub fn set_refuse_connections(&self, refuse: bool) {
        self.modify(|s| s.refuse_connections = refuse);
    }

    /// Holds this fraction (clamped to 0..=1) of completion requests for `hold` before any
    /// response byte.
    pub fn set_stall_fraction(&self, fraction: f64, hold: Duration) {
        self.modify(|s| {
            s.stall_fraction = clamp_fraction(fraction);
            s.stall_ms = hold.as_millis() as u64;
        });
    }

    /// Makes every stream go silent after `events` events; `None` turns it off.
    pub fn set_stall_stream_after(&self, events: Option<usize>) {
        self.modify(|s| s.stall_stream_after = events);
    }

    /// Closes the connection of this fraction (clamped to 0..=1) of completion requests
    /// before any response byte.
    pub fn set_close_fraction(&self, fraction: f64) {
        self.modify(|s| s.close_fraction = clamp_fraction(fraction));
    }

    /// Turns every knob off.
    pub fn clear(&self) {
        self.modify(|s| {
            *s = FaultState {
                fail_status: s.fail_status,
                ..FaultState::default()
            }
        });
    }

    /// Applies an admin update; an out-of-range value is an error naming the knob.
    pub(crate) fn apply(
        self: &std::sync::Arc<Self>,
        u: FaultUpdate,
    ) -> Result<(), crate::SimError> {
        for (name, value) in [
            ("fail_fraction", u.fail_fraction),
            ("stall_fraction", u.stall_fraction),
            ("close_fraction", u.close_fraction),
        ] {
            if let Some(f) = value {
                if !(0.0..=1.0).contains(&f) {
                    return Err(crate::SimError::OutOfRange {
                        field: name,
                        range: "0..=1",
                        got: f.to_string(),
                    });
                }
            }
        }
        if let Some(code) = u.fail_status {
            if !(400..=599).contains(&code) {
                return Err(crate::SimError::OutOfRange {
                    field: "fail_status",
                    range: "400..=599",
                    got: code.to_string(),
                });
            }
        }
        self.modify(|s| {
            if u.clear {
                *s = FaultState {
                    fail_status: s.fail_status,
                    ..FaultState::default()
                };
            }
            if let Some(f) = u.fail_fraction {
                s.fail_fraction = f;
            }
            if let Some(code) = u.fail_status {
                s.fail_status = code;
            }
            if let Some(stall) = u.stall {
                s.stall = stall;
            }
            if u.clear_cut || u.cut_stream_after == Some(0) {
                s.cut_stream_after = None;
            } else if u.cut_stream_after.is_some() {
                s.cut_stream_after = u.cut_stream_after;
            }
            if let Some(r) = u.refuse_connections {
                s.refuse_connections = r;
            }
            if let Some(f) = u.stall_fraction {
                s.stall_fraction = f;
            }
            if let Some(ms) = u.stall_ms {
                s.stall_ms = ms;
            }
            if let Some(n) = u.stall_stream_after {
                s.stall_stream_after = (n > 0).then_some(n);
            }
            if let Some(f) = u.close_fraction {
                s.close_fraction = f;
            }
        });
        if let (Some(true), Some(ms)) = (u.refuse_connections, u.refuse_for_ms) {
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                me.set_refuse_connections(false);
            });
        }
        Ok(())
    }

    /// Decides the fate of one completion request (random draw only when failures are on).
    pub(crate) fn verdict(&self) -> Verdict {
        if !self.any.load(Ordering::Acquire) {
            return Verdict::Serve {
                delay: None,
                stream: StreamFaults::default(),
            };
        }
        let s = self.state.lock().clone();
        let draw = |fraction: f64| fraction > 0.0 && self.rng.lock().random::<f64>() < fraction;
        if draw(s.close_fraction) {
            return Verdict::Close;
        }
        if draw(s.fail_fraction) {
            return Verdict::Fail(s.fail_status);
        }
        let delay = draw(s.stall_fraction).then(|| Duration::from_millis(s.stall_ms));
        Verdict::Serve {
            delay,
            stream: StreamFaults {
                cut_after: s.cut_stream_after,
                stall_after: s.stall_stream_after,
            },
        }
    }

    /// Waits while the stall knob is on (returns at once when it is off).
    pub(crate) async fn wait_unstalled(&self) {
        let mut rx = self.stall_tx.subscribe();
        if !*rx.borrow() {
            return;
        }
        self.held.fetch_add(1, Ordering::AcqRel);
        let _held = HeldGuard(&self.held);
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = rx.wait_for(|stalled| !*stalled).await;
    }

    /// Requests held by the stall knob right now (tests wait on this instead of sleeping).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// A receiver that sees `true` while connections must be refused.
    pub(crate) fn refuse_watch(&self) -> watch::Receiver<bool> {
        self.refuse_tx.subscribe()
    }

    /// Marks the replica "loading" until `at`.
    pub(crate) fn set_ready_at(&self, at: Instant) {
        *self.ready_at.lock() = Some(at);
        self.ready.store(false, Ordering::Release);
    }

    /// False while the simulated model is still loading.
    pub(crate) fn is_ready(&self) -> bool {
        if self.ready.load(Ordering::Acquire) {
            return true;
        }
        let ready = self.ready_at.lock().is_none_or(|at| Instant::now() >= at);
        if ready {
            self.ready.store(true, Ordering::Release);
        }
        ready
    }
}

/// A fraction clamped to 0..=1 (NaN is 0).
fn clamp_fraction(fraction: f64) -> f64 {
    if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    }
}
