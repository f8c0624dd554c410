//! The gate: a request waits here for a permit while every healthy replica of its model group is
//! at its cap; a freed slot goes to the head of a line whose group has room (the earliest such
//! head), whose dispatcher then routes it over the replicas with room. No HTTP: the dispatcher
//! turns rejections into responses.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use parking_lot::Mutex;
use tokio::{sync::oneshot, time::Instant};

use super::{
    caps::{Booked, Cap, CapController, Pressure, Steps},
    config::{CapsConfig, CapsMode, QueueConfig, QueuePlacement, QueuePolicy},
    group::Eligible,
    metrics::{AdmissionMetrics, priority_label},
    prefix::Prefix,
    queue::WaitQueue,
    slot::Slot,
};
use crate::replicas::ReplicaId;

/// Why a request got no permit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The queue (or the request's class) is at its maximum length.
    Full {
        /// Seconds the client should wait before retrying.
        retry_after_s: u64,
    },
    /// The request waited its class's maximum wait without a replica slot.
    Timeout {
        /// How long it waited.
        waited: Duration,
        /// Seconds the client should wait before retrying.
        retry_after_s: u64,
    },
}

/// The admission gate, shared by every request (cheap to clone).
#[derive(Clone)]
pub struct Admission {
    shared: Arc<Shared>,
}

struct Shared {
    queue: QueueConfig,
    caps: CapsConfig,
    metrics: AdmissionMetrics,
    state: Mutex<State>,
}

/// One waiting request.
struct Waiter {
    /// When it joined the queue.
    arrived: Instant,
    tokens: u64,
    /// The request's prompt chunks, if it has whole ones.
    prefix: Option<Arc<Prefix>>,
    priority: i64,
    /// Arrival order across every line.
    order: u64,
    /// The replica holding the request's cached prefix, if any (placement on admission), or
    /// its home (placement on arrival).
    prefer: Option<ReplicaId>,
    /// The grant: the replica the permit is bound to with the tokens it was charged there
    /// outside shared chunks, or `None` for a reservation that the dispatcher binds.
    grant: oneshot::Sender<Option<(ReplicaId, u64)>>,
}

/// The waiting line of one model group.
struct Line {
    eligible: Eligible,
    queue: WaitQueue<Waiter>,
}

struct State {
    /// One waiting line per model group.
    lines: HashMap<Option<String>, Line>,
    /// Requests waiting, all lines together.
    len: usize,
    next_order: u64,
    /// Permits granted and not yet bound to a replica: at most one at a time, so the replicas
    /// with room seen by its dispatcher are not taken by another one meanwhile.
    reserved: usize,
    slots: HashMap<ReplicaId, Slot>,
    /// The replica whose slot freed last, not yet handed on.
    freed: Option<ReplicaId>,
}

impl State {
    /// Whether a request of `tokens` may go now: a replica of its group has room, or none of
    /// the group is healthy (the gate lets it through: the dispatcher answers 503 at once
    /// instead of holding it for the whole wait).
    fn may_go(&self, eligible: &Eligible, tokens: u64, prefix: Option<&Prefix>) -> bool {
        let group = || self.slots.iter().filter(|(id, _)| eligible.accepts(**id));
        group().any(|(_, s)| s.fits_request(tokens, prefix)) || !group().any(|(_, s)| s.healthy)
    }

    /// Requests of `priority` waiting, all lines together.
    fn class_len(&self, priority: i64) -> usize {
        self.lines
            .values()
            .map(|l| l.queue.class_len(priority))
            .sum()
    }

    /// Takes waiter `seq` of `priority` out of `key`'s line, if it still waits there.
    fn remove(&mut self, key: &Option<String>, priority: i64, seq: u64) -> Option<Waiter> {
        let line = self.lines.get_mut(key)?;
        let waiter = line.queue.remove(priority, seq)?;
        if line.queue.is_empty() {
            self.lines.remove(key);
        }
        self.len -= 1;
        Some(waiter)
    }
}

impl Admission {
    /// A gate with `queue` ordering and bounds and `caps` per replica, counting into `metrics`.
    pub fn new(queue: QueueConfig, caps: CapsConfig, metrics: AdmissionMetrics) -> Self {
        let state = State {
            lines: HashMap::new(),
            len: 0,
            next_order: 0,
            reserved: 0,
            slots: HashMap::new(),
            freed: None,
        };
        Self {
            shared: Arc::new(Shared {
                queue,
                caps,
                metrics,
                state: Mutex::new(state),
            }),
        }
    }

    /// Whether replicas have caps (otherwise every request is admitted at once).
    pub fn enabled(&self) -> bool {
        self.shared.caps.mode != CapsMode::None
    }

    /// Whether the dispatcher places a request on its replica before it waits
    /// (`queue.placement: arrival`, with caps).
    pub fn places_at_arrival(&self) -> bool {
        self.enabled() && self.shared.queue.placement == QueuePlacement::Arrival
    }

    /// The queue settings.
    pub fn queue_config(&self) -> &QueueConfig {
        &self.shared.queue
    }

    /// The caps settings.
    pub fn caps_config(&self) -> &CapsConfig {
        &self.shared.caps
    }

    /// Brings the gate's replicas in line with `replicas` (id, name, healthy): new ones get a
    /// cap, gone ones are forgotten. Waiters are admitted if that made room.
    pub fn sync_replicas<'a>(
        &self,
        replicas: impl IntoIterator<Item = (ReplicaId, &'a str, bool)>,
    ) {
        if !self.enabled() {
            return;
        }
        let shared = &*self.shared;
        let mut st = shared.state.lock();
        let mut seen = Vec::new();
        for (id, name, healthy) in replicas {
            seen.push(id);
            let slot = st.slots.entry(id).or_insert_with(|| {
                let slot = Slot::new(name, healthy, CapController::new(&shared.caps));
                shared.publish_cap(&slot);
                slot
            });
            slot.healthy = healthy;
        }
        let gone: Vec<ReplicaId> = st
            .slots
            .keys()
            .filter(|id| !seen.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(slot) = st.slots.remove(&id) {
                for kind in ["requests", "prompt_tokens"] {
                    let _ = shared.metrics.cap.remove_label_values(&[&slot.name, kind]);
                }
                let _ = shared
                    .metrics
                    .token_scale
                    .remove_label_values(&[&slot.name]);
            }
        }
        shared.pump(&mut st);
    }

    /// Feeds replica `id`'s latest signals to its cap (`None`: no fresh scrape), with what the
    /// router holds there; waiters are admitted if the cap or the token budget grew.
    pub fn observe(&self, id: ReplicaId, pressure: Option<Pressure>) -> Option<Steps> {
        if !self.enabled() {
            return None;
        }
        let shared = &*self.shared;
        let mut st = shared.state.lock();
        let slot = st.slots.get_mut(&id)?;
        let booked = Booked {
            tokens: slot.tokens,
            requests: slot.requests,
            started: slot.started,
            token_bound: pressure.is_some() && slot.take_token_bound(),
        };
        let step = slot.cap.observe(pressure, booked);
        shared.publish_cap(slot);
        shared.pump(&mut st);
        Some(step)
    }

    /// The cap in force on replica `id`, if known.
    pub fn cap(&self, id: ReplicaId) -> Option<Cap> {
        let st = self.shared.state.lock();
        st.slots.get(&id).map(|s| s.cap.cap())
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.shared.state.lock().len
    }

    /// [`Admission::admit_to`] any replica.
    pub async fn admit(&self, priority: i64, tokens: u64) -> Result<Permit, Rejection> {
        self.admit_to(Eligible::any(), priority, tokens, || None)
            .await
    }

    /// Waits for a permit for a request of `priority` and `tokens` estimated prompt tokens that
    /// only the `eligible` replicas may serve: room elsewhere does not admit it. If it has to
    /// wait, `prefer` names the replica holding its cached prefix (a slot freed there may go
    /// to it first, see `queue.affinity_window`). Dropping the future (client gone) leaves the
    /// queue at once.
    pub async fn admit_to(
        &self,
        eligible: Eligible,
        priority: i64,
        tokens: u64,
        prefer: impl FnOnce() -> Option<ReplicaId>,
    ) -> Result<Permit, Rejection> {
        self.admit_in(eligible, priority, (tokens, None), prefer)
            .await
    }

    /// [`Admission::admit_to`] for a request of `(tokens, prefix)`: its prompt chunks shared
    /// with requests bound to a replica count once there, and under placement on arrival a
    /// slot on a replica goes first to one of its next `queue.affinity_window` waiters whose
    /// prompt family runs there.
    pub async fn admit_in(
        &self,
        eligible: Eligible,
        priority: i64,
        (tokens, prefix): (u64, Option<Arc<Prefix>>),
        prefer: impl FnOnce() -> Option<ReplicaId>,
    ) -> Result<Permit, Rejection> {
        let arrived = Instant::now();
        let shared = &self.shared;
        if !self.enabled() {
            return Ok(self.granted(priority, (tokens, prefix), arrived, false));
        }
        let label = priority_label(priority);
        let on_arrival = shared.queue.placement == QueuePlacement::Arrival;
        let (seq, rx, key) = {
            let mut st = shared.state.lock();
            let key = eligible.key().map(str::to_owned);
            let free = st.reserved == 0 && !st.lines.contains_key(&key);
            if !on_arrival && free && st.may_go(&eligible, tokens, prefix.as_deref()) {
                st.reserved += 1;
                drop(st);
                return Ok(self.granted(priority, (tokens, prefix), arrived, true));
            }
            let class_full = shared
                .queue
                .class_max_length(priority)
                .is_some_and(|max| st.class_len(priority) >= max);
            if st.len >= shared.queue.max_length || class_full {
                drop(st);
                shared.reject(&label, "queue_full");
                return Err(Rejection::Full {
                    retry_after_s: shared.queue.retry_after_s,
                });
            }
            let (tx, rx) = oneshot::channel();
            let prefer = if on_arrival || shared.queue.affinity_window > 0 {
                prefer()
            } else {
                None
            };
            let order = st.next_order;
            st.next_order += 1;
            let waiter = Waiter {
                arrived,
                tokens,
                prefix: prefix.clone(),
                priority,
                order,
                prefer,
                grant: tx,
            };
            let policy = shared.queue.policy;
            let line = st.lines.entry(key.clone()).or_insert_with(|| Line {
                eligible,
                queue: WaitQueue::new(policy),
            });
            let seq = line.queue.push(priority, waiter);
            st.len += 1;
            shared
                .metrics
                .queue_length
                .with_label_values(&[&label])
                .inc();
            if on_arrival {
                // Its home (or a replica nobody waits for) may have room now.
                shared.pump(&mut st);
            }
            (seq, rx, key)
        };
        let mut leave = Leave {
            shared: Arc::clone(shared),
            key: key.clone(),
            priority,
            seq,
            prefix: prefix.clone(),
            rx,
            armed: true,
        };
        let deadline = arrived + Duration::from_millis(shared.queue.max_wait_ms(priority));
        let outcome = tokio::time::timeout_at(deadline, &mut leave.rx).await;
        leave.armed = false;
        match outcome {
            Ok(Ok(target)) => Ok(self.granted_to(priority, (tokens, prefix), arrived, target)),
            Ok(Err(_)) | Err(_) => {
                let mut st = shared.state.lock();
                if st.remove(&key, priority, seq).is_none() {
                    // Granted just as the wait ran out: take it.
                    drop(st);
                    let target = leave.rx.try_recv().ok().flatten();
                    return Ok(self.granted_to(priority, (tokens, prefix), arrived, target));
                }
                drop(st);
                shared
                    .metrics
                    .queue_length
                    .with_label_values(&[&label])
                    .dec();
                shared.reject(&label, "queue_timeout");
                Err(Rejection::Timeout {
                    waited: arrived.elapsed(),
                    retry_after_s: shared.queue.retry_after_s,
                })
            }
        }
    }

    /// A permit granted from the queue: bound to `target` (placement on arrival, pinned there
    /// for its first attempt), else a reservation.
    fn granted_to(
        &self,
        priority: i64,
        ask: (u64, Option<Arc<Prefix>>),
        arrived: Instant,
        target: Option<(ReplicaId, u64)>,
    ) -> Permit {
        let mut permit = self.granted(priority, ask, arrived, true);
        if let Some((id, charged)) = target {
            permit.held = Held::Bound(id);
            permit.charged = charged;
            permit.pinned = true;
        }
        permit
    }

    fn granted(
        &self,
        priority: i64,
        (tokens, prefix): (u64, Option<Arc<Prefix>>),
        arrived: Instant,
        reserved: bool,
    ) -> Permit {
        let waited = arrived.elapsed();
        let label = priority_label(priority);
        let m = &self.shared.metrics;
        m.admitted.with_label_values(&[&label]).inc();
        m.queue_wait
            .with_label_values(&[&label])
            .observe(waited.as_secs_f64());
        Permit {
            shared: reserved.then(|| Arc::clone(&self.shared)),
            held: Held::Reserved,
            pinned: false,
            tokens,
            charged: 0,
            prefix,
            started: false,
            priority,
            waited,
        }
    }
}

/// A handle on the gate that does not keep it alive (background tasks).
pub(crate) struct WeakAdmission(Weak<Shared>);

impl WeakAdmission {
    /// The gate, if it still exists.
    pub(crate) fn upgrade(&self) -> Option<Admission> {
        self.0.upgrade().map(|shared| Admission { shared })
    }
}

impl Admission {
    /// A handle that does not keep the gate alive.
    pub(crate) fn downgrade(&self) -> WeakAdmission {
        WeakAdmission(Arc::downgrade(&self.shared))
    }
}

impl Shared {
    /// Hands freed room to the head of a line whose group has room, one unbound permit at a
    /// time. Among such heads the earliest goes first (under `priority`: the most urgent, then
    /// the earliest).
    /// Books a waiter of `priority` just taken off line `key`: the line goes if now empty, and
    /// the queue length (total and metric) drops by one.
    fn dequeued(&self, st: &mut State, key: &Option<String>, priority: i64) {
        if st.lines.get(key).is_some_and(|l| l.queue.is_empty()) {
            st.lines.remove(key);
        }
        st.len -= 1;
        self.metrics
            .queue_length
            .with_label_values(&[&priority_label(priority)])
            .dec();
    }

    fn pump(&self, st: &mut State) {
        if self.queue.placement == QueuePlacement::Arrival {
            return self.pump_homes(st);
        }
        let weight = |p: i64| self.queue.weight(p);
        let strict = self.queue.policy == QueuePolicy::Priority;
        while st.reserved == 0 {
            let next = st
                .lines
                .iter()
                .filter_map(|(key, line)| {
                    let head = line.queue.peek(&weight)?;
                    let rank = (if strict { head.priority } else { 0 }, head.order);
                    st.may_go(&line.eligible, head.tokens, head.prefix.as_deref())
                        .then_some((rank, key))
                })
                .min_by_key(|(rank, _)| *rank)
                .map(|(_, key)| key.clone());
            let Some(key) = next else {
                return;
            };
            let freed = st.freed.take();
            let slots = &st.slots;
            let Some(line) = st.lines.get_mut(&key) else {
                return;
            };
            // A slot freed on a replica goes first to a waiter whose cached prefix is there.
            let window = self.queue.affinity_window;
            let affine = freed
                .filter(|_| window > 0)
                .and_then(|id| slots.get(&id).map(|slot| (id, slot)))
                .and_then(|(id, slot)| {
                    line.queue.find(window, &weight, |w| {
                        w.prefer == Some(id) && slot.fits_request(w.tokens, w.prefix.as_deref())
                    })
                });
            let taken = match affine {
                Some((priority, seq)) => line.queue.remove(priority, seq).map(|w| (priority, w)),
                None => line.queue.pop(&weight),
            };
            let Some((priority, waiter)) = taken else {
                return;
            };
            self.dequeued(st, &key, priority);
            // If the waiter's future is being dropped right now, the send fails; the reservation
            // is counted anyway and its `Leave` (or its timeout branch) hands it back.
            let _ = waiter.grant.send(None);
            st.reserved += 1;
        }
    }

    /// [`Shared::pump`] under placement on arrival: while a replica with room has a waiter to
    /// take, the earliest such grant goes, bound at once (no reservation). See
    /// [`Shared::choose_for`] for whom a replica takes. A group with no healthy replica lets
    /// its head through unbound (the dispatcher answers 503 at once).
    fn pump_homes(&self, st: &mut State) {
        let weight = |p: i64| self.queue.weight(p);
        let strict = self.queue.policy == QueuePolicy::Priority;
        let now = Instant::now();
        loop {
            // (rank of the waiter, sent away from its home), line, priority, ticket, target.
            type Grant = (
                (i64, u64, bool),
                Option<String>,
                i64,
                u64,
                Option<ReplicaId>,
            );
            let mut best: Option<Grant> = None;
            for (key, line) in &st.lines {
                let group: Vec<(ReplicaId, &Slot)> = st
                    .slots
                    .iter()
                    .filter(|(id, s)| s.healthy && line.eligible.accepts(**id))
                    .map(|(id, s)| (*id, s))
                    .collect();
                let open: Vec<&(ReplicaId, &Slot)> =
                    group.iter().filter(|(_, s)| s.fits(0)).collect();
                if !group.is_empty() && open.is_empty() {
                    continue;
                }
                let waiting = line.queue.in_turn(self.queue.max_length, &weight);
                let home = |w: &Waiter| w.prefer.filter(|h| group.iter().any(|(id, _)| id == h));
                let mut offer = |p: i64, seq: u64, w: &Waiter, target: Option<ReplicaId>| {
                    let away = target.is_some() && target != home(w);
                    let rank = (if strict { w.priority } else { 0 }, w.order, away);
                    if best.as_ref().is_none_or(|b| rank < b.0) {
                        best = Some((rank, key.clone(), p, seq, target));
                    }
                };
                if group.is_empty() {
                    if let Some(&(p, seq, w)) = waiting.first() {
                        offer(p, seq, w, None);
                    }
                    continue;
                }
                for &&(id, slot) in &open {
                    if let Some((p, seq, w)) = self.choose_for(id, slot, &waiting, &home, now) {
                        offer(p, seq, w, Some(id));
                    }
                }
            }
            let Some((_, key, priority, seq, target)) = best else {
                return;
            };
            let Some(line) = st.lines.get_mut(&key) else {
                return;
            };
            let Some(waiter) = line.queue.take(priority, seq, &weight) else {
                return;
            };
            self.dequeued(st, &key, priority);
            let bound = target.and_then(|id| st.slots.get_mut(&id).map(|slot| (id, slot)));
            let grant = match bound {
                Some((id, slot)) => Some((id, slot.take(waiter.tokens, waiter.prefix.as_deref()))),
                None => {
                    st.reserved += 1;
                    None
                }
            };
            // The waiter's `Leave` holds the receiver while it is queued: this cannot fail.
            let _ = waiter.grant.send(grant);
        }
    }

    /// Whom replica `id` (with room) takes from `waiting` (in turn): its own next waiter (the
    /// first whose home it is; a big one that does not fit yet keeps the room for itself), or
    /// before it one of its next `queue.affinity_window` waiters whose prompt family runs
    /// there (a likely prefix hit). But a waiter that fits and arrived more than
    /// `queue.home_tolerance_ms` before that one (or is more urgent under `priority`) goes
    /// first, wherever its home: affinity never costs a request more than the tolerance over
    /// first come, first served, and a replica nobody calls home never idles.
    fn choose_for<'w>(
        &self,
        id: ReplicaId,
        slot: &Slot,
        waiting: &[(i64, u64, &'w Waiter)],
        home: &impl Fn(&Waiter) -> Option<ReplicaId>,
        now: Instant,
    ) -> Option<(i64, u64, &'w Waiter)> {
        let fcfs = self.queue.policy == QueuePolicy::Fcfs;
        let window = self.queue.affinity_window;
        let fits = |w: &Waiter| slot.fits_request(w.tokens, w.prefix.as_deref());
        let mut own_head: Option<(i64, u64, &Waiter)> = None;
        let mut affine = None;
        let own = waiting.iter().filter(|(_, _, w)| home(w) == Some(id));
        for (i, &(p, seq, w)) in own.enumerate() {
            let head = *own_head.get_or_insert((p, seq, w));
            if i >= window || (!fcfs && p != head.0) {
                break;
            }
            if slot.runs(w.prefix.as_deref()) && fits(w) {
                affine = Some((p, seq, w));
                break;
            }
        }
        let mine = affine.or(own_head.filter(|(_, _, w)| fits(w)));
        let oldest = waiting.iter().copied().find(|(_, _, w)| fits(w));
        let tolerance = Duration::from_millis(self.queue.home_tolerance_ms);
        let overdue = |o: &Waiter, mine: Option<&Waiter>| match mine {
            None => now.saturating_duration_since(o.arrived) > tolerance,
            Some(m) => {
                (self.queue.policy == QueuePolicy::Priority && o.priority < m.priority)
                    || now.saturating_duration_since(o.arrived)
                        > now.saturating_duration_since(m.arrived) + tolerance
            }
        };
        match (mine, oldest) {
            (Some(mine), Some(o)) if overdue(o.2, Some(mine.2)) => Some(o),
            (Some(mine), _) => Some(mine),
            (None, Some(o)) if overdue(o.2, own_head.map(|h| h.2)) => Some(o),
            _ => None,
        }
    }

    fn reject(&self, label: &str, reason: &str) {
        self.metrics
            .rejected
            .with_label_values(&[label, reason])
            .inc();
    }

    fn publish_cap(&self, slot: &Slot) {
        let cap = slot.cap.cap();
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.metrics
            .cap
            .with_label_values(&[&slot.name, "requests"])
            .set(clamp(u64::from(cap.requests)));
        let tokens = cap.prompt_tokens.map_or(-1, clamp);
        self.metrics
            .cap
            .with_label_values(&[&slot.name, "prompt_tokens"])
            .set(tokens);
        self.metrics
            .token_scale
            .with_label_values(&[&slot.name])
            .set(slot.cap.token_scale());
    }

    /// Gives back what a permit held (a reservation or a replica slot) and admits the next.
    fn release(&self, held: Held, charged: u64, prefix: Option<&Prefix>, started: bool) {
        let mut st = self.state.lock();
        match held {
            Held::Reserved => st.reserved = st.reserved.saturating_sub(1),
            Held::Bound(id) => {
                if let Some(slot) = st.slots.get_mut(&id) {
                    slot.give_back(charged, prefix, started);
                }
                st.freed = Some(id);
            }
            Held::Released => return,
        }
        self.pump(&mut st);
    }
}

/// Takes a waiter out of the queue if its future is dropped while it waits (client gone), or
/// hands back a permit granted to it that it never took.
struct Leave {
    shared: Arc<Shared>,
    key: Option<String>,
    priority: i64,
    seq: u64,
    prefix: Option<Arc<Prefix>>,
    /// The grant's receiver, read here if the waiter goes after it was granted.
    rx: oneshot::Receiver<Option<(ReplicaId, u64)>>,
    armed: bool,
}

impl Drop for Leave {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let shared = &self.shared;
        let mut st = shared.state.lock();
        if st.remove(&self.key, self.priority, self.seq).is_some() {
            drop(st);
            let label = priority_label(self.priority);
            shared
                .metrics
                .queue_length
                .with_label_values(&[&label])
                .dec();
            shared.reject(&label, "disconnected");
        } else {
            match self.rx.try_recv() {
                Ok(Some((id, charged))) => {
                    if let Some(slot) = st.slots.get_mut(&id) {
                        slot.give_back(charged, self.prefix.as_deref(), false);
                    }
                    st.freed = Some(id);
                }
                _ => st.reserved = st.reserved.saturating_sub(1),
            }
            shared.pump(&mut st);
        }
    }
}

/// What a permit holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Granted, not yet on a replica.
    Reserved,
    /// Counted against a replica's cap.
    Bound(ReplicaId),
    /// Nothing (no caps, or given back).
    Released,
}

/// The right to send one request: first a reservation, then a slot on the replica it is bound
/// to. Held like the load guard, until the response ends; dropping it frees the slot.
pub struct Permit {
    shared: Option<Arc<Shared>>,
    held: Held,
    /// Bound by the gate (placement on arrival): only that replica has room for it until the
    /// dispatcher binds it (its first attempt).
    pinned: bool,
    /// Prompt and output budget.
    tokens: u64,
    /// What the bound replica counts for it outside shared chunks.
    charged: u64,
    prefix: Option<Arc<Prefix>>,
    /// Its first byte came back (counted in its slot's `started`).
    started: bool,
    priority: i64,
    waited: Duration,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("held", &self.held)
            .field("priority", &self.priority)
            .field("waited", &self.waited)
            .finish()
    }
}

impl Permit {
    /// A permit that holds nothing (no caps, or tests).
    pub fn free(priority: i64) -> Self {
        Self {
            shared: None,
            held: Held::Released,
            pinned: false,
            tokens: 0,
            charged: 0,
            prefix: None,
            started: false,
            priority,
            waited: Duration::ZERO,
        }
    }

    /// The filter the dispatcher applies to candidates: whether replica `id` has room for
    /// this request (always true without caps, and for the replica it is already bound to).
    pub fn has_room(&self, id: ReplicaId) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        if self.held == Held::Bound(id) {
            return true;
        }
        if self.pinned {
            return false;
        }
        let st = shared.state.lock();
        st.slots
            .get(&id)
            .is_none_or(|s| s.fits_request(self.tokens, self.prefix.as_deref()))
    }

    /// Counts the request against replica `id` (moving it there on a retry).
    pub fn bind(&mut self, id: ReplicaId) {
        self.pinned = false;
        let Some(shared) = &self.shared else {
            return;
        };
        if self.held == Held::Bound(id) {
            return;
        }
        let mut st = shared.state.lock();
        match self.held {
            Held::Reserved => st.reserved = st.reserved.saturating_sub(1),
            Held::Bound(old) => {
                if let Some(slot) = st.slots.get_mut(&old) {
                    slot.give_back(self.charged, self.prefix.as_deref(), self.started);
                }
            }
            Held::Released => {}
        }
        self.started = false;
        if let Some(slot) = st.slots.get_mut(&id) {
            self.charged = slot.take(self.tokens, self.prefix.as_deref());
        }
        self.held = Held::Bound(id);
        shared.pump(&mut st);
    }

    /// The replica the permit counts against, if bound.
    pub fn bound_to(&self) -> Option<ReplicaId> {
        match self.held {
            Held::Bound(id) => Some(id),
            _ => None,
        }
    }

    /// The request's first byte came back from its replica (its prefill ran): it holds KV
    /// there now, and its prompt chunks count as cached, for requests that share them.
    pub fn first_byte(&mut self) {
        let (Some(shared), Held::Bound(id)) = (&self.shared, self.held) else {
            return;
        };
        if self.started {
            return;
        }
        self.started = true;
        let mut st = shared.state.lock();
        if let Some(slot) = st.slots.get_mut(&id) {
            slot.started += 1;
            if let Some(prefix) = &self.prefix {
                slot.computed(prefix);
            }
        }
        shared.pump(&mut st);
    }

    /// How long the request waited in the queue.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The request's priority.
    pub fn priority(&self) -> i64 {
        self.priority
    }
}

impl crate::body::HeldUntilEnd for Permit {
    fn first_byte(&mut self) {
        Permit::first_byte(self);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let held = std::mem::replace(&mut self.held, Held::Released);
        if let Some(shared) = &self.shared {
            shared.release(held, self.charged, self.prefix.as_deref(), self.started);
        }
    }
}
