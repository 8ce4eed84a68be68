//! Playout and joining: where a peer starts playing (its start state), the joiner that puts
//! chunks in order and gives up on late ones, and the node's lifecycle from live to
//! finished.

use std::sync::Arc;

use crate::core::config::{AWAIT_KEYFRAME_PUSHED_US, CATCH_UP_MAX_CHUNKS, EARLY_START_WAIT_US};
use crate::core::outbox::{Event, Finish, Outbox};
use crate::core::timers::{Timer, Timers};
use crate::core::units::{Micros, Seq};
use crate::media::chunk::Chunk;
use crate::media::join::{JoinEvent, Joiner};

/// Where a peer stands on choosing its first chunk to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Nothing known yet (the seed stays here: it plays nothing).
    Unknown,
    /// Joined mid-GOP, far from the newest keyframe: playout starts at the first keyframe
    /// after this seq.
    AwaitKeyframeAfter(Seq),
    /// Playing from this seq on.
    From(Seq),
}

/// A node's life: live, then (the end of the stream known) ending, then lingering to serve
/// others, then finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Live,
    /// Peer: the stream ends at `last`; playout waits for what is missing until
    /// [`Timer::EndDeadline`].
    Ending {
        last: Seq,
    },
    /// Peer: the joiner was told the stream ended and plays out what it holds.
    Draining {
        last: Seq,
    },
    /// Done with the stream (`last`, if it had any); serving others until [`Timer::Linger`].
    Lingering {
        last: Option<Seq>,
    },
    Finished {
        last: Option<Seq>,
    },
}

impl Lifecycle {
    /// The stream's last seq, once known.
    pub fn end(self) -> Option<Seq> {
        match self {
            Lifecycle::Live => None,
            Lifecycle::Ending { last } | Lifecycle::Draining { last } => Some(last),
            Lifecycle::Lingering { last } | Lifecycle::Finished { last } => last,
        }
    }
}

pub struct Playout {
    pub start: Start,
    /// The joiner's window (chunks) and latency, to start it afresh.
    window: u64,
    latency_us: u64,
    /// Peer: the reordering joiner (one unordered, deduplicated input: the swarm).
    joiner: Option<Joiner>,
    pub lifecycle: Lifecycle,
    /// When the first chunk was played (startup figure).
    pub first_play_at: Option<u64>,
    /// When the first chunk arrived (peer), to fall back to playing from it.
    pub first_chunk_at: Option<u64>,
    /// Peer: the seed's Welcome said no chunk existed yet: we joined before the stream began,
    /// and its first chunk is where we start.
    pub joined_before_stream: bool,
    /// Started at the stream's first chunk the moment it came: what we lack of the start is
    /// not fetched until [`EARLY_START_WAIT_US`] after the first chunk of any seq arrived, as
    /// when waiting to learn the start.
    pub gaps_deferred: bool,
    /// Peer: when a verified chunk last came from a neighbour (or the peer started).
    pub last_data: u64,
    /// Whether the present silence was already reported on stderr.
    pub silence_reported: bool,
    /// How the node's work ends when it stops lingering.
    pub finish: Finish,
}

impl Playout {
    /// A peer's playout (`plays`), or the seed's, which plays nothing.
    pub fn new(plays: bool, history: usize, latency_us: u64, now: u64) -> Playout {
        let window = history.max(1) as u64;
        Playout {
            start: Start::Unknown,
            window,
            latency_us,
            joiner: plays.then(|| joiner(window, latency_us)),
            lifecycle: Lifecycle::Live,
            first_play_at: None,
            first_chunk_at: None,
            joined_before_stream: false,
            gaps_deferred: false,
            last_data: now,
            silence_reported: false,
            finish: Finish::Done,
        }
    }

    pub fn play_from(&self) -> Option<Seq> {
        match self.start {
            Start::From(seq) => Some(seq),
            _ => None,
        }
    }

    /// Where chunks start to matter: the start, or, once a joiner has waited
    /// [`AWAIT_KEYFRAME_PUSHED_US`] for the keyframe after `after`, everything past it.
    pub fn fetch_from(&self, now: u64) -> Option<Seq> {
        let waited = |t: u64| now >= t + AWAIT_KEYFRAME_PUSHED_US;
        match self.start {
            Start::From(_) if self.gaps_deferred => None,
            Start::From(seq) => Some(seq),
            Start::AwaitKeyframeAfter(after) if self.first_chunk_at.is_some_and(waited) => {
                Some(after.next())
            }
            Start::AwaitKeyframeAfter(_) | Start::Unknown => None,
        }
    }

    pub fn pending(&self) -> usize {
        self.joiner.as_ref().map_or(0, Joiner::pending)
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        self.joiner.as_ref().and_then(Joiner::poll_timeout)
    }

    pub fn handle_timeout(&mut self, now: u64) {
        if let Some(j) = self.joiner.as_mut() {
            j.handle_timeout(now);
        }
    }

    /// Where to start, told the newest keyframe and newest seq by whoever welcomed us: at
    /// the keyframe if at most [`CATCH_UP_MAX_CHUNKS`] followed it, else at the next one
    /// (fetching a whole GOP of backlog would cost the swarm a burst of repairs for chunks
    /// mostly too old to play within the latency). Returns (start, last) to begin with.
    /// Without a keyframe yet, the seed's first Have names the stream's first chunk.
    ///
    /// Once waiting for the keyframe after a seq, a keyframe at or before it is not taken,
    /// whoever names it: it is the one found too far back. A later Welcome from a peer whose
    /// view lagged (it names that keyframe with fewer chunks after it) started joiners
    /// there, behind a backlog larger than the catch-up, and they skipped what did not come
    /// in time (bl-sim, 1,000 peers × 20 s, 5 % liars, seeds 3 / 4: honest chunks skipped
    /// 795 / 1,312 → 294 / 205, docs/PERFORMANCE.md, "A keyframe once found too far back").
    pub fn choose_start(
        &mut self,
        latest_keyframe: Option<Seq>,
        latest_seq: Option<Seq>,
    ) -> Option<(Seq, Seq)> {
        let start = latest_keyframe?;
        if matches!(self.start, Start::AwaitKeyframeAfter(after) if start <= after) {
            return None;
        }
        let last = latest_seq.unwrap_or(start);
        if last.0.saturating_sub(start.0) <= CATCH_UP_MAX_CHUNKS {
            Some((start, last))
        } else if self.early_start_pending() {
            None
        } else {
            self.start = Start::AwaitKeyframeAfter(last);
            None
        }
    }

    /// The seed told us the stream had not begun, and chunks now flow: the early start
    /// ([`Playout::early_start_due`]) takes the oldest chunk around within
    /// [`EARLY_START_WAIT_US`], so a Welcome that would send us to the next keyframe is not
    /// taken. It cost a peer whose first chunk was not seq 0 the stream's first GOP (bl-sim,
    /// 50 peers × 8 s, the stream 1 s after the last join, no loss: 18 of 200 seeds). A
    /// position that starts us at once is taken: holding it off too put off every early
    /// joiner's repairs (1,000 × 20 s, seeds 1-8: chunks skipped 166 -> 249).
    fn early_start_pending(&self) -> bool {
        self.joined_before_stream && self.start == Start::Unknown && self.first_chunk_at.is_some()
    }

    /// The gaps of an early start are asked for only now: what waits behind them gets the
    /// whole latency from now, as when playout begins at this moment.
    pub fn stop_deferring_gaps(&mut self, now: u64) {
        self.gaps_deferred = false;
        if let Some(j) = self.joiner.as_mut() {
            j.restart_waits(now);
        }
    }

    /// Forgets the start position before anything played (it was a lie): a fresh joiner
    /// waits for a new one.
    pub fn forget_start(&mut self) {
        if self.first_play_at.is_none() && self.joiner.is_some() {
            self.start = Start::Unknown;
            self.joiner = Some(joiner(self.window, self.latency_us));
        }
    }

    /// The seq a peer that joined mid-GOP waits for the first keyframe after, while nothing
    /// has played.
    pub fn awaits_keyframe_after(&self) -> Option<Seq> {
        match self.start {
            Start::AwaitKeyframeAfter(after) if self.first_play_at.is_none() => Some(after),
            _ => None,
        }
    }

    /// Whether keyframe `seq` is the one a peer that joined mid-GOP waits for.
    pub fn awaited_keyframe(&self, seq: Seq) -> bool {
        matches!(self.start, Start::AwaitKeyframeAfter(after) if seq > after)
    }

    /// Joined before the stream began: once chunks have flowed for a moment, the oldest
    /// chunk anyone around holds is the start (whichever stripe arrived first is not).
    pub fn early_start_due(&self, now: u64) -> bool {
        (self.start == Start::Unknown || self.gaps_deferred)
            && self
                .first_chunk_at
                .is_some_and(|t| now >= t + EARLY_START_WAIT_US)
    }

    /// Playout starts at `start`: the joiner gets what we already hold from there on.
    pub fn begin<'a>(&mut self, now: u64, start: Seq, held: impl Iterator<Item = &'a Arc<Chunk>>) {
        self.start = Start::From(start);
        if let Some(j) = self.joiner.as_mut() {
            j.start_at(start.0);
            for chunk in held {
                j.handle_chunk(now, 0, chunk.clone());
            }
        }
    }

    /// A verified chunk for playout (if it is not before the start).
    pub fn offer(&mut self, now: u64, chunk: &Arc<Chunk>) {
        let playing = self.play_from().is_some_and(|p| chunk.seq >= p.0);
        if let Some(j) = self.joiner.as_mut() {
            if playing {
                j.handle_chunk(now, 0, chunk.clone());
            }
        }
    }

    /// Tells the joiner the stream ended: it plays out what it holds and skips the rest.
    pub fn end_of_input(&mut self, now: u64) {
        if let Lifecycle::Ending { last } = self.lifecycle {
            self.lifecycle = Lifecycle::Draining { last };
        }
        if let Some(j) = self.joiner.as_mut() {
            j.handle_end(now, 0);
        }
    }

    /// Hands what the joiner released to the outbox: chunks to play now, and ranges given up
    /// on (`skipped` is called with each, for the missing set). Starts lingering once the
    /// joiner finished after the end. Returns the next seq playout wants.
    pub fn drain(
        &mut self,
        now: u64,
        wall_now: u64,
        linger_us: u64,
        timers: &mut Timers,
        out: &mut Outbox,
        mut skipped: impl FnMut(u64, u64),
    ) -> Option<Seq> {
        let j = self.joiner.as_mut()?;
        while let Some(event) = j.poll_event() {
            match event {
                JoinEvent::Play(chunk) => {
                    self.first_play_at.get_or_insert(now);
                    out.stats.counters.chunks_played += 1;
                    out.stats
                        .latency_us
                        .record(wall_now.saturating_sub(chunk.capture_us));
                    out.stats.stream_bytes += chunk.payload.len() as u64;
                    out.event(Event::Play(chunk));
                }
                JoinEvent::Skipped { first, last } => {
                    out.stats.counters.chunks_skipped += last - first + 1;
                    skipped(first, last);
                    out.warn(format!(
                        "skipped chunks {first}..={last}: not received in time"
                    ));
                }
                JoinEvent::Replayed { .. } | JoinEvent::Late { .. } => {}
            }
        }
        if let Lifecycle::Draining { last } = self.lifecycle {
            if j.is_finished() {
                self.lifecycle = Lifecycle::Lingering { last: Some(last) };
                timers.set(Timer::Linger, Micros(now) + linger_us);
            }
        }
        j.next_seq().map(Seq)
    }
}

/// A peer's joiner: one unordered, deduplicated input (the swarm).
fn joiner(window: u64, latency_us: u64) -> Joiner {
    Joiner::new(1, window, latency_us, false)
        .with_unordered_inputs()
        .with_deduplicated_inputs()
}

#[cfg(test)]
mod tests {
    //! A joiner's start states and the lifecycle, without a node.

    use super::*;

    #[test]
    fn a_joiner_starts_at_a_near_keyframe_or_waits_for_the_next() {
        let mut near = Playout::new(true, 1024, 1_500_000, 0);
        assert_eq!(
            near.choose_start(Some(Seq(100)), Some(Seq(100 + CATCH_UP_MAX_CHUNKS))),
            Some((Seq(100), Seq(164)))
        );
        let mut far = Playout::new(true, 1024, 1_500_000, 0);
        assert_eq!(far.choose_start(Some(Seq(100)), Some(Seq(300))), None);
        assert_eq!(far.start, Start::AwaitKeyframeAfter(Seq(300)));
        assert!(!far.awaited_keyframe(Seq(300)) && far.awaited_keyframe(Seq(301)));
        // A later Welcome from a peer that lags names the keyframe found too far back, with
        // few chunks after it: still waiting. One past the seq waited after is taken.
        assert_eq!(far.choose_start(Some(Seq(100)), Some(Seq(110))), None);
        assert_eq!(far.choose_start(Some(Seq(300)), Some(Seq(301))), None);
        assert_eq!(far.start, Start::AwaitKeyframeAfter(Seq(300)));
        assert_eq!(
            far.choose_start(Some(Seq(320)), Some(Seq(330))),
            Some((Seq(320), Seq(330)))
        );
        let mut unknown = Playout::new(true, 1024, 1_500_000, 0);
        assert_eq!(unknown.choose_start(None, Some(Seq(300))), None);
        assert_eq!(
            unknown.start,
            Start::Unknown,
            "no keyframe yet: nothing decided"
        );
        assert!(!unknown.early_start_due(u64::MAX), "no chunk arrived yet");
        unknown.first_chunk_at = Some(1_000);
        assert!(!unknown.early_start_due(1_000 + EARLY_START_WAIT_US - 1));
        assert!(unknown.early_start_due(1_000 + EARLY_START_WAIT_US));
        // Told by the seed the stream had not begun, with chunks flowing: a keyframe too far
        // back leaves the start to the early start; one near enough is taken.
        let mut early = Playout::new(true, 1024, 1_500_000, 0);
        early.joined_before_stream = true;
        early.first_chunk_at = Some(1_000);
        assert_eq!(early.choose_start(Some(Seq(0)), Some(Seq(70))), None);
        assert_eq!(early.start, Start::Unknown);
        assert_eq!(
            early.choose_start(Some(Seq(0)), Some(Seq(60))),
            Some((Seq(0), Seq(60)))
        );
        far.begin(0, Seq(400), std::iter::empty());
        assert_eq!(far.play_from(), Some(Seq(400)));
        assert!(!far.early_start_due(u64::MAX));
    }

    #[test]
    fn the_end_is_known_from_ending_on_and_playout_lingers_once_drained() {
        let mut p = Playout::new(true, 1024, 1_000, 0);
        assert_eq!(p.lifecycle.end(), None);
        p.begin(0, Seq(0), std::iter::empty());
        p.lifecycle = Lifecycle::Ending { last: Seq(9) };
        assert_eq!(p.lifecycle.end(), Some(Seq(9)));
        p.end_of_input(5);
        assert_eq!(p.lifecycle, Lifecycle::Draining { last: Seq(9) });
        let mut timers = Timers::default();
        let mut out = Outbox::default();
        p.drain(5, 5, 2_000, &mut timers, &mut out, |_, _| {});
        assert_eq!(p.lifecycle, Lifecycle::Lingering { last: Some(Seq(9)) });
        assert_eq!(timers.get(Timer::Linger), Some(Micros(2_005)));
    }
}
