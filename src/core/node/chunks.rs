//! The node's chunk path: a chunk arrives (from stdin or a neighbour), is checked by the
//! guard, noted by the tree and the repair machine, pushed to the stripe's children, kept,
//! and handed to playout; and the end of the stream, which playout waits on.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Node;
use crate::core::config::{FIRST_CHUNK_FRESH_US, INDICES_PER_CHUNK, REPLAY_SLACK_US};
use crate::core::guard::{self, CopyVerdict, Source};
use crate::core::outbox::Finish;
use crate::core::place::join_index_base;
use crate::core::playout::{Lifecycle, Start};
use crate::core::repair::{Arrival, Known};
use crate::core::stripes::stripe_of;
use crate::core::timers::Timer;
use crate::core::tree::StripeTree;
use crate::core::units::{Micros, Seq};
use crate::media::chunk::Chunk;
use crate::proto::wire::{self, Message, Role};

impl Node {
    /// A Welcome's index is unsigned (the seed's assignment, or the newest seq a peer named,
    /// ours drawn after it): a liar can number a joiner among the stream's first members,
    /// where it refuses every younger parent in its stripe and displaces the true roots at
    /// the seed. Indices count the stream's own clock, [`INDICES_PER_CHUNK`] to a seq, so the
    /// first verified chunk exposes such an index: one from more than a history (the chunks
    /// we keep; 4,096 by default, 18 s at 2 Mb/s) before it is drawn again in that chunk's
    /// block. Only ever later: neighbours that still believe
    /// the old index take us for older than we are, so no stripe tree can loop through us.
    pub(super) fn check_index(&mut self, first: Seq) {
        let told = (self.place.index / INDICES_PER_CHUNK).saturating_sub(1);
        let window = self.cfg.tuning.history as u64;
        if self.place.index == 0 || told.saturating_add(window) >= first.0 {
            return;
        }
        let slot = self.rng.next_u64() % INDICES_PER_CHUNK;
        self.place.index = join_index_base(Some(first)).saturating_add(1 + slot);
        self.out.stats.counters.positions_ignored += 1;
    }

    // ---- chunks --------------------------------------------------------------------------

    /// A datagram from `from`, decoded; `None`, counted as dropped, if it does not decode or
    /// its sender is banned (a forger's datagrams are not even decoded). The driver decodes
    /// what it read together with this, for [`Node::verify_ahead`], then hands each message
    /// to [`Node::handle_message`].
    pub fn decode_datagram(&mut self, from: SocketAddr, bytes: &[u8]) -> Option<Message> {
        let message = match self.guard.is_banned(&from) {
            true => None,
            false => wire::decode(bytes).ok(),
        };
        if message.is_none() {
            self.out.count_dropped();
        }
        message
    }

    /// Datagrams read together (the driver reads what the socket holds, up to 16): the
    /// signatures of the chunks among them that [`Node::on_chunk`] would check, from
    /// neighbours, are checked as one batch before any of them is handled, at about half the
    /// cost per signature. On a loaded machine a peer's bursts queue in its socket, and the
    /// Ed25519 check was half a peer's CPU (docs/PERFORMANCE.md, "Chunks read together
    /// verified as one batch"). Only a CPU saving: a batch that holds is remembered whole
    /// by the guard, what each chunk then does is decided when it is handled, as before,
    /// and a batch that fails (a forgery among them) leaves every chunk to its own check.
    pub fn verify_ahead<'a>(
        &mut self,
        chunks: impl IntoIterator<Item = (SocketAddr, &'a Arc<Chunk>)>,
    ) {
        let mut batch: Vec<&Arc<Chunk>> = Vec::new();
        for (from, chunk) in chunks {
            let new = !batch.iter().any(|c| c.seq == chunk.seq);
            if new && self.neighbours.contains_key(&from) && self.checks_signature_of(chunk.seq) {
                batch.push(chunk);
            }
        }
        let verified = self.guard.verify_ahead(&batch);
        self.out.stats.counters.chunks_verified_in_batches += verified as u64;
    }

    /// Whether [`Node::on_chunk`] checks the signature of chunk `seq` from a neighbour: a
    /// peer's, not yet held, and not older than a history behind our newest (the seed takes
    /// no chunk from neighbours: it only compares their copies with its own).
    fn checks_signature_of(&self, seq: u64) -> bool {
        let floor = self
            .highest
            .map_or(Seq(0), |h| h.back(self.cfg.tuning.history as u64));
        self.cfg.role == Role::Peer && !self.history.contains(seq) && Seq(seq) >= floor
    }

    /// `prev_pushed`: the sender pushed us the chunk before this one in its stripe (a push
    /// sent as [`Message::ChunkPrevPushed`]).
    pub(super) fn on_chunk(
        &mut self,
        now: u64,
        from: Source,
        chunk: Arc<Chunk>,
        prev_pushed: bool,
    ) {
        let seq = Seq(chunk.seq);
        if from != Source::Input {
            self.out.stats.counters.chunks_received += 1;
            let bytes = chunk.payload.len() as u64;
            let from_seed = from
                .addr()
                .and_then(|a| self.neighbours.get(&a))
                .is_some_and(|n| n.role == Role::Seed);
            let counters = &mut self.out.stats.counters;
            match from_seed {
                true => counters.chunk_bytes_from_seed += bytes,
                false => counters.chunk_bytes_from_peers += bytes,
            }
            // The keyframe we wait for, or started at, is how a parent that held our pushes
            // releases them, whatever its stripe (core::tree::hold): not a stray feed. Nor is
            // the end record, flooded to every neighbour (taken for one, every peer told all
            // its neighbours to stop at the end: loopback, 50 peers, 20-40 Unsubscribes each).
            let release = chunk.is_keyframe()
                && (self.playout.awaited_keyframe(seq) || self.playout.play_from() == Some(seq));
            if let Some(addr) = from.addr().filter(|_| !release && !chunk.is_end()) {
                self.stop_stray_feed(now, addr, stripe_of(seq.0, self.place.stripes));
            }
        }
        if let Some(held) = self.history.get(seq.0) {
            let peer = self.cfg.role == Role::Peer;
            let held_is_earlier = is_earlier_broadcast(held, &chunk);
            match self
                .guard
                .check_copy(held, &chunk, from, peer, &mut self.out)
            {
                CopyVerdict::Forged(addr) => self.drop_neighbour(addr),
                // A parent's push that a repair overtook still shows the parent forwards.
                CopyVerdict::Duplicate => {
                    if let Some(addr) = from.addr() {
                        // The seed's audits are answered with copies of what it holds.
                        if self.cfg.role == Role::Seed {
                            if let Some(n) = self.neighbours.get_mut(&addr) {
                                guard::audit_answered(n, seq.0);
                            }
                        }
                        let stripe = stripe_of(seq.0, self.place.stripes);
                        self.tree.pushed(stripe, addr);
                    }
                }
                // What we held was the replay: forget that broadcast, take this chunk anew.
                CopyVerdict::OtherBroadcast if held_is_earlier => {
                    self.forget_earlier_broadcast(now, &chunk)
                }
                CopyVerdict::OtherBroadcast => self.out.stats.counters.chunks_late += 1,
            }
            if self.history.get(seq.0).is_some() {
                return;
            }
        }
        // The seed's chunks come from its input. One from a neighbour at a seq it does not
        // hold can only be a replay of another broadcast under the same key (ahead of the
        // input): kept, it would have made the seed drop its own input chunk at that seq
        // as a duplicate. Copies of held chunks (its audit's answers) are checked above.
        if self.cfg.role == Role::Seed && from != Source::Input {
            self.out.stats.counters.chunks_late += 1;
            return;
        }
        let floor = self
            .highest
            .map_or(Seq(0), |h| h.back(self.cfg.tuning.history as u64));
        if from != Source::Input && seq < floor {
            self.out.stats.counters.chunks_late += 1;
            return;
        }
        if let Err(why) = self.guard.verify(&chunk) {
            if let Some(addr) = self.guard.reject(seq.0, why, from, &mut self.out) {
                self.drop_neighbour(addr);
            }
            return;
        }
        // After the signature check: a forgery gets its sender banned, a genuine replay is
        // only dropped.
        if from != Source::Input
            && (self.is_from_an_earlier_broadcast(&chunk) || self.is_end_before_any_chunk(&chunk))
        {
            self.out.stats.counters.chunks_late += 1;
            return;
        }
        if from != Source::Input && self.holds_an_earlier_broadcast(&chunk) {
            self.forget_earlier_broadcast(now, &chunk);
        }
        // Nothing follows the end: a chunk after it, or an end record older than a chunk we
        // hold, is a replay of another broadcast under the same key.
        let after_end = self.playout.lifecycle.end().is_some_and(|end| seq > end);
        let stale_end = chunk.is_end() && self.highest.is_some_and(|h| h > seq);
        if after_end || stale_end {
            self.out.stats.counters.chunks_late += 1;
            return;
        }
        if from != Source::Input {
            self.playout.last_data = now;
            self.playout.silence_reported = false;
        }
        if from == Source::Input {
            self.out.stats.stream_bytes += chunk.payload.len() as u64;
            self.out
                .stats
                .ingest_latency_us
                .record(self.wall(now).saturating_sub(chunk.capture_us));
        }
        let stripe = stripe_of(seq.0, self.place.stripes);
        // The end record is flooded to every neighbour (learn_end) and outruns the tree's
        // pushes of the stripe's last chunks: from anyone but the stripe's parent it says
        // nothing of them. Taken for the stripe's newest push, it had them asked for 50 to
        // 100 ms later though on their way: 71 of the 257 requests of a 50-peer run
        // without loss (bl-sim, 8 s, the stream at 2 s, seed 1), all in the end record's
        // stripe.
        let flooded_end = chunk.is_end() && from.addr() != self.tree.parent(stripe);
        if !flooded_end {
            self.tree.heard(stripe, seq.0, now);
        }
        if let Some(addr) = from.addr() {
            self.tree.pushed(stripe, addr);
        }
        // A chunk we lacked within a quarter history of our newest serves us, as an answer
        // does (a parent's pushes); a liar's replays of old chunks, new to a peer that joined
        // after them, do not.
        let quarter = self.cfg.tuning.history as u64 / 4;
        let serves = self.highest.is_none_or(|h| seq.ahead(quarter) >= h);
        self.repair.on_arrival(
            Micros(now),
            seq,
            from.addr(),
            serves,
            !flooded_end,
            self.place.stripes,
            &mut self.neighbours,
            &mut self.timers,
        );
        if chunk.is_keyframe() {
            if self.latest_keyframe.is_none_or(|k| seq > k) {
                self.latest_keyframe = Some(seq);
            }
            if self.playout.awaited_keyframe(seq) {
                let last = self.highest.map_or(seq, |h| h.max(seq));
                self.set_play_from(now, seq, last);
            }
        }
        if from != Source::Input && self.cfg.role == Role::Peer {
            if self.is_fresh_first_chunk(now, &chunk) {
                self.begin_playout(now, seq);
                // Only playing starts early: what it lacks is asked for when a joiner that
                // waits to learn the start would ask (periodic.rs, start_early), so repairs
                // go out as before. Asked at once, the first chunks of stripes whose first
                // push had not come yet were fetched from the seed.
                self.playout.gaps_deferred = true;
            }
            self.playout.first_chunk_at.get_or_insert(now);
            if self.highest.is_none() {
                self.check_index(seq);
            }
            self.note_known_seq(now, Known::verified(seq.back(1)));
            if prev_pushed {
                let stripes = self.place.stripes;
                let timers = &mut self.timers;
                self.repair
                    .prev_lost_on_link(Micros(now), seq, stripes, timers);
            }
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        // Forward first (latency), then keep and play.
        self.push_to_children(now, stripe, from, &chunk);
        self.playout.offer(now, &chunk);
        let is_end = chunk.is_end();
        let is_keyframe = chunk.is_keyframe();
        self.history.insert(chunk);
        // Held now, so not missing, whatever noted it so while it was handled: the keyframe
        // a joiner waits for starts playout above, and the gap from it on was noted before
        // it was kept. Left missing, it was asked of one neighbour after another until
        // playout left it a history behind: each copy a duplicate, each round a neighbour
        // that claimed it counted as leaving it unanswered (bl-sim, 50 peers, no loss, seed
        // 1: five joiners asked for theirs 13-19 times each, the seed among those asked).
        self.repair.missing.remove(seq);
        if is_keyframe {
            for child in self.tree.release_holds(seq.0) {
                if Some(child) != from.addr() {
                    self.release_hold(now, child, seq);
                }
            }
        }
        self.drain_playout(now);
        if is_end {
            self.learn_end(now, seq, from);
        }
        self.check_end_complete(now);
    }

    /// Numbered past our newest chunk, yet captured more than [`REPLAY_SLACK_US`] before it:
    /// bl-chunk's captures never go back, so this is a chunk (or end record) of an earlier
    /// broadcast under the same key, replayed ahead of ours. Kept, an end record ended the
    /// viewer and a chunk made the genuine one at its seq look forged (its honest sender
    /// banned). Before we hold any chunk there is no timeline to go by.
    ///
    /// The same holds for a chunk that fills a gap: the chunk held just before it (looked
    /// for [`REPLAY_LOOKBACK`] seqs back) cannot have been captured long after it.
    fn is_from_an_earlier_broadcast(&self, chunk: &Chunk) -> bool {
        let newest = self.highest.and_then(|h| self.history.get(h.0));
        let before = self.history.held_before(chunk.seq, REPLAY_LOOKBACK);
        newest
            .into_iter()
            .chain(before)
            .any(|held| chunk.seq > held.seq && is_earlier_broadcast(chunk, held))
    }

    /// Peer: what we hold is of an earlier broadcast under the same key than `chunk` (verified),
    /// replayed to us before the genuine stream reached us: our newest chunk is numbered at
    /// or past it yet captured long before it, or, before anything played, simply captured
    /// long before it (replays numbered below the stream would be where an early joiner
    /// starts). Later broadcasts win: nobody can replay one that has not happened.
    fn holds_an_earlier_broadcast(&self, chunk: &Chunk) -> bool {
        let newest = self.highest.and_then(|h| self.history.get(h.0));
        let nothing_played = self.playout.first_play_at.is_none();
        self.cfg.role == Role::Peer
            && newest.is_some_and(|n| {
                (n.seq >= chunk.seq || nothing_played) && is_earlier_broadcast(n, chunk)
            })
    }

    /// Forgets every chunk captured long before `genuine` (they are replays of an earlier
    /// broadcast), and, if nothing played yet, where playout was to start: it is chosen
    /// again from what is genuine. Kept, the replays played, and the genuine chunks at
    /// their seqs looked forged (their honest senders banned).
    fn forget_earlier_broadcast(&mut self, now: u64, genuine: &Chunk) {
        let cutoff = genuine.capture_us.saturating_sub(REPLAY_SLACK_US);
        let start = self.playout.play_from();
        let start_was_replayed = start
            .and_then(|p| self.history.get(p.0))
            .is_some_and(|c| c.capture_us < cutoff);
        let forgotten = self.history.remove_where(|c| c.capture_us < cutoff);
        self.out.stats.counters.chunks_late += forgotten as u64;
        self.out.warn(format!(
            "dropped {forgotten} chunks of an earlier broadcast under the same key: replayed to us"
        ));
        self.highest = self.history.last().map(Seq);
        self.latest_keyframe = self
            .history
            .from(0)
            .rfind(|c| c.is_keyframe())
            .map(|c| Seq(c.seq));
        if self.playout.first_play_at.is_none() {
            self.playout.forget_start();
            self.repair.missing.remove_below(Seq(u64::MAX));
            match start {
                Some(p) if !start_was_replayed => {
                    let last = self.highest.unwrap_or(p);
                    self.set_play_from(now, p, last);
                }
                _ => self.playout.first_chunk_at = Some(now),
            }
        }
    }

    /// An end record for a peer that joined before the stream began (no start position: its
    /// Welcome named no chunk) and holds no chunk yet: the stream it waits for has not
    /// begun, so this can only be the end of an earlier broadcast under the same key,
    /// replayed (it ended such a viewer with status 4). A peer that joins after the end is
    /// told a position by the seed's Welcome and still learns the end.
    fn is_end_before_any_chunk(&self, chunk: &Chunk) -> bool {
        chunk.is_end()
            && self.cfg.role == Role::Peer
            && self.highest.is_none()
            && self.playout.start == Start::Unknown
    }

    /// Joined before the stream began (no start known), and this is its first chunk, signed
    /// as seq 0 (bl-chunk numbers from 0) and captured within [`FIRST_CHUNK_FRESH_US`] of
    /// our clock: the start is certain, so playout need not wait [`EARLY_START_WAIT_US`] to
    /// learn it (that wait made the first 1.5 % of chunks play 300–400 ms late on loopback).
    /// The capture time keeps a seq 0 replayed from an earlier broadcast under the same key
    /// from setting the start: such a chunk leaves the wait as it was.
    ///
    /// [`EARLY_START_WAIT_US`]: crate::core::config::EARLY_START_WAIT_US
    fn is_fresh_first_chunk(&self, now: u64, chunk: &Chunk) -> bool {
        chunk.seq == 0
            && self.playout.start == Start::Unknown
            && self.wall(now).abs_diff(chunk.capture_us) <= FIRST_CHUNK_FRESH_US
    }

    /// Pushes a verified chunk to the children fed its stripe (not back to whom it came from).
    pub(super) fn push_to_children(
        &mut self,
        now: u64,
        stripe: u8,
        from: Source,
        chunk: &Arc<Chunk>,
    ) {
        let children = self.tree.take_children(stripe, &self.neighbours);
        let sender = from.addr();
        let pushes = children.iter().filter(|a| Some(**a) != sender).count();
        if pushes == 0 && from == Source::Input {
            self.repair.budget.owe_unpushed();
        }
        if pushes > 0 {
            let stripes = u64::from(self.place.stripes);
            // When we pushed the chunk before this one in its stripe, read before this push
            // is noted (the log is a ring by seq).
            let prev_pushed_at = chunk
                .seq
                .checked_sub(stripes)
                .and_then(|prev| self.repair.pushes.pushed_at(prev));
            self.repair.pushes.note(chunk.seq, now);
            // A child we pushed the chunk before this one to, and that lacks it, knows it was
            // lost on the way and asks us at once, not LATE_UPSTREAM_WAIT_US later (core::repair).
            // Only if it was our child then: a child that moved to us since may still get it
            // from its old parent. (Told whenever we held it: bl-sim, 3,000 × 20 s, 1 % loss,
            // seed 1, duplicates rose from 2.06 to 2.87 % of chunks played.)
            let plain = Message::Chunk(chunk.clone());
            let after_pushed = Message::ChunkPrevPushed(chunk.clone());
            // One size for every child, and both kinds are one byte: the per-chunk path
            // encodes nothing twice.
            let len = wire::encoded_len(&plain);
            for &to in children.iter().filter(|a| Some(**a) != sender) {
                let since = self
                    .neighbours
                    .get(&to)
                    .map_or(u64::MAX, |n| n.subscribed_at);
                let message = match prev_pushed_at.is_some_and(|t| t >= since) {
                    true => after_pushed.clone(),
                    false => plain.clone(),
                };
                self.out.send_sized(to, message, len);
            }
        }
        self.tree.put_back_children(stripe, children);
    }

    // ---- playout -------------------------------------------------------------------------

    pub(super) fn drain_playout(&mut self, now: u64) {
        let wall = self.wall(now);
        let missing = &mut self.repair.missing;
        let next = self.playout.drain(
            now,
            wall,
            self.cfg.tuning.linger_us,
            &mut self.timers,
            &mut self.out,
            |first, last| {
                for seq in Seq(first).through(Seq(last)) {
                    missing.remove(seq);
                }
            },
        );
        // What playout passed a whole history ago (played, skipped, or before its first
        // keyframe, which it skips without a word) is no longer worth asking for. Without
        // this a peer that joined before the stream began asked for a chunk 0 it never got
        // for as long as it ran, and its missing set spanned the whole stream (bl-sim: 2,139
        // seqs for 12 entries at 10 s). Dropping everything playout passed at once bounded
        // the set just as well but left 6 of 20 loopback peers forwarding nothing (tests/
        // swarm.rs), for a reason not yet understood; a history later changes nothing near
        // playout.
        if let Some(next) = next {
            self.repair
                .missing
                .remove_below(next.back(self.cfg.tuning.history as u64));
        }
    }

    /// Peer: playout starts at `start`; what lies between it and `last` (or the newest chunk
    /// held) is fetched from neighbours as repairs.
    pub(super) fn set_play_from(&mut self, now: u64, start: Seq, last: Seq) {
        self.begin_playout(now, start);
        self.fetch_gap(now, start, last);
        self.drain_playout(now);
    }

    /// Peer: what we lack from `start` to `last` (or the newest chunk held) is missing now.
    pub(super) fn fetch_gap(&mut self, now: u64, start: Seq, last: Seq) {
        let last = last.max(self.highest.unwrap_or_default());
        let tree = &self.tree;
        let stripes = self.place.stripes;
        self.repair.note_gap(
            Micros(now),
            start,
            last,
            &self.history,
            &self.cfg.tuning,
            |s| arrival(tree, stripes, now, s),
            &mut self.timers,
        );
    }

    /// Peer: playout starts at `start`, with what we hold from there on (played at the next
    /// drain).
    fn begin_playout(&mut self, now: u64, start: Seq) {
        self.playout.begin(now, start, self.history.from(start.0));
        self.tree.started(now);
        // Fetched while waiting for this keyframe: what precedes it will not play.
        self.repair.missing.remove_below(start);
    }

    /// Peer: everything up to `seq` exists somewhere: note what we lack as missing. Before
    /// playout has a start point nothing is missing yet (set_play_from marks the gaps from
    /// the start on; counting earlier gaps grew without bound, bl-sim 10k), except, once a
    /// joiner has waited long for a keyframe, what follows the seq it waits after
    /// ([`Playout::fetch_from`](crate::core::playout::Playout::fetch_from)).
    pub(super) fn note_known_seq(&mut self, now: u64, known: Known) {
        let Some(play_from) = self.playout.fetch_from(now) else {
            return;
        };
        let known = Known {
            proven: known.proven.min(self.plausible_newest(now)),
            ..known
        };
        let tree = &self.tree;
        let stripes = self.place.stripes;
        let arrival = |s: Seq| arrival(tree, stripes, now, s);
        self.repair.note_known(
            Micros(now),
            known,
            play_from,
            self.highest,
            &self.history,
            &self.cfg.tuning,
            arrival,
            &mut self.timers,
        );
    }

    /// The furthest the stream can have gone by now, by what we verified: our newest chunk,
    /// plus what the pace of our history (seqs per second of capture time) brings in the
    /// time since it was captured, plus a quarter history for bursts. Haves are unsigned: a
    /// median of them beyond this is a lie, and acted on it would drop every gap we are
    /// repairing (what lies a history behind it). With twice the pace, a peer whose newest
    /// chunk came 2 s after its capture dropped gaps ahead of its playout.
    /// Before we hold two chunks with a pace between them, a quarter history past our newest
    /// (no chunk: unbounded here, bounded by the playout start in `Repair::note_known`).
    pub(super) fn plausible_newest(&self, now: u64) -> Seq {
        let quarter = self.cfg.tuning.history as u64 / 4;
        let newest = self
            .highest
            .and_then(|h| self.history.get(h.0).map(|c| (h, c.capture_us)));
        let oldest = self
            .history
            .first()
            .and_then(|f| self.history.get(f).map(|c| (f, c.capture_us)));
        let (Some((Seq(high), high_at)), Some((low, low_at))) = (newest, oldest) else {
            return self.highest.map_or(Seq(u64::MAX), |h| h.ahead(quarter));
        };
        let (seqs, span_us) = (high.saturating_sub(low), high_at.saturating_sub(low_at));
        if seqs == 0 || span_us == 0 {
            return Seq(high).ahead(quarter);
        }
        let since_us = self.wall(now).saturating_sub(high_at);
        let pace = u128::from(seqs) * u128::from(since_us) / u128::from(span_us);
        let ahead = u64::try_from(pace).unwrap_or(u64::MAX);
        Seq(high).ahead(ahead).ahead(quarter)
    }

    /// The stream ends at `last` (the seq of its verified end record, which `from` sent):
    /// every other neighbour is sent the record. The seed lingers to serve repairs; a peer
    /// gives playout until one latency from now for what is still missing, or, if it never
    /// started playing, finishes at once: the stream ended before it joined.
    pub(super) fn learn_end(&mut self, now: u64, last: Seq, from: Source) {
        // Once (an end already known), and never after the node's work is over.
        if self.playout.lifecycle.end().is_some() || self.is_finished() {
            return;
        }
        if let Some(record) = self.end_record_at(last) {
            let message = Message::Chunk(record);
            let len = wire::encoded_len(&message);
            for addr in self.neighbours.keys().filter(|a| Some(**a) != from.addr()) {
                self.out.send_sized(*addr, message.clone(), len);
            }
        }
        let tuning = &self.cfg.tuning;
        match self.cfg.role {
            Role::Seed => {
                self.playout.lifecycle = Lifecycle::Lingering { last: Some(last) };
                self.timers.set(
                    Timer::Linger,
                    Micros(now) + tuning.latency_us + tuning.linger_us,
                );
            }
            Role::Peer if self.playout.play_from().is_none() => {
                self.playout.lifecycle = Lifecycle::Lingering { last: Some(last) };
                self.playout.finish = Finish::EndedBeforeStart;
                self.timers.set(Timer::Linger, Micros(now));
            }
            Role::Peer => {
                self.playout.lifecycle = Lifecycle::Ending { last };
                // What is missing keeps its wait: the end record is flooded to every
                // neighbour and outruns the tree's pushes of the last chunks, which were
                // asked for 50 ms after it though on their way (bl-sim, 1,000 × 10 s, seeds
                // 1-4: duplicates 3.93 -> 3.66 % of chunks played, continuity unchanged).
                self.note_known_seq(now, Known::verified(last));
                let deadline = Micros(now) + self.cfg.tuning.latency_us;
                self.timers.set(Timer::EndDeadline, deadline);
                self.check_end_complete(now);
            }
        }
    }

    /// The stream's end record, once known (it is the newest chunk, so history keeps it).
    pub(super) fn end_record(&self) -> Option<Arc<Chunk>> {
        self.end_record_at(self.playout.lifecycle.end()?)
    }

    fn end_record_at(&self, seq: Seq) -> Option<Arc<Chunk>> {
        self.history.get(seq.0).filter(|c| c.is_end()).cloned()
    }

    /// Peer: the stream ended and nothing is missing any more: playout need not wait.
    pub(super) fn check_end_complete(&mut self, now: u64) {
        let Lifecycle::Ending { last } = self.playout.lifecycle else {
            return;
        };
        if self.repair.missing.is_empty() && self.highest >= Some(last) {
            self.timers.clear(Timer::EndDeadline);
            self.playout.end_of_input(now);
            self.drain_playout(now);
        }
    }
}

/// How far back a chunk filling a gap looks for the chunk held before it.
const REPLAY_LOOKBACK: u64 = 64;

/// `a` is of an earlier broadcast than `b` under the same key: captured more than
/// [`REPLAY_SLACK_US`] before it (bl-chunk's captures never go back within a broadcast).
fn is_earlier_broadcast(a: &Chunk, b: &Chunk) -> bool {
    a.capture_us.saturating_add(REPLAY_SLACK_US) < b.capture_us
}

/// Whether a missing `seq` may still come by push: its stripe's parent is still sending it
/// and has sent nothing later. One gone quiet will not bring it.
fn arrival(tree: &StripeTree, stripes: u8, now: u64, seq: Seq) -> Arrival {
    let stripe = stripe_of(seq.0, stripes);
    if tree.flowing(now, stripe) && tree.newest(stripe).is_none_or(|newest| newest < seq.0) {
        Arrival::MayStillBePushed
    } else {
        Arrival::Lost
    }
}
