//! The waiting line itself: which waiting entry goes next under `fcfs`, `priority` or
//! `priority_round_robin`. Pure data, no time and no I/O.

use std::collections::{BTreeMap, VecDeque};

use super::config::QueuePolicy;

/// One priority class: its entries in arrival order and its round-robin credit.
#[derive(Debug)]
struct Class<T> {
    entries: VecDeque<(u64, T)>,
    credit: i64,
}

/// Waiting entries grouped by priority class, popped in the order of the queue policy.
#[derive(Debug)]
pub struct WaitQueue<T> {
    policy: QueuePolicy,
    classes: BTreeMap<i64, Class<T>>,
    next_seq: u64,
    len: usize,
}

impl<T> WaitQueue<T> {
    /// An empty queue ordered by `policy`.
    pub fn new(policy: QueuePolicy) -> Self {
        Self {
            policy,
            classes: BTreeMap::new(),
            next_seq: 0,
            len: 0,
        }
    }

    /// Entries waiting, all classes together.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries of `priority` waiting.
    pub fn class_len(&self, priority: i64) -> usize {
        self.classes.get(&priority).map_or(0, |c| c.entries.len())
    }

    /// Appends `item` to its class; returns its ticket for [`WaitQueue::remove`].
    pub fn push(&mut self, priority: i64, item: T) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.classes
            .entry(priority)
            .or_insert_with(|| Class {
                entries: VecDeque::new(),
                credit: 0,
            })
            .entries
            .push_back((seq, item));
        self.len += 1;
        seq
    }

    /// The class whose head goes next. Round robin is smooth weighted round robin over the
    /// classes that wait: each turn every class gains its weight and the richest (ties: the
    /// lower priority value) is served and pays the sum of the weights.
    fn next_class(&self, weight: &impl Fn(i64) -> u32) -> Option<i64> {
        match self.policy {
            QueuePolicy::Priority => self.classes.keys().next().copied(),
            QueuePolicy::Fcfs => self
                .classes
                .iter()
                .filter_map(|(p, c)| c.entries.front().map(|(seq, _)| (*seq, *p)))
                .min()
                .map(|(_, p)| p),
            QueuePolicy::PriorityRoundRobin => self
                .classes
                .iter()
                .map(|(p, c)| (c.credit + i64::from(weight(*p)), std::cmp::Reverse(*p)))
                .max()
                .map(|(_, std::cmp::Reverse(p))| p),
        }
    }

    /// The entry that goes next, without removing it.
    pub fn peek(&self, weight: &impl Fn(i64) -> u32) -> Option<&T> {
        let class = self.next_class(weight)?;
        self.classes
            .get(&class)?
            .entries
            .front()
            .map(|(_, item)| item)
    }

    /// Removes and returns the entry that goes next, with its priority.
    pub fn pop(&mut self, weight: &impl Fn(i64) -> u32) -> Option<(i64, T)> {
        let chosen = self.next_class(weight)?;
        if self.policy == QueuePolicy::PriorityRoundRobin {
            let total: i64 = self.classes.keys().map(|p| i64::from(weight(*p))).sum();
            for (p, class) in &mut self.classes {
                class.credit += i64::from(weight(*p));
            }
            if let Some(class) = self.classes.get_mut(&chosen) {
                class.credit -= total;
            }
        }
        let class = self.classes.get_mut(&chosen)?;
        let (_, item) = class.entries.pop_front()?;
        if class.entries.is_empty() {
            self.classes.remove(&chosen);
        }
        self.len -= 1;
        Some((chosen, item))
    }

    /// The first entry among the next `window` in turn (round robin: the next one only) that
    /// `wanted` accepts, as its priority and ticket for [`WaitQueue::remove`].
    pub fn find(
        &self,
        window: usize,
        weight: &impl Fn(i64) -> u32,
        wanted: impl Fn(&T) -> bool,
    ) -> Option<(i64, u64)> {
        let in_turn: Vec<(i64, u64, &T)> = match self.policy {
            QueuePolicy::PriorityRoundRobin => {
                let class = self.next_class(weight)?;
                let (seq, item) = self.classes.get(&class)?.entries.front()?;
                vec![(class, *seq, item)]
            }
            QueuePolicy::Priority => flatten(self.classes.iter().collect(), window),
            QueuePolicy::Fcfs => self.by_arrival(window),
        };
        in_turn
            .into_iter()
            .find(|(_, _, item)| wanted(item))
            .map(|(p, s, _)| (p, s))
    }

    /// Up to `window` entries in turn, with their priority and ticket: all classes merged by
    /// arrival (`fcfs`), the most urgent class first (`priority`), or the classes richest in
    /// round-robin credit first (`priority_round_robin`, an approximation of the turns to come).
    pub fn in_turn(&self, window: usize, weight: &impl Fn(i64) -> u32) -> Vec<(i64, u64, &T)> {
        match self.policy {
            QueuePolicy::Priority => flatten(self.classes.iter().collect(), window),
            QueuePolicy::PriorityRoundRobin => {
                let mut classes: Vec<_> = self.classes.iter().collect();
                classes.sort_by_key(|(p, c)| {
                    (std::cmp::Reverse(c.credit + i64::from(weight(**p))), **p)
                });
                flatten(classes, window)
            }
            QueuePolicy::Fcfs => self.by_arrival(window),
        }
    }

    /// The first `window` entries of all classes merged by arrival (ticket order).
    fn by_arrival(&self, window: usize) -> Vec<(i64, u64, &T)> {
        let mut all: Vec<(i64, u64, &T)> = self
            .classes
            .iter()
            .flat_map(|(p, c)| c.entries.iter().take(window).map(move |(s, t)| (*p, *s, t)))
            .collect();
        all.sort_unstable_by_key(|(_, s, _)| *s);
        all.truncate(window);
        all
    }

    /// Removes entry `seq` of `priority` as if it were served in turn: under round robin its
    /// class pays for the turn, as in [`WaitQueue::pop`].
    pub fn take(&mut self, priority: i64, seq: u64, weight: &impl Fn(i64) -> u32) -> Option<T> {
        if self.policy == QueuePolicy::PriorityRoundRobin && self.classes.contains_key(&priority) {
            let total: i64 = self.classes.keys().map(|p| i64::from(weight(*p))).sum();
            for (p, class) in &mut self.classes {
                class.credit += i64::from(weight(*p));
            }
            if let Some(class) = self.classes.get_mut(&priority) {
                class.credit -= total;
            }
        }
        self.remove(priority, seq)
    }

    /// Removes the entry with ticket `seq` (a waiter that left), if it still waits.
    pub fn remove(&mut self, priority: i64, seq: u64) -> Option<T> {
        let class = self.classes.get_mut(&priority)?;
        let at = class.entries.iter().position(|(s, _)| *s == seq)?;
        let (_, item) = class.entries.remove(at)?;
        if class.entries.is_empty() {
            self.classes.remove(&priority);
        }
        self.len -= 1;
        Some(item)
    }
}

/// The first `window` entries of `classes`, one class after the other.
fn flatten<'a, T>(classes: Vec<(&'a i64, &'a Class<T>)>, window: usize) -> Vec<(i64, u64, &'a T)> {
    classes
        .into_iter()
        .flat_map(|(p, c)| c.entries.iter().map(move |(s, t)| (*p, *s, t)))
        .take(window)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut WaitQueue<&'static str>, weight: impl Fn(i64) -> u32) -> Vec<&'static str> {
        std::iter::from_fn(|| q.pop(&weight).map(|(_, x)| x)).collect()
    }

    fn filled(policy: QueuePolicy) -> WaitQueue<&'static str> {
        let mut q = WaitQueue::new(policy);
        for (p, x) in [(1, "a1"), (0, "b0"), (1, "c1"), (0, "d0"), (2, "e2")] {
            q.push(p, x);
        }
        q
    }

    #[test]
    fn fcfs_ignores_priority() {
        let mut q = filled(QueuePolicy::Fcfs);
        assert_eq!(q.len(), 5);
        assert_eq!(drain(&mut q, |_| 1), ["a1", "b0", "c1", "d0", "e2"]);
        assert!(q.is_empty());
    }

    #[test]
    fn priority_is_strict_and_fcfs_within_a_class() {
        let mut q = filled(QueuePolicy::Priority);
        assert_eq!(q.peek(&|_| 1), Some(&"b0"));
        assert_eq!(drain(&mut q, |_| 1), ["b0", "d0", "a1", "c1", "e2"]);
    }

    #[test]
    fn round_robin_serves_each_class_its_weighted_share() {
        let mut q = WaitQueue::new(QueuePolicy::PriorityRoundRobin);
        for i in 0..300 {
            q.push(i % 3, i);
        }
        let weight = |p: i64| [3, 2, 1][p as usize];
        let mut served = [0usize; 3];
        for _ in 0..60 {
            let (p, _) = q.pop(&weight).unwrap();
            served[p as usize] += 1;
        }
        assert_eq!(served, [30, 20, 10], "shares 3:2:1 while all classes wait");
        let mut last_turn = [0usize; 3];
        for turn in 0..60 {
            let (p, _) = q.pop(&weight).unwrap();
            last_turn[p as usize] = turn;
        }
        assert!(
            last_turn[2] >= 54,
            "the lightest class is served all along, not after the others: {last_turn:?}"
        );
    }

    #[test]
    fn round_robin_never_starves_the_lowest_class_under_a_flood() {
        let mut q = WaitQueue::new(QueuePolicy::PriorityRoundRobin);
        q.push(5, 0);
        let weight = |p: i64| if p == 0 { 10 } else { 1 };
        let mut turns = 0;
        loop {
            // Class 0 is refilled before every turn: it always waits.
            q.push(0, 1);
            turns += 1;
            if q.pop(&weight).unwrap().0 == 5 {
                break;
            }
            assert!(turns <= 11, "class 5 waited more than one round");
        }
    }

    #[test]
    fn find_looks_through_the_window_in_turn() {
        let w = |_: i64| 1;
        let mut q = WaitQueue::new(QueuePolicy::Fcfs);
        let a = q.push(1, "a");
        let _b = q.push(0, "b");
        let c = q.push(1, "c");
        assert_eq!(q.find(3, &w, |t| *t != "b"), Some((1, a)));
        assert_eq!(q.find(3, &w, |t| *t == "c"), Some((1, c)));
        assert_eq!(q.find(2, &w, |t| *t == "c"), None, "beyond the window");
        let mut q = WaitQueue::new(QueuePolicy::Priority);
        q.push(1, "a");
        let b = q.push(0, "b");
        assert_eq!(q.find(1, &w, |_| true), Some((0, b)), "most urgent first");
    }

    #[test]
    fn remove_takes_a_waiter_out_wherever_it_is() {
        let mut q = WaitQueue::new(QueuePolicy::Priority);
        let a = q.push(0, "a");
        let b = q.push(0, "b");
        let c = q.push(1, "c");
        assert_eq!(q.remove(0, b), Some("b"));
        assert_eq!(q.remove(0, b), None, "only once");
        assert_eq!(q.remove(1, c), Some("c"));
        assert_eq!((q.len(), q.class_len(0), q.class_len(1)), (1, 1, 0));
        assert_eq!(q.remove(0, a), Some("a"));
        assert!(q.is_empty() && q.peek(&|_| 1).is_none());
    }

    #[test]
    fn in_turn_lists_waiters_in_policy_order_and_take_pays_the_round_robin_turn() {
        let w = |_: i64| 1;
        let q = filled(QueuePolicy::Fcfs);
        let names = |q: &WaitQueue<&'static str>, n| -> Vec<&str> {
            q.in_turn(n, &w).into_iter().map(|(_, _, x)| *x).collect()
        };
        assert_eq!(names(&q, 3), ["a1", "b0", "c1"]);
        let q = filled(QueuePolicy::Priority);
        assert_eq!(names(&q, 5), ["b0", "d0", "a1", "c1", "e2"]);
        let mut q = WaitQueue::new(QueuePolicy::PriorityRoundRobin);
        let weight = |p: i64| if p == 0 { 3 } else { 1 };
        let mut tickets = vec![];
        for i in 0..4 {
            tickets.push(q.push(1, i));
            q.push(0, 10 + i);
        }
        // Class 1 is taken out of turn twice: class 0 then gets the next turns.
        assert_eq!(q.take(1, tickets[0], &weight), Some(0));
        assert_eq!(q.take(1, tickets[1], &weight), Some(1));
        let next: Vec<i64> = (0..2).map(|_| q.pop(&weight).unwrap().0).collect();
        assert_eq!(next, [0, 0]);
        assert_eq!(q.len(), 4);
    }
}
