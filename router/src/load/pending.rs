//! Requests dispatched to a replica and not yet past their first byte: the prefill work queued
//! there. Counted at dispatch, released at first byte or on any ending (see `LoadGuard`).

use std::{sync::OnceLock, time::Instant};

use parking_lot::Mutex;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // A minute before the first use (where the clock allows), so a request a test dates back
    // a little still counts its age.
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(std::time::Duration::from_secs(60))
            .unwrap_or(now)
    })
}

fn micros(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_micros()).unwrap_or(u64::MAX)
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    requests: u64,
    prefill_tokens: u64,
    prompt_tokens: u64,
    started_us: u64,
}

/// Totals of one replica's pending requests, updated together so reads are consistent.
#[derive(Debug, Default)]
pub struct PendingLoad {
    totals: Mutex<Totals>,
}

/// What one pending request added, so exactly that is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingTicket {
    prefill_tokens: u64,
    prompt_tokens: u64,
    started_us: u64,
}

/// A consistent read of a replica's pending requests.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PendingSnapshot {
    /// Requests not yet past first byte.
    pub requests: u64,
    /// Their estimated uncached prompt tokens (prefill still to do).
    pub prefill_tokens: u64,
    /// Their whole prompt tokens.
    pub prompt_tokens: u64,
    /// Mean seconds they have waited so far.
    pub mean_age_s: f64,
}

impl PendingSnapshot {
    /// Prefill tokens still to do, at `s_per_token` seconds of prefill per token: the oldest
    /// request has been prefilling for about the requests' mean age, so that much of the queue
    /// is done already, but at most one request's share of it (the rest waits behind it).
    pub fn undone_prefill_tokens(&self, s_per_token: f64) -> u64 {
        if self.requests == 0 || !(s_per_token > 0.0 && self.mean_age_s > 0.0) {
            return self.prefill_tokens;
        }
        let head = self.prefill_tokens / self.requests;
        let done = (self.mean_age_s / s_per_token).min(head as f64);
        // Truncation leaves a partial token undone; `done` <= `head` <= `prefill_tokens`.
        self.prefill_tokens - done as u64
    }
}

impl PendingLoad {
    /// Counts a request with `prefill_tokens` uncached out of `prompt_tokens`, sent at `now`.
    pub fn add(&self, prefill_tokens: u64, prompt_tokens: u64, now: Instant) -> PendingTicket {
        let ticket = PendingTicket {
            prefill_tokens,
            prompt_tokens,
            started_us: micros(now),
        };
        let mut t = self.totals.lock();
        t.requests += 1;
        t.prefill_tokens += prefill_tokens;
        t.prompt_tokens += prompt_tokens;
        t.started_us = t.started_us.saturating_add(ticket.started_us);
        ticket
    }

    /// Removes what `ticket` added.
    pub fn remove(&self, ticket: PendingTicket) {
        let mut t = self.totals.lock();
        t.requests = t.requests.saturating_sub(1);
        t.prefill_tokens = t.prefill_tokens.saturating_sub(ticket.prefill_tokens);
        t.prompt_tokens = t.prompt_tokens.saturating_sub(ticket.prompt_tokens);
        t.started_us = t.started_us.saturating_sub(ticket.started_us);
    }

    /// The totals and the mean wait so far, at `now`.
    pub fn snapshot(&self, now: Instant) -> PendingSnapshot {
        let t = *self.totals.lock();
        let mean_age_s = t
            .started_us
            .checked_div(t.requests)
            .map_or(0.0, |mean_start| {
                micros(now).saturating_sub(mean_start) as f64 / 1e6
            });
        PendingSnapshot {
            requests: t.requests,
            prefill_tokens: t.prefill_tokens,
            prompt_tokens: t.prompt_tokens,
            mean_age_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn add_remove_and_mean_age() {
        let p = PendingLoad::default();
        let t0 = Instant::now();
        let a = p.add(100, 1000, t0);
        let b = p.add(50, 60, t0 + Duration::from_secs(2));
        let s = p.snapshot(t0 + Duration::from_secs(3));
        assert_eq!(
            (s.requests, s.prefill_tokens, s.prompt_tokens),
            (2, 150, 1060)
        );
        assert!((s.mean_age_s - 2.0).abs() < 1e-3, "{}", s.mean_age_s);
        p.remove(a);
        let s = p.snapshot(t0 + Duration::from_secs(3));
        assert_eq!((s.requests, s.prefill_tokens), (1, 50));
        assert!((s.mean_age_s - 1.0).abs() < 1e-3);
        p.remove(b);
        assert_eq!(p.snapshot(t0).requests, 0);
        assert_eq!(p.snapshot(t0).mean_age_s, 0.0);
    }

    #[test]
    fn the_queue_head_drains_while_it_waits_by_at_most_one_request() {
        let p = PendingLoad::default();
        let t0 = Instant::now();
        // Undone tokens at `ms` after t0, at 1 ms of prefill per token (to the token: the
        // float division may land just under a whole token).
        let undone = |ms: u64| {
            p.snapshot(t0 + Duration::from_millis(ms))
                .undone_prefill_tokens(1e-3)
        };
        let near = |got: u64, want: u64| got.abs_diff(want) <= 1;
        assert_eq!(undone(0), 0, "nothing pending");
        let _a = p.add(2000, 2000, t0);
        assert_eq!(undone(0), 2000, "just sent");
        // After 500 ms a quarter of it is done, after 5 s all of it.
        assert!(near(undone(500), 1500), "{}", undone(500));
        assert_eq!(undone(5000), 0);
        let no_speed = p.snapshot(t0 + Duration::from_millis(500));
        assert_eq!(
            no_speed.undone_prefill_tokens(0.0),
            2000,
            "no speed, no credit"
        );
        // With a second request queued, only the head's share (half) can be done.
        let _b = p.add(2000, 2000, t0 + Duration::from_millis(1000));
        assert!(near(undone(1500), 3000), "{}", undone(1500));
        assert_eq!(undone(9000), 2000);
    }
}
