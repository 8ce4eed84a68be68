//! The chunks a peer knows exist but does not hold, each with when to ask for it next.
//!
//! Kept in two orders: by seq, in a ring (playout and skips remove ranges of seqs), and by
//! next try, in a heap (a repair round takes only the due ones). A starving peer can miss a
//! thousand chunks, and walking all of them on every round and every arriving chunk was most
//! of the simulator's time at 10,000 peers.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::net::SocketAddr;

use crate::core::units::{Micros, Seq};

/// Whether a missing chunk's parent may still push it, so its first request waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Its stripe's parent is sending and has not yet sent anything later: the first try is
    /// put off, and a later chunk of the stripe brings it forward.
    MayStillBePushed,
    /// Nothing more will come by push.
    Lost,
}

/// A request sent for a missing chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub to: SocketAddr,
    pub at: Micros,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    pub next_try: Micros,
    pub tries: u32,
    /// Whom the last request went to, and when: its answer times that neighbour's RTT.
    pub asked: Option<Asked>,
    /// In [`MissingSet::put_off`]: spares the set lookup when the entry goes.
    put_off: bool,
    /// Whom the last request went to sent a Reject for it: it answered, it did not fall
    /// silent. (Here, not in [`Asked`]: there it made an entry 64 bytes instead of 56.)
    pub rejected: bool,
    /// A Reject has brought a try forward already (see [`MissingSet::rejected_by`]).
    retried_at_once: bool,
}

/// The widest range of seqs the set spans. Entries lie between the playout point and a
/// little past the newest chunk, a few hundred seqs (about a history at most: a seq a history
/// behind the newest is not asked for; 4,096 for bl-peer, 1,024 in bl-sim); a seq beyond this
/// is not noted. At most 2^15 entries are then live, so an entry's index fits 16 bits with
/// room for [`VACANT`].
pub const MAX_SPAN: u64 = 1 << 15;

/// A ring slot with no entry.
const VACANT: u16 = u16::MAX;
const _: () = assert!(MAX_SPAN <= VACANT as u64);

#[derive(Debug, Default)]
pub struct MissingSet {
    /// Slot `i` is seq `base + i`, and holds the index of its entry in `entries` (or
    /// [`VACANT`]): seqs are dense and near each other, so a ring indexed by seq beats a tree,
    /// and the front and back slots are always occupied.
    base: u64,
    /// Indexes, not entries: the ring spans every seq from the playout point to the newest
    /// (hundreds) while a few dozen are missing, and a ring of 56-byte entries was a third of
    /// the simulator's heap (massif, 2,000 peers: 39 KB a peer of 117).
    slots: VecDeque<u16>,
    /// Every entry, live or freed; `free` lists the freed ones for reuse.
    entries: Vec<Missing>,
    free: Vec<u16>,
    count: usize,
    /// (next try, seq) of every entry, plus stale pairs of entries since moved or removed:
    /// a heap with lazy deletion costs a push where an ordered set cost two tree updates,
    /// and this set changes with nearly every chunk that arrives. Its top is never stale.
    by_time: BinaryHeap<Reverse<(u64, u64)>>,
    /// Entries never asked for whose first try was put off (a parent may still push them):
    /// a later chunk of their stripe brings that try forward.
    put_off: BTreeSet<u64>,
    /// Scratch for [`MissingSet::bring_forward`], kept to spare an allocation per chunk.
    chosen: Vec<u64>,
}

impl MissingSet {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Seqs from the oldest entry to the newest: what the ring holds.
    pub fn span(&self) -> usize {
        self.slots.len()
    }

    pub fn contains(&self, seq: Seq) -> bool {
        self.get(seq).is_some()
    }

    pub fn get(&self, seq: Seq) -> Option<&Missing> {
        self.entry(seq.0)
    }

    /// Where `seq`'s entry is in `entries`, if it has one.
    fn index(&self, seq: u64) -> Option<usize> {
        let at = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        let i = *self.slots.get(at)?;
        (i != VACANT).then_some(i as usize)
    }

    fn entry(&self, seq: u64) -> Option<&Missing> {
        self.entries.get(self.index(seq)?)
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Missing> {
        let i = self.index(seq)?;
        self.entries.get_mut(i)
    }

    /// Stores `m` in a free entry, or a new one; its index.
    fn store(&mut self, m: Missing) -> u16 {
        if let Some(i) = self.free.pop() {
            if let Some(e) = self.entries.get_mut(i as usize) {
                *e = m;
                return i;
            }
        }
        self.entries.push(m);
        // At most MAX_SPAN entries are live, and freed ones are reused first.
        debug_assert!(self.entries.len() as u64 <= MAX_SPAN);
        (self.entries.len() - 1) as u16
    }

    /// Frees the entry at `i` (a slot's index), returning what it held (nothing for
    /// [`VACANT`]).
    fn release(&mut self, i: u16) -> Option<Missing> {
        if i == VACANT {
            return None;
        }
        let m = *self.entries.get(usize::from(i))?;
        self.free.push(i);
        self.count -= 1;
        Some(m)
    }

    /// The slot of `seq`, growing the ring to reach it; `None` past [`MAX_SPAN`].
    fn slot(&mut self, seq: u64) -> Option<&mut u16> {
        if self.slots.is_empty() {
            self.base = seq;
        }
        // Held slots are real seqs, so their last one does not overflow.
        let last = self.base + (self.slots.len() as u64).saturating_sub(1);
        if last.max(seq) - self.base.min(seq) >= MAX_SPAN {
            return None;
        }
        while self.base > seq {
            self.slots.push_front(VACANT);
            self.base -= 1;
        }
        let at = usize::try_from(seq - self.base).ok()?;
        while self.slots.len() <= at {
            self.slots.push_back(VACANT);
        }
        self.slots.get_mut(at)
    }

    /// Drops empty slots at both ends.
    fn trim(&mut self) {
        while self.slots.front() == Some(&VACANT) {
            self.slots.pop_front();
            // Past u64::MAX only once the ring is empty, and then `base` is reset.
            self.base = self.base.wrapping_add(1);
        }
        while self.slots.back() == Some(&VACANT) {
            self.slots.pop_back();
        }
        // The ring gives back the room a wide span left it (joins span a thousand seqs and
        // more; then a few hundred): 5.6 KB a peer in the simulator, kept for good.
        let room = self.slots.len().max(128);
        if self.slots.capacity() > 4 * room {
            self.slots.shrink_to(2 * room);
        }
        if self.slots.is_empty() {
            // Nothing is missing: the entries a starving spell needed go too.
            self.entries.clear();
            self.free.clear();
            if self.entries.capacity() > 256 {
                self.entries.shrink_to(64);
                self.free.shrink_to(64);
            }
        }
    }

    /// Notes `seq` as missing, first to be asked for at `next_try`; `put_off` marks a try
    /// deferred for a parent that may still push it. No change if it is already noted.
    pub fn note(&mut self, seq: Seq, next_try: Micros, arrival: Arrival) {
        let (seq, next_try) = (seq.0, next_try);
        let put_off = arrival == Arrival::MayStillBePushed;
        if self.slot(seq).is_none_or(|slot| *slot != VACANT) {
            return;
        }
        let i = self.store(Missing {
            next_try,
            tries: 0,
            asked: None,
            put_off,
            rejected: false,
            retried_at_once: false,
        });
        if let Some(slot) = self.slot(seq) {
            *slot = i;
        }
        self.count += 1;
        self.by_time.push(Reverse((next_try.0, seq)));
        if put_off {
            self.put_off.insert(seq);
        }
    }

    pub fn remove(&mut self, seq: Seq) -> Option<Missing> {
        let seq = seq.0;
        let at = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        let i = std::mem::replace(self.slots.get_mut(at)?, VACANT);
        let m = self.release(i)?;
        self.trim();
        if m.put_off {
            self.put_off.remove(&seq);
        }
        self.settle();
        Some(m)
    }

    /// Removes every seq above `ceiling`. Called on every chunk and Have: nothing to do
    /// costs one comparison.
    pub fn remove_above(&mut self, ceiling: Seq) {
        let len = self.slots.len() as u64;
        if len == 0 || self.base.wrapping_add(len - 1) <= ceiling.0 {
            return;
        }
        while !self.slots.is_empty() {
            let last = self.base.wrapping_add(self.slots.len() as u64 - 1);
            if last <= ceiling.0 {
                break;
            }
            let i = self.slots.pop_back().unwrap_or(VACANT);
            if let Some(m) = self.release(i) {
                if m.put_off {
                    self.put_off.remove(&last);
                }
            }
        }
        self.trim();
        self.settle();
    }

    /// Removes every seq below `floor`.
    pub fn remove_below(&mut self, floor: Seq) {
        let floor = floor.0;
        while self.base < floor {
            let seq = self.base;
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            self.base = self.base.wrapping_add(1);
            if let Some(m) = self.release(slot) {
                if m.put_off {
                    self.put_off.remove(&seq);
                }
            }
        }
        self.trim();
        self.settle();
    }

    /// Whether `(next_try, seq)` from the heap is an entry's current try.
    fn is_current(&self, next_try: u64, seq: u64) -> bool {
        self.entry(seq).is_some_and(|m| m.next_try.0 == next_try)
    }

    /// Drops stale pairs from the top of the heap, and rebuilds it once stale pairs
    /// outnumber live ones (a long-missing chunk is moved on every try).
    fn settle(&mut self) {
        if self.by_time.len() > 2 * self.count + 64 {
            let (base, entries) = (self.base, &self.entries);
            self.by_time = (0u64..)
                .zip(&self.slots)
                .filter_map(|(i, &e)| {
                    let m = entries.get(usize::from(e)).filter(|_| e != VACANT)?;
                    Some(Reverse((m.next_try.0, base + i)))
                })
                .collect();
        }
        while let Some(&Reverse((next_try, seq))) = self.by_time.peek() {
            if self.is_current(next_try, seq) {
                break;
            }
            self.by_time.pop();
        }
    }

    fn set_next_try(&mut self, seq: u64, next_try: Micros) {
        if let Some(m) = self.get_mut(seq) {
            if m.next_try != next_try {
                m.next_try = next_try;
                self.by_time.push(Reverse((next_try.0, seq)));
                self.settle();
            }
        }
    }

    fn clear_put_off(&mut self, seq: u64) {
        if let Some(m) = self.get_mut(seq) {
            if m.put_off {
                m.put_off = false;
                self.put_off.remove(&seq);
            }
        }
    }

    /// Brings the first try of put-off seqs below `below` for which `pick` holds forward to
    /// `soon` (a later chunk of their stripe arrived: they were lost on the way).
    pub fn bring_forward(&mut self, below: Seq, soon: Micros, pick: impl Fn(Seq) -> bool) {
        let mut chosen = std::mem::take(&mut self.chosen);
        chosen.clear();
        chosen.extend(
            self.put_off
                .range(..below.0)
                .copied()
                .filter(|&s| pick(Seq(s))),
        );
        for &seq in &chosen {
            self.clear_put_off(seq);
            if self.entry(seq).is_some_and(|m| m.next_try > soon) {
                self.set_next_try(seq, soon);
            }
        }
        self.chosen = chosen;
    }

    /// `from` sent a Reject for `seq`: if it is whom we last asked (else nothing moves), the
    /// ask is marked rejected, and the first time, its next try comes forward to `now`.
    /// Only the first: when every
    /// neighbour's Have only presumes a chunk held (a seed died before anyone had it), each
    /// Reject brought the next ask of the next neighbour a round trip later, and on loopback
    /// viewers sent up to 3,561 Rejects to each other in 20 s (tests/lifecycle.rs, two
    /// seeds, 12 runs; at most 63 with this bound). In bl-sim the bound cost nothing:
    /// 10,000 × 30 s, seeds 1-3, chunks skipped 1,124 / 881 / 1,455 without it, 924 / 669 /
    /// 1,116 with it.
    pub fn rejected_by(&mut self, seq: Seq, from: SocketAddr, now: Micros) {
        let Some(m) = self.get_mut(seq.0) else {
            return;
        };
        if m.asked.is_none_or(|a| a.to != from) {
            return;
        }
        m.rejected = true;
        if std::mem::replace(&mut m.retried_at_once, true) || m.next_try <= now {
            return;
        }
        self.set_next_try(seq.0, now);
    }

    /// `seq` was lost on the way from a sender that holds it: if it was never asked for, its
    /// first try comes forward to `now`, put off or not.
    pub fn ask_now(&mut self, seq: Seq, now: Micros) {
        if self
            .entry(seq.0)
            .is_some_and(|m| m.asked.is_none() && m.next_try > now)
        {
            self.clear_put_off(seq.0);
            self.set_next_try(seq.0, now);
        }
    }

    /// Up to `limit` seqs at or above `floor` whose try is due at `now`, oldest try first.
    pub fn due(&mut self, now: Micros, floor: Seq, limit: usize) -> Vec<Seq> {
        let (now, floor) = (now.0, floor.0);
        let mut due = Vec::new();
        // Live pairs taken off the heap: they go back, the caller moves the ones it tries.
        let mut taken = Vec::new();
        while due.len() < limit {
            let Some(&Reverse((next_try, seq))) = self.by_time.peek() else {
                break;
            };
            if next_try > now {
                break;
            }
            self.by_time.pop();
            // A pair pushed twice (moved away and back) is one entry.
            if taken.last() == Some(&(next_try, seq)) || !self.is_current(next_try, seq) {
                continue;
            }
            taken.push((next_try, seq));
            if seq >= floor {
                due.push(Seq(seq));
            }
        }
        self.by_time.extend(taken.into_iter().map(Reverse));
        self.settle();
        // In seq order, as requests list them.
        due.sort_unstable();
        due
    }

    /// Records a try of `seq`: asked `asked` (or nobody), next try at `next_try`.
    pub fn tried(&mut self, seq: Seq, next_try: Micros, asked: Option<Asked>) {
        let seq = seq.0;
        self.clear_put_off(seq);
        self.set_next_try(seq, next_try);
        if let Some(m) = self.get_mut(seq) {
            m.tries += 1;
            m.asked = asked;
            m.rejected = false;
        }
    }

    /// When the earliest try is due.
    pub fn earliest(&self) -> Option<Micros> {
        self.by_time.peek().map(|&Reverse((t, _))| Micros(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_seqs_come_by_time_and_tries_are_recorded() {
        let mut m = MissingSet::default();
        m.note(Seq(5), Micros(100), Arrival::Lost);
        m.note(Seq(3), Micros(300), Arrival::MayStillBePushed);
        m.note(Seq(9), Micros(50), Arrival::Lost);
        m.note(Seq(5), Micros(1), Arrival::Lost); // already noted: unchanged
        assert_eq!(m.earliest(), Some(Micros(50)));
        assert_eq!(m.due(Micros(100), Seq(0), 10), vec![Seq(5), Seq(9)]);
        assert_eq!(m.due(Micros(100), Seq(6), 10), vec![Seq(9)]);
        assert_eq!(m.due(Micros(1000), Seq(0), 1), vec![Seq(9)]);
        m.tried(Seq(9), Micros(400), None);
        assert_eq!(
            m.get(Seq(9)).map(|e| (e.tries, e.next_try)),
            Some((1, Micros(400)))
        );
        assert_eq!(m.due(Micros(350), Seq(0), 10), vec![Seq(3), Seq(5)]);
        m.remove_below(Seq(5));
        assert_eq!(
            (m.len(), m.due(Micros(1000), Seq(0), 10)),
            (2, vec![Seq(5), Seq(9)])
        );
    }

    #[test]
    fn a_later_chunk_brings_put_off_tries_forward_once() {
        let mut m = MissingSet::default();
        m.note(Seq(4), Micros(700), Arrival::MayStillBePushed);
        m.note(Seq(5), Micros(700), Arrival::MayStillBePushed);
        m.note(Seq(8), Micros(700), Arrival::MayStillBePushed);
        // Stripe of even seqs: a chunk 6 arrived at 10 (soon = 60).
        m.bring_forward(Seq(6), Micros(60), |s| s.0 % 2 == 0);
        assert_eq!(m.due(Micros(60), Seq(0), 10), vec![Seq(4)]);
        assert_eq!(m.get(Seq(5)).map(|e| e.next_try), Some(Micros(700)));
        assert_eq!(m.get(Seq(8)).map(|e| e.next_try), Some(Micros(700)));
        m.bring_forward(Seq(9), Micros(80), |_| true);
        assert_eq!(m.due(Micros(80), Seq(0), 10), vec![Seq(4), Seq(5), Seq(8)]);
        assert_eq!(m.remove(Seq(5)).map(|e| e.next_try), Some(Micros(80)));
        assert!(!m.contains(Seq(5)) && m.due(Micros(80), Seq(0), 10) == vec![Seq(4), Seq(8)]);
    }

    #[test]
    fn an_entry_moved_away_and_back_is_due_once_and_stale_tries_do_not_pile_up() {
        let mut m = MissingSet::default();
        m.note(Seq(7), Micros(100), Arrival::Lost);
        m.tried(Seq(7), Micros(500), None);
        m.tried(Seq(7), Micros(100), None);
        assert_eq!(m.due(Micros(1000), Seq(0), 10), vec![Seq(7)]);
        assert_eq!(m.earliest(), Some(Micros(100)));
        for t in 0..10_000 {
            m.tried(Seq(7), Micros(200 + t), None);
        }
        assert_eq!(m.earliest(), Some(Micros(10_199)));
        assert!(m.by_time.len() <= 2 * m.len() + 65, "{}", m.by_time.len());
        m.remove(Seq(7));
        assert_eq!(
            (m.earliest(), m.due(Micros(u64::MAX), Seq(0), 10)),
            (None, Vec::<Seq>::new())
        );
    }

    #[test]
    fn the_set_spans_a_bounded_range_of_seqs() {
        let mut m = MissingSet::default();
        m.note(Seq(1_000), Micros(5), Arrival::Lost);
        m.note(Seq(1_000 + MAX_SPAN), Micros(5), Arrival::Lost); // too far from 1,000: not noted
        m.note(Seq(1_000 + MAX_SPAN - 1), Micros(5), Arrival::Lost);
        m.note(Seq(999), Micros(5), Arrival::MayStillBePushed); // nor is this, below it
        assert_eq!(m.len(), 2);
        assert!(!m.contains(Seq(1_000 + MAX_SPAN)) && !m.contains(Seq(999)));
        m.remove(Seq(1_000 + MAX_SPAN - 1));
        m.note(Seq(999), Micros(5), Arrival::MayStillBePushed);
        assert!(m.contains(Seq(999)) && m.len() == 2);
        m.remove(Seq(999));
        assert_eq!(m.slots.len(), 1, "empty ends are dropped");
        m.remove_below(Seq(2_000));
        assert!(m.is_empty() && m.slots.is_empty() && m.put_off.is_empty());
        m.note(Seq(u64::MAX), Micros(5), Arrival::Lost);
        assert_eq!(m.due(Micros(5), Seq(0), 10), vec![Seq(u64::MAX)]);
    }

    #[test]
    fn entries_are_reused_as_the_window_slides_and_freed_when_nothing_is_missing() {
        let mut m = MissingSet::default();
        // A sliding window of 40 missing seqs over 10,000 (41 for a moment: noted before
        // the oldest goes): the entries are reused, not added.
        for seq in 0..10_000u64 {
            m.note(Seq(seq), Micros(seq), Arrival::Lost);
            if seq >= 40 {
                m.remove(Seq(seq - 40));
            }
            assert!(
                m.entries.len() <= 41,
                "{} entries at {seq}",
                m.entries.len()
            );
        }
        assert_eq!(m.len(), 40);
        assert_eq!(
            m.due(Micros(9_961), Seq(0), 100),
            vec![Seq(9_960), Seq(9_961)]
        );
        for seq in 0..600u64 {
            m.note(Seq(20_000 + seq), Micros(1), Arrival::MayStillBePushed);
        }
        m.remove_below(Seq(30_000));
        assert!(m.is_empty() && m.slots.is_empty());
        assert!(
            m.entries.capacity() <= 64 && m.free.is_empty(),
            "a starving spell's entries go"
        );
    }

    #[test]
    fn a_ring_that_spanned_thousands_of_seqs_gives_its_room_back() {
        let mut m = MissingSet::default();
        m.note(Seq(0), Micros(1), Arrival::Lost);
        m.note(Seq(5_000), Micros(1), Arrival::Lost);
        assert!(m.slots.capacity() > 5_000);
        m.remove(Seq(0));
        assert!(m.slots.capacity() <= 4 * 128, "{}", m.slots.capacity());
        assert_eq!(m.due(Micros(1), Seq(0), 10), vec![Seq(5_000)]);
    }
}
