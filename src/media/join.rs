//! Merging verified chunk feeds into one ordered stream (the core of bl-join, without I/O).
//!
//! Each input is expected in seq order, as bl-chunk and `bl-peer --chunks` write it. The
//! joiner dedupes across inputs, reorders within a window, and gives up on a missing chunk
//! when every open input has passed it, when a later chunk has waited `latency`, or when the
//! window is full. Until the first keyframe it drops chunks (unless `from_start`), so the
//! output is decodable from its first byte.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use std::sync::Arc;

use crate::media::chunk::Chunk;

/// What the joiner decided; the driver writes or reports it.
#[derive(Debug)]
pub enum JoinEvent {
    /// Write this chunk next.
    Play(Arc<Chunk>),
    /// Chunks `first..=last` never arrived in time and are skipped.
    Skipped { first: u64, last: u64 },
    /// An input delivered a seq it had already delivered.
    Replayed { input: usize, seq: u64 },
    /// A chunk arrived after its place in the output was skipped.
    Late { seq: u64 },
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JoinStats {
    pub played: u64,
    pub duplicates: u64,
    pub replayed: u64,
    pub late: u64,
    pub skipped: u64,
    /// Chunks dropped because they came before the first keyframe.
    pub before_start: u64,
}

#[derive(Debug, Default)]
struct InputState {
    ended: bool,
    /// Highest seq this input delivered.
    highest: Option<u64>,
    /// Recently delivered seqs, to tell a replay from cross-input duplicates.
    seen: BTreeSet<u64>,
}

/// Chunks waiting for an earlier one, by seq, with the first one's seq and arrival time at
/// hand: a swarm core asks for its next deadline after every event, and walking down to the
/// B-tree's first leaf each time was a cache miss per event in bl-sim.
#[derive(Default)]
struct Pending {
    by_seq: BTreeMap<u64, (Arc<Chunk>, u64)>,
    /// (seq, arrival) of the first entry of `by_seq`.
    first: Option<(u64, u64)>,
}

impl Pending {
    fn len(&self) -> usize {
        self.by_seq.len()
    }

    fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// The lowest seq waiting, and when it arrived.
    fn first(&self) -> Option<(u64, u64)> {
        self.first
    }

    /// False (and nothing changes) if `seq` is already waiting.
    fn insert(&mut self, seq: u64, chunk: Arc<Chunk>, arrived: u64) -> bool {
        match self.by_seq.entry(seq) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert((chunk, arrived));
                if self.first.is_none_or(|(first, _)| seq < first) {
                    self.first = Some((seq, arrived));
                }
                true
            }
        }
    }

    fn remove(&mut self, seq: u64) -> Option<Arc<Chunk>> {
        let (chunk, _) = self.by_seq.remove(&seq)?;
        if self.first.is_some_and(|(first, _)| first == seq) {
            self.refresh_first();
        }
        Some(chunk)
    }

    fn drop_below(&mut self, seq: u64) {
        self.by_seq = self.by_seq.split_off(&seq);
        self.refresh_first();
    }

    /// Everything waiting counts as arrived no earlier than `now`.
    fn arrived_no_earlier_than(&mut self, now: u64) {
        for (_, arrived) in self.by_seq.values_mut() {
            *arrived = (*arrived).max(now);
        }
        self.refresh_first();
    }

    fn refresh_first(&mut self) {
        self.first = self
            .by_seq
            .first_key_value()
            .map(|(&seq, &(_, arrived))| (seq, arrived));
    }
}

pub struct Joiner {
    window: u64,
    latency_us: u64,
    from_start: bool,
    /// Inputs deliver in seq order, so a seq every input has passed will never come.
    inputs_in_order: bool,
    /// Tell replays from cross-input duplicates (off when the caller already dedupes).
    track_replays: bool,
    inputs: Vec<InputState>,
    /// Next seq to play; `None` until the starting point is chosen.
    next_out: Option<u64>,
    started: bool,
    /// Arrival time of the first chunk, to bound how long we wait for slow inputs to start.
    first_arrival_us: Option<u64>,
    pending: Pending,
    /// Recently skipped seqs, to tell a late chunk from a duplicate.
    skipped_recent: BTreeSet<u64>,
    events: VecDeque<JoinEvent>,
    stats: JoinStats,
}

impl Joiner {
    /// `window`: most chunks held for reordering; `latency_us`: how long a later chunk waits
    /// for a missing one before the missing one is skipped.
    pub fn new(inputs: usize, window: u64, latency_us: u64, from_start: bool) -> Self {
        Joiner {
            window: window.max(1),
            latency_us,
            from_start,
            inputs_in_order: true,
            track_replays: true,
            inputs: (0..inputs).map(|_| InputState::default()).collect(),
            next_out: None,
            started: false,
            first_arrival_us: None,
            pending: Pending::default(),
            skipped_recent: BTreeSet::new(),
            events: VecDeque::new(),
            stats: JoinStats::default(),
        }
    }

    /// For inputs whose chunks arrive in any order (a swarm): a gap is waited for until
    /// `latency` or a full window, even if later chunks already came.
    pub fn with_unordered_inputs(mut self) -> Self {
        self.inputs_in_order = false;
        self
    }

    /// For a caller that never hands over the same seq twice (a swarm core checks its own
    /// history first): no per-input replay memory, which was a fifth of the simulator's
    /// per-chunk cost.
    pub fn with_deduplicated_inputs(mut self) -> Self {
        self.track_replays = false;
        self
    }

    /// Fixes the first seq to play (a swarm joiner's chosen keyframe); earlier chunks are
    /// ignored and that chunk is waited for like any missing one.
    pub fn start_at(&mut self, seq: u64) {
        if self.next_out.is_none() {
            self.next_out = Some(seq);
            self.pending.drop_below(seq);
        }
    }

    /// The next seq to play, once the starting point is chosen: everything before it was
    /// played or given up.
    pub fn next_seq(&self) -> Option<u64> {
        self.next_out
    }

    /// Chunks held waiting for an earlier one.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn stats(&self) -> JoinStats {
        self.stats
    }

    /// Readers should not run further ahead than this seq (keeps fast inputs from filling the
    /// window while a slower one catches up). `u64::MAX` before any chunk arrived.
    pub fn horizon(&self) -> u64 {
        let base = self
            .next_out
            .or_else(|| self.pending.first().map(|(seq, _)| seq));
        base.map_or(u64::MAX, |b| b.saturating_add(self.window / 2))
    }

    /// A verified chunk from `input` at time `now_us`.
    pub fn handle_chunk(&mut self, now_us: u64, input: usize, chunk: impl Into<Arc<Chunk>>) {
        let chunk = chunk.into();
        let seq = chunk.seq;
        let Some(state) = self.inputs.get_mut(input) else {
            return;
        };
        if self.track_replays && !state.seen.insert(seq) {
            self.stats.replayed += 1;
            self.events.push_back(JoinEvent::Replayed { input, seq });
            return;
        }
        state.highest = Some(state.highest.map_or(seq, |h| h.max(seq)));
        // Bound the replay memory: forget seqs far behind this input's head.
        let keep_from = state.highest.unwrap_or(0).saturating_sub(4 * self.window);
        while state.seen.first().is_some_and(|&s| s < keep_from) {
            state.seen.pop_first();
        }
        self.first_arrival_us.get_or_insert(now_us);
        let behind = self.next_out.is_some_and(|n| seq < n);
        if behind {
            if self.skipped_recent.contains(&seq) {
                self.stats.late += 1;
                self.events.push_back(JoinEvent::Late { seq });
            } else {
                self.stats.duplicates += 1;
            }
        } else {
            if !self.pending.insert(seq, chunk, now_us) {
                self.stats.duplicates += 1;
            }
        }
        self.advance(now_us);
    }

    /// `input` reached its end.
    pub fn handle_end(&mut self, now_us: u64, input: usize) {
        if let Some(state) = self.inputs.get_mut(input) {
            state.ended = true;
        }
        self.advance(now_us);
    }

    pub fn handle_timeout(&mut self, now_us: u64) {
        self.advance(now_us);
    }

    /// What waits now waits for a gap only being asked for now: it gets the full latency
    /// from `now_us`, as if it had arrived then.
    pub fn restart_waits(&mut self, now_us: u64) {
        self.pending.arrived_no_earlier_than(now_us);
    }

    /// When the joiner next needs [`Joiner::handle_timeout`], if it is waiting for something.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.next_out.is_none() {
            return self.first_arrival_us.map(|t| t + self.latency_us);
        }
        self.pending
            .first()
            .map(|(_, arrived)| arrived + self.latency_us)
    }

    pub fn poll_event(&mut self) -> Option<JoinEvent> {
        let e = self.events.pop_front();
        // Drained, the queue gives back the room a burst left it (a start plays hundreds of
        // chunks at once): 4 KB a peer in the simulator.
        if self.events.is_empty() && self.events.capacity() > 64 {
            self.events.shrink_to(16);
        }
        e
    }

    /// True when every input ended and everything was played or skipped.
    pub fn is_finished(&self) -> bool {
        self.inputs.iter().all(|i| i.ended) && self.pending.is_empty()
    }

    fn all_ended(&self) -> bool {
        self.inputs.iter().all(|i| i.ended)
    }

    fn advance(&mut self, now_us: u64) {
        if self.next_out.is_none() {
            // Start once every input has shown its first chunk (or ended), or after waiting
            // `latency` for the stragglers: the earliest seq among them is the start.
            let all_present = self.inputs.iter().all(|i| i.ended || i.highest.is_some());
            let waited = self
                .first_arrival_us
                .is_some_and(|t| now_us >= t + self.latency_us);
            if !(all_present || waited) {
                return;
            }
            self.next_out = self.pending.first().map(|(seq, _)| seq);
        }
        let Some(mut next) = self.next_out else {
            return;
        };
        loop {
            if let Some(chunk) = self.pending.remove(next) {
                next += 1;
                if !(self.started || self.from_start || chunk.is_keyframe()) {
                    self.stats.before_start += 1;
                    continue;
                }
                self.started = true;
                self.stats.played += 1;
                self.events.push_back(JoinEvent::Play(chunk));
                continue;
            }
            let Some((first_pending, arrived)) = self.pending.first() else {
                break;
            };
            let passed_by_all = self.inputs_in_order
                && self
                    .inputs
                    .iter()
                    .all(|i| i.ended || i.highest.is_some_and(|h| h > next));
            let give_up = passed_by_all
                || self.all_ended()
                || self.pending.len() as u64 >= self.window
                || now_us >= arrived + self.latency_us;
            if !give_up {
                break;
            }
            if self.started {
                self.stats.skipped += first_pending - next;
                self.events.push_back(JoinEvent::Skipped {
                    first: next,
                    last: first_pending - 1,
                });
                for seq in next..first_pending.min(next + self.window) {
                    self.skipped_recent.insert(seq);
                }
            }
            next = first_pending;
        }
        self.next_out = Some(next);
        let keep_from = next.saturating_sub(4 * self.window);
        while self.skipped_recent.first().is_some_and(|&s| s < keep_from) {
            self.skipped_recent.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::chunk::FLAG_KEYFRAME;
    use crate::media::identity::StreamKey;

    fn chunk(seq: u64, key: bool) -> Chunk {
        let mut payload = vec![0u8; 188];
        payload[0] = 0x47;
        Chunk::sign(
            &StreamKey::from_seed([1; 32]),
            seq,
            seq,
            if key { FLAG_KEYFRAME } else { 0 },
            payload,
        )
    }

    fn played(j: &mut Joiner) -> Vec<u64> {
        std::iter::from_fn(|| j.poll_event())
            .filter_map(|e| {
                if let JoinEvent::Play(c) = e {
                    Some(c.seq)
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn pending_keeps_its_first_entry_at_hand() {
        let mut p = Pending::default();
        let c = Arc::new(chunk(0, false));
        assert_eq!(p.first(), None);
        assert!(p.insert(7, c.clone(), 70));
        assert!(p.insert(9, c.clone(), 90));
        assert!(
            !p.insert(7, c.clone(), 71),
            "a seq already waiting is refused"
        );
        assert!(p.insert(5, c.clone(), 50));
        assert_eq!(p.first(), Some((5, 50)));
        assert!(p.remove(9).is_some());
        assert_eq!(p.first(), Some((5, 50)));
        assert!(p.remove(5).is_some());
        assert_eq!(p.first(), Some((7, 70)));
        assert!(p.insert(u64::MAX, c.clone(), 1));
        p.drop_below(8);
        assert_eq!((p.first(), p.len()), (Some((u64::MAX, 1)), 1));
        p.drop_below(u64::MAX);
        assert_eq!(p.len(), 1);
        assert!(p.remove(u64::MAX).is_some());
        assert!(p.is_empty() && p.first().is_none());
    }

    #[test]
    fn merges_two_interleaved_inputs_in_order() {
        let mut j = Joiner::new(2, 64, 1_000_000, true);
        // Input 0 races ahead with even seqs, input 1 follows with odd ones.
        for s in (0..20).step_by(2) {
            j.handle_chunk(0, 0, chunk(s, s == 0));
        }
        for s in (1..20).step_by(2) {
            j.handle_chunk(0, 1, chunk(s, false));
        }
        j.handle_end(0, 0);
        j.handle_end(0, 1);
        assert_eq!(played(&mut j), (0..20).collect::<Vec<_>>());
        assert!(j.is_finished());
    }

    #[test]
    fn starts_at_keyframe_and_skips_gaps_of_a_single_input() {
        let mut j = Joiner::new(1, 64, 1_000_000, false);
        for s in [0, 1, 2, 4, 5] {
            j.handle_chunk(0, 0, chunk(s, s == 2));
        }
        assert_eq!(played(&mut j), vec![2, 4, 5]);
        assert_eq!(j.stats().skipped, 1);
        assert_eq!(j.stats().before_start, 2);
    }

    #[test]
    fn replay_and_late_are_reported() {
        let mut j = Joiner::new(2, 64, 1_000, true);
        j.handle_chunk(0, 0, chunk(0, true));
        j.handle_chunk(0, 1, chunk(0, true));
        j.handle_chunk(0, 0, chunk(2, false));
        j.handle_chunk(0, 0, chunk(2, false));
        assert_eq!(j.stats().replayed, 1);
        assert_eq!(j.stats().duplicates, 1);
        // Input 1 is silent: after the latency seq 1 is skipped, then arrives late.
        j.handle_timeout(2_000);
        assert_eq!(played(&mut j), vec![0, 2]);
        j.handle_chunk(3_000, 1, chunk(1, false));
        assert_eq!(j.stats().late, 1);
    }

    #[test]
    fn deduplicated_inputs_play_each_seq_once_without_replay_memory() {
        let mut j = Joiner::new(1, 64, 1_000, true)
            .with_unordered_inputs()
            .with_deduplicated_inputs();
        j.handle_chunk(0, 0, chunk(0, true));
        j.handle_chunk(0, 0, chunk(2, false));
        j.handle_chunk(0, 0, chunk(2, false));
        j.handle_chunk(0, 0, chunk(1, false));
        assert_eq!(played(&mut j), vec![0, 1, 2]);
        assert_eq!((j.stats().replayed, j.stats().duplicates), (0, 1));
        assert!(j.inputs.iter().all(|i| i.seen.is_empty()));
    }

    #[test]
    fn a_burst_of_plays_leaves_no_room_behind_once_drained() {
        let mut j = Joiner::new(1, 1024, 1_000_000, true);
        // Played as they come, and not polled until the end: 500 events at once.
        for s in 0..500 {
            j.handle_chunk(0, 0, chunk(s, s == 0));
        }
        assert_eq!(played(&mut j).len(), 500);
        assert!(j.events.capacity() <= 64, "{}", j.events.capacity());
    }
}
