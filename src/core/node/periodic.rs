//! The node's periodic work: every tick the sub-machines' jobs run in one fixed order.

use super::Node;
use crate::core::config::{AUDIT_TICKS, CATCH_UP_MAX_CHUNKS, QUIET_WARN_US, START_GRACE_US};
use crate::core::guard::Guard;
use crate::core::membership::Membership;
use crate::core::outbox::Finish;
use crate::core::playout::Lifecycle;
use crate::core::playout::Start;
use crate::core::repair;
use crate::core::units::{Micros, Seq};
use crate::proto::wire::{Message, Role};

impl Node {
    // ---- periodic ------------------------------------------------------------------------

    /// Every [`TICK_US`]: the periodic jobs, in this order.
    pub(super) fn tick(&mut self, now: u64) {
        for addr in Membership::silent(now, &self.neighbours) {
            self.drop_neighbour(addr);
        }
        self.neighbours.forgive_ignored(now);
        self.let_go_unsubscribed(now);
        let (place, tuning) = (&self.place, &self.cfg.tuning);
        self.membership
            .retry_hellos(now, place, &mut self.rng, &mut self.out);
        self.membership
            .retry_confirms(now, place, &mut self.neighbours, &mut self.out);
        let finished = matches!(self.playout.lifecycle, Lifecycle::Finished { .. });
        self.membership.rebootstrap(
            now,
            place,
            tuning,
            finished,
            &self.neighbours,
            &mut self.rng,
            &mut self.out,
        );
        self.repair.budget.refill(
            self.cfg.role,
            tuning.max_upload,
            self.neighbours.children_count(),
            place.stripes,
        );
        self.ticks += 1;
        let have = self.have();
        let tree = &self.tree;
        repair::announce(
            self.ticks,
            self.cfg.role,
            &have,
            |addr| tree.is_parent(addr),
            &self.neighbours,
            &mut self.out,
        );
        let orphans = self.tree.orphans(&self.place);
        self.membership.exchange_peers(
            now,
            &self.cfg.tuning,
            orphans,
            &self.neighbours,
            &mut self.rng,
            &mut self.out,
        );
        if orphans.is_empty() {
            self.ask_for_a_stranger(now);
            self.ask_who_is_above(now);
        }
        self.tree.forget_expired_refusals(now);
        self.membership.forget_unanswered(now);
        if self.cfg.role == Role::Seed && self.ticks % AUDIT_TICKS == 0 {
            Guard::audit(
                &mut self.neighbours,
                &self.history,
                self.highest,
                self.place.stripes,
                &mut self.out,
            );
        }
        if self.cfg.role == Role::Seed {
            self.guard
                .note_starved_stripes(&self.neighbours, self.place.stripes, now);
            self.offer_extra_roots(now);
            self.release_extra_root(now);
        }
        self.guard.forget_expired(now);
        if self.cfg.role == Role::Peer {
            let tree = &self.tree;
            self.repair.stripes_gone_quiet(
                Micros(now),
                self.place.stripes,
                |stripe| tree.flowing(now, stripe),
                &mut self.timers,
            );
        }
        // The stream moved on without us: half our neighbours announce seqs two per stripe
        // past the newest we hold.
        let ahead = 2 * u64::from(self.place.stripes);
        let moved_on = self
            .repair
            .corroborated
            .is_some_and(|p| self.highest.is_none_or(|h| p > h.ahead(ahead)));
        self.tree.expire_holds(now);
        self.tree
            .set_hold_after(self.playout.awaits_keyframe_after().map(|s| s.0));
        self.tree
            .set_told_unbegun(self.playout.joined_before_stream);
        // The same Have, as it reads without a parent in our member stripe.
        let mut detached_have = have;
        if let Message::Have { depth, .. } = &mut detached_have {
            *depth = u8::MAX;
        }
        self.tree.maintain(
            now,
            moved_on,
            &self.place,
            &self.neighbours,
            &detached_have,
            &mut self.rng,
            &mut self.out,
        );
        if self.cfg.role == Role::Peer && self.playout.early_start_due(now) {
            self.start_early(now);
        }
        if self.cfg.role == Role::Peer {
            self.watch_start(now);
            self.watch_silence(now);
        }
    }

    /// Peer: the start position came from a Welcome, which is unsigned. A position a quarter
    /// history past every chunk verified a second after chunks began to arrive is a lie (a
    /// neighbour named seqs near u64::MAX and playout waited for ever): it is forgotten, and
    /// playout starts
    /// from what verified: the newest keyframe held if at most [`CATCH_UP_MAX_CHUNKS`]
    /// followed it, else the next keyframe.
    pub(super) fn watch_start(&mut self, now: u64) {
        let (Some(first_chunk), Some(highest)) = (self.playout.first_chunk_at, self.highest) else {
            return;
        };
        if self.playout.first_play_at.is_some() || now < first_chunk + START_GRACE_US {
            return;
        }
        // As far past our newest verified chunk as a Have is believed (repair::note_known).
        let bound = highest.ahead(self.cfg.tuning.history as u64 / 4);
        let beyond = match self.playout.start {
            Start::From(p) => p > bound,
            Start::AwaitKeyframeAfter(after) => after > bound,
            Start::Unknown => false,
        };
        if !beyond {
            return;
        }
        self.out.stats.counters.positions_ignored += 1;
        self.playout.forget_start();
        self.repair.missing.remove_below(Seq(u64::MAX));
        let keyframe = self
            .latest_keyframe
            .filter(|k| highest.0 - k.0 <= CATCH_UP_MAX_CHUNKS);
        match keyframe {
            Some(k) => self.set_play_from(now, k, highest),
            None => self.playout.start = Start::AwaitKeyframeAfter(highest),
        }
    }

    /// Peer: a silence (no answer to our Hellos, or no verified chunk) is said on stderr
    /// after [`QUIET_WARN_US`], and after --give-up the peer gives up. Only verified chunks
    /// count as data: a neighbour that sends anything else cannot keep a dead stream alive.
    pub(super) fn watch_silence(&mut self, now: u64) {
        if self.playout.lifecycle != Lifecycle::Live {
            return;
        }
        let quiet = now.saturating_sub(self.playout.last_data);
        let secs = quiet / 1_000_000;
        let answered = !self.neighbours.is_empty() || self.playout.first_chunk_at.is_some();
        let asked = || {
            let addrs: Vec<String> = self
                .membership
                .bootstrap()
                .iter()
                .map(|a| a.to_string())
                .collect();
            match addrs.is_empty() {
                // Found through trackers or the DHT: no address of ours to name.
                true => "any peer of the swarm".to_string(),
                false => addrs.join(", "),
            }
        };
        if self
            .cfg
            .tuning
            .give_up_us
            .is_some_and(|limit| quiet >= limit)
        {
            let why = match answered {
                true => format!("no data for {secs} s"),
                false => format!("no answer from {} in {secs} s", asked()),
            };
            self.finish(Finish::GaveUp(why));
        } else if quiet >= QUIET_WARN_US && !self.playout.silence_reported {
            self.playout.silence_reported = true;
            let what = match answered {
                true => format!("no data for {secs} s: the seed may be gone"),
                false => format!("no answer from {} yet", asked()),
            };
            self.out.warn(what);
        }
    }

    /// Joined before the stream began: once chunks have flowed for a moment, the oldest
    /// chunk anyone around holds is the start (whichever stripe arrived first is not), or
    /// seq 0 when that chunk is within the catch-up of it.
    pub(super) fn start_early(&mut self, now: u64) {
        if self.playout.gaps_deferred {
            // Started at seq 0 already (chunks.rs): only what it lacks is left to do.
            self.playout.stop_deferring_gaps(now);
            if let Some(start) = self.playout.play_from() {
                self.fetch_gap(now, start, start);
            }
            return;
        }
        let announced = self
            .neighbours
            .values()
            .filter_map(|n| n.have)
            .filter(|h| h.recent != 0)
            .map(|h| h.first);
        let oldest = announced.chain(self.history.first()).min();
        // Every stream begins at seq 0, a keyframe (bl-chunk numbers from 0). Lost on its way
        // to every peer around, the oldest chunk they held was seq 1, and those that joined
        // before the stream started there, mid-GOP (bl-sim, 50 peers × 8 s, 1 % loss, seed
        // 80: 45 of 50). Near the start, seq 0 is the start, fetched as any gap.
        let first = oldest.map(|o| match o <= CATCH_UP_MAX_CHUNKS {
            true => 0,
            false => o,
        });
        if let (Some(first), Some(last)) = (first, self.highest) {
            self.set_play_from(now, Seq(first), last);
        }
    }
}
