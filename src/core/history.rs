//! The chunks a node keeps to forward and repair: a window of the newest `capacity` seqs.
//!
//! A ring indexed by seq rather than an ordered map: every received chunk is looked up,
//! inserted and (once the window is full) evicts one, and at 100,000 simulated cores the
//! map's pointer chasing was the largest cost of the per-chunk path.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::media::chunk::Chunk;

#[derive(Debug, Default)]
pub struct History {
    /// Slot i holds seq `base + i`; the front slot is always filled (or the window is empty).
    slots: VecDeque<Option<Arc<Chunk>>>,
    base: u64,
    held: usize,
    capacity: usize,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        History {
            slots: VecDeque::new(),
            base: 0,
            held: 0,
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// The oldest seq held.
    pub fn first(&self) -> Option<u64> {
        (self.held > 0).then_some(self.base)
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.get(seq).is_some()
    }

    pub fn get(&self, seq: u64) -> Option<&Arc<Chunk>> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.slots.get(i)?.as_ref()
    }

    /// Keeps `chunk` unless it is older than the window; seqs that fall out of the window
    /// of the newest `capacity` are forgotten.
    pub fn insert(&mut self, chunk: Arc<Chunk>) {
        let seq = chunk.seq;
        if self.held == 0 {
            self.slots.clear();
            self.base = seq;
        }
        if seq < self.base {
            // Older than what we hold: keep it only if the window still reaches it.
            let newest = self.base + self.slots.len() as u64 - 1;
            if newest - seq >= self.capacity as u64 {
                return;
            }
            for _ in seq..self.base {
                self.slots.push_front(None);
            }
            self.base = seq;
        }
        let mut i = usize::try_from(seq - self.base).unwrap_or(usize::MAX);
        if i >= self.slots.len() + self.capacity {
            // A jump past the whole window: nothing held stays in it.
            self.slots.clear();
            self.held = 0;
            self.base = seq;
            i = 0;
        }
        // Forget what falls out of the window before growing the ring, so it never holds
        // more than `capacity` slots (growing first doubled its allocation to twice the
        // window: 8 KB a peer, 7 % of the simulator's heap at 2,000 peers).
        let over = (i + 1).saturating_sub(self.capacity);
        for _ in 0..over {
            if let Some(Some(_)) = self.slots.pop_front() {
                self.held -= 1;
            }
            self.base += 1;
        }
        i -= over;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, None);
        }
        if let Some(slot) = self.slots.get_mut(i) {
            if slot.is_none() {
                self.held += 1;
            }
            *slot = Some(chunk);
        }
        // Forget what fell out of the window, then any empty slots at its old end, so the
        // front is always a chunk we hold.
        while self.slots.len() > self.capacity || self.slots.front().is_some_and(|s| s.is_none()) {
            if let Some(Some(_)) = self.slots.pop_front() {
                self.held -= 1;
            }
            self.base += 1;
        }
    }

    /// Chunks held from `start` on, oldest first (`rev` for newest first).
    pub fn from(&self, start: u64) -> impl DoubleEndedIterator<Item = &Arc<Chunk>> + '_ {
        let skip = usize::try_from(start.saturating_sub(self.base)).unwrap_or(usize::MAX);
        self.slots.iter().skip(skip).flatten()
    }

    /// Seqs held in `lo..=hi`.
    pub fn seqs_between(&self, lo: u64, hi: u64) -> impl Iterator<Item = u64> + '_ {
        let skip = usize::try_from(lo.saturating_sub(self.base)).unwrap_or(usize::MAX);
        let base = self.base;
        self.slots
            .iter()
            .enumerate()
            .skip(skip)
            .take_while(move |(i, _)| base + *i as u64 <= hi)
            .filter(|(_, s)| s.is_some())
            .map(move |(i, _)| base + i as u64)
    }

    /// The newest seq held.
    pub fn last(&self) -> Option<u64> {
        let back = self.slots.iter().rev().position(Option::is_some)?;
        Some(self.base + (self.slots.len() - 1 - back) as u64)
    }

    /// The newest chunk held before `seq`, looked for at most `within` seqs back.
    pub fn held_before(&self, seq: u64, within: u64) -> Option<&Arc<Chunk>> {
        (seq.saturating_sub(within)..seq)
            .rev()
            .find_map(|s| self.get(s))
    }

    /// Forgets every chunk `drop` picks; returns how many.
    pub fn remove_where(&mut self, mut drop: impl FnMut(&Chunk) -> bool) -> usize {
        let mut removed = 0;
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|c| drop(c)) {
                *slot = None;
                removed += 1;
            }
        }
        self.held -= removed;
        while self.slots.front().is_some_and(|s| s.is_none()) {
            self.slots.pop_front();
            self.base += 1;
        }
        while self.slots.back().is_some_and(|s| s.is_none()) {
            self.slots.pop_back();
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::identity::StreamKey;

    fn chunk(key: &StreamKey, seq: u64) -> Arc<Chunk> {
        let mut payload = vec![0u8; 188];
        payload[0] = 0x47;
        Arc::new(Chunk::sign(key, seq, 1, 0, payload))
    }

    #[test]
    fn keeps_the_newest_window_with_gaps() {
        let key = StreamKey::from_seed([9; 32]);
        let mut h = History::new(4);
        for seq in [10, 12, 11, 15] {
            h.insert(chunk(&key, seq));
        }
        // The window is 12..=15: 10 and 11 fell out, 13 and 14 never came.
        assert_eq!(h.first(), Some(12));
        assert_eq!(h.len(), 2);
        assert!(!h.contains(10) && !h.contains(11) && h.contains(12));
        assert_eq!(h.seqs_between(0, 100).collect::<Vec<_>>(), vec![12, 15]);
        // A late chunk inside the window is kept; one older than it is not.
        h.insert(chunk(&key, 13));
        h.insert(chunk(&key, 9));
        assert_eq!(h.seqs_between(0, 14).collect::<Vec<_>>(), vec![12, 13]);
        assert_eq!(h.from(13).map(|c| c.seq).collect::<Vec<_>>(), vec![13, 15]);
        // A jump far ahead empties the old window.
        h.insert(chunk(&key, 100));
        assert_eq!((h.first(), h.len()), (Some(100), 1));
        assert!(h.get(u64::MAX).is_none());
    }

    #[test]
    fn an_older_chunk_extends_the_window_backwards_while_it_fits() {
        let key = StreamKey::from_seed([9; 32]);
        let mut h = History::new(8);
        h.insert(chunk(&key, 20));
        h.insert(chunk(&key, 17));
        assert_eq!(h.first(), Some(17));
        assert_eq!(h.seqs_between(0, 30).collect::<Vec<_>>(), vec![17, 20]);
        h.insert(chunk(&key, 12));
        assert_eq!(h.first(), Some(17), "20 - 12 is outside a window of 8");
    }

    #[test]
    fn chunks_removed_leave_the_window_consistent() {
        let key = StreamKey::from_seed([9; 32]);
        let mut h = History::new(8);
        for seq in [20, 21, 23, 25] {
            h.insert(chunk(&key, seq));
        }
        assert_eq!(h.held_before(25, 8).map(|c| c.seq), Some(23));
        assert_eq!(h.held_before(20, 8).map(|c| c.seq), None);
        assert_eq!(h.remove_where(|c| c.seq == 20 || c.seq == 25), 2);
        assert_eq!((h.first(), h.last(), h.len()), (Some(21), Some(23), 2));
        h.insert(chunk(&key, 26));
        assert_eq!(h.seqs_between(0, 30).collect::<Vec<_>>(), vec![21, 23, 26]);
        assert_eq!(h.remove_where(|_| true), 3);
        assert_eq!((h.first(), h.last(), h.len()), (None, None, 0));
        h.insert(chunk(&key, 5));
        assert_eq!((h.first(), h.last()), (Some(5), Some(5)));
    }

    #[test]
    fn the_ring_never_allocates_past_its_window() {
        let key = StreamKey::from_seed([9; 32]);
        let c = chunk(&key, 0);
        let mut h = History::new(1024);
        for seq in (0..5_000).chain(4_000..4_100).chain([7_000, 6_500]) {
            h.insert(Arc::new(Chunk {
                seq,
                ..(*c).clone()
            }));
            assert!(
                h.slots.len() <= 1024,
                "{} slots at seq {seq}",
                h.slots.len()
            );
        }
        // Growing before forgetting doubled the allocation to 2,048 slots.
        assert!(h.slots.capacity() <= 1024, "{}", h.slots.capacity());
        assert_eq!(
            (h.first(), h.last(), h.len()),
            (Some(6_500), Some(7_000), 2)
        );
    }
}
