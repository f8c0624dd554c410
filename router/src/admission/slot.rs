//! One replica's slot in the gate: its health, the requests and tokens its permits hold (prompt
//! chunks shared by requests in flight counted once), and its cap.

use std::{cell::Cell, collections::HashMap};

use super::{caps::CapController, prefix::Prefix};

/// What the gate knows of one replica: health, what its permits hold, and its cap.
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) healthy: bool,
    pub(super) requests: u32,
    /// Requests bound here whose first byte came back (they hold KV there).
    pub(super) started: u32,
    pub(super) tokens: u64,
    /// Prompt chunks of the requests bound here, each counted once in `tokens`.
    chunks: HashMap<u64, Chunk>,
    pub(super) cap: CapController,
    /// Whether the token budget turned away a request the request cap had room for, since the
    /// controller last asked.
    token_refused: Cell<bool>,
}

/// A prompt chunk in flight on a replica.
struct Chunk {
    /// Requests bound here whose prompt has it.
    holders: u32,
    /// Its tokens, as counted in the slot's `tokens`.
    pub(super) tokens: u64,
    /// Whether a holder's first byte came back (its prefill ran: the chunk is in the replica's
    /// KV cache). Only then is it shared: a request sent before computes its own copy, and is
    /// charged for it.
    computed: bool,
}

impl Slot {
    /// A replica named `name` with nothing bound, under `cap`.
    pub(super) fn new(name: &str, healthy: bool, cap: CapController) -> Self {
        Self {
            name: name.to_owned(),
            healthy,
            requests: 0,
            started: 0,
            tokens: 0,
            chunks: HashMap::new(),
            cap,
            token_refused: Cell::new(false),
        }
    }

    /// Whether `need` more tokens (see [`Slot::need`]) fit here beside what is bound.
    pub(super) fn fits(&self, need: u64) -> bool {
        if !self.healthy {
            return false;
        }
        let cap = self.cap.cap();
        let fits = cap.fits(self.requests, self.tokens, need);
        if !fits && self.requests < cap.requests {
            self.token_refused.set(true);
        }
        fits
    }

    /// Whether the token budget turned a request away since the last call (see
    /// [`super::caps::Booked::token_bound`]); clears it.
    pub(super) fn take_token_bound(&self) -> bool {
        self.token_refused.replace(false)
    }

    /// Whether a request of `tokens` and `prefix` fits here.
    pub(super) fn fits_request(&self, tokens: u64, prefix: Option<&Prefix>) -> bool {
        self.fits(self.need(tokens, prefix))
    }

    /// Tokens a request of `tokens` (prompt and output budget) would add here: all but the
    /// chunks of its prompt that requests bound here already hold.
    pub(super) fn need(&self, tokens: u64, prefix: Option<&Prefix>) -> u64 {
        let Some(p) = prefix else {
            return tokens;
        };
        let shared = p.chunks.iter().filter(|c| self.shared(c)).count() as u64;
        tokens.saturating_sub(shared * p.chunk_tokens)
    }

    fn shared(&self, chunk: &u64) -> bool {
        self.chunks.get(chunk).is_some_and(|c| c.computed)
    }

    /// A request of `prefix` bound here sent its first byte: its chunks are computed.
    pub(super) fn computed(&mut self, prefix: &Prefix) {
        for c in &prefix.chunks {
            if let Some(chunk) = self.chunks.get_mut(c) {
                chunk.computed = true;
            }
        }
    }

    /// Counts one request of `tokens` and `prefix` here; returns the tokens it was charged
    /// outside the slot's chunks (for [`Slot::give_back`]).
    pub(super) fn take(&mut self, tokens: u64, prefix: Option<&Prefix>) -> u64 {
        self.requests += 1;
        let Some(p) = prefix else {
            self.tokens = self.tokens.saturating_add(tokens);
            return tokens;
        };
        let mut outside = tokens.saturating_sub(p.covered());
        for &c in &p.chunks {
            let young = self.chunks.contains_key(&c) && !self.shared(&c);
            let chunk = self.chunks.entry(c).or_insert_with(|| Chunk {
                holders: 0,
                tokens: p.chunk_tokens,
                computed: false,
            });
            if chunk.holders == 0 {
                self.tokens = self.tokens.saturating_add(chunk.tokens);
            } else if young {
                outside += p.chunk_tokens;
            }
            chunk.holders += 1;
        }
        self.tokens = self.tokens.saturating_add(outside);
        outside
    }

    /// Gives back what [`Slot::take`] counted, and the request's place among those `started`
    /// (past their first byte) if it was one.
    pub(super) fn give_back(&mut self, outside: u64, prefix: Option<&Prefix>, started: bool) {
        self.requests = self.requests.saturating_sub(1);
        if started {
            self.started = self.started.saturating_sub(1);
        }
        self.tokens = self.tokens.saturating_sub(outside);
        for c in prefix.map_or(&[][..], |p| &p.chunks) {
            if let Some(chunk) = self.chunks.get_mut(c) {
                chunk.holders -= 1;
                if chunk.holders == 0 {
                    self.tokens = self.tokens.saturating_sub(chunk.tokens);
                    self.chunks.remove(c);
                }
            }
        }
    }

    /// Whether a request of `prefix`'s family runs here, its prefill done (its prefix is
    /// cached).
    pub(super) fn runs(&self, prefix: Option<&Prefix>) -> bool {
        prefix
            .and_then(Prefix::family)
            .is_some_and(|f| self.shared(&f))
    }
}
