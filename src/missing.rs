//! The chunks a peer knows exist but does not hold, each with when to ask for it next.
//!
//! Kept in two orders: by seq (playout and skips remove ranges of seqs) and by next try (a
//! repair round takes only the due ones). A starving peer can miss a thousand chunks, and
//! walking all of them on every round and every arriving chunk was most of the simulator's
//! time at 10,000 peers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    pub next_try: u64,
    pub tries: u32,
    /// Whom the last request went to, and when: its answer times that neighbour's RTT.
    pub asked: Option<(SocketAddr, u64)>,
}

#[derive(Debug, Default)]
pub struct MissingSet {
    entries: BTreeMap<u64, Missing>,
    /// (next try, seq) of every entry.
    by_time: BTreeSet<(u64, u64)>,
    /// Entries never asked for whose first try was put off (a parent may still push them):
    /// a later chunk of their stripe brings that try forward.
    put_off: BTreeSet<u64>,
}

impl MissingSet {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.entries.contains_key(&seq)
    }

    pub fn get(&self, seq: u64) -> Option<&Missing> {
        self.entries.get(&seq)
    }

    /// Notes `seq` as missing, first to be asked for at `next_try`; `put_off` marks a try
    /// deferred for a parent that may still push it. No change if it is already noted.
    pub fn note(&mut self, seq: u64, next_try: u64, put_off: bool) {
        if self.entries.contains_key(&seq) {
            return;
        }
        self.entries.insert(
            seq,
            Missing {
                next_try,
                tries: 0,
                asked: None,
            },
        );
        self.by_time.insert((next_try, seq));
        if put_off {
            self.put_off.insert(seq);
        }
    }

    pub fn remove(&mut self, seq: u64) -> Option<Missing> {
        let m = self.entries.remove(&seq)?;
        self.by_time.remove(&(m.next_try, seq));
        self.put_off.remove(&seq);
        Some(m)
    }

    /// Removes every seq below `floor`.
    pub fn remove_below(&mut self, floor: u64) {
        while let Some((&seq, _)) = self.entries.first_key_value() {
            if seq >= floor {
                break;
            }
            self.remove(seq);
        }
    }

    fn set_next_try(&mut self, seq: u64, next_try: u64) {
        if let Some(m) = self.entries.get_mut(&seq) {
            self.by_time.remove(&(m.next_try, seq));
            m.next_try = next_try;
            self.by_time.insert((next_try, seq));
        }
    }

    /// Brings the first try of put-off seqs below `below` for which `pick` holds forward to
    /// `soon` (a later chunk of their stripe arrived: they were lost on the way).
    pub fn bring_forward(&mut self, below: u64, soon: u64, pick: impl Fn(u64) -> bool) {
        let chosen: Vec<u64> = self
            .put_off
            .range(..below)
            .copied()
            .filter(|&s| pick(s))
            .collect();
        for seq in chosen {
            self.put_off.remove(&seq);
            if self.entries.get(&seq).is_some_and(|m| m.next_try > soon) {
                self.set_next_try(seq, soon);
            }
        }
    }

    /// Every entry is tried by `soon` at the latest.
    pub fn bring_all_forward(&mut self, soon: u64) {
        self.put_off.clear();
        let later: Vec<u64> = self
            .by_time
            .range((soon + 1, 0)..)
            .map(|&(_, seq)| seq)
            .collect();
        for seq in later {
            self.set_next_try(seq, soon);
        }
    }

    /// Up to `limit` seqs at or above `floor` whose try is due at `now`, oldest try first.
    pub fn due(&self, now: u64, floor: u64, limit: usize) -> Vec<u64> {
        let mut due: Vec<u64> = self
            .by_time
            .range(..=(now, u64::MAX))
            .map(|&(_, seq)| seq)
            .filter(|&seq| seq >= floor)
            .take(limit)
            .collect();
        // In seq order, as requests list them.
        due.sort_unstable();
        due
    }

    /// Records a try of `seq`: asked `asked` (or nobody), next try at `next_try`.
    pub fn tried(&mut self, seq: u64, next_try: u64, asked: Option<(SocketAddr, u64)>) {
        self.put_off.remove(&seq);
        self.set_next_try(seq, next_try);
        if let Some(m) = self.entries.get_mut(&seq) {
            m.tries += 1;
            m.asked = asked;
        }
    }

    /// When the earliest try is due.
    pub fn earliest(&self) -> Option<u64> {
        self.by_time.first().map(|&(t, _)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_seqs_come_by_time_and_tries_are_recorded() {
        let mut m = MissingSet::default();
        m.note(5, 100, false);
        m.note(3, 300, true);
        m.note(9, 50, false);
        m.note(5, 1, false); // already noted: unchanged
        assert_eq!(m.earliest(), Some(50));
        assert_eq!(m.due(100, 0, 10), vec![5, 9]);
        assert_eq!(m.due(100, 6, 10), vec![9]);
        assert_eq!(m.due(1000, 0, 1), vec![9]);
        m.tried(9, 400, None);
        assert_eq!(m.get(9).map(|e| (e.tries, e.next_try)), Some((1, 400)));
        assert_eq!(m.due(350, 0, 10), vec![3, 5]);
        m.remove_below(5);
        assert_eq!((m.len(), m.due(1000, 0, 10)), (2, vec![5, 9]));
    }

    #[test]
    fn a_later_chunk_brings_put_off_tries_forward_once() {
        let mut m = MissingSet::default();
        m.note(4, 700, true);
        m.note(5, 700, true);
        m.note(8, 700, true);
        // Stripe of even seqs: a chunk 6 arrived at 10 (soon = 60).
        m.bring_forward(6, 60, |s| s % 2 == 0);
        assert_eq!(m.due(60, 0, 10), vec![4]);
        assert_eq!(m.get(5).map(|e| e.next_try), Some(700));
        assert_eq!(m.get(8).map(|e| e.next_try), Some(700));
        m.bring_all_forward(80);
        assert_eq!(m.due(80, 0, 10), vec![4, 5, 8]);
        assert_eq!(m.remove(5).map(|e| e.next_try), Some(80));
        assert!(!m.contains(5) && m.due(80, 0, 10) == vec![4, 8]);
    }
}
