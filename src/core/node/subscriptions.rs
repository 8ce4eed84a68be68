//! The node's subscriptions: Subscribes it answers (the tree's admission, the guard's bars
//! and extra roots), answers to its own, and the seed's offers of extra roots.

use std::net::SocketAddr;

use super::Node;
use crate::core::config::{BACKLOG_MAX_CHUNKS, BARRED_US, STRAY_STOP_EVERY_US};
use crate::core::guard;
use crate::core::stripes::stripe_of;
use crate::core::tree::HoldStart;
use crate::core::units::Seq;
use crate::proto::wire::{self, Message, Role};

impl Node {
    /// `from` pushed us a chunk of `stripe`. If it feeds us the stripe without our asking
    /// ([`StripeTree::is_stray_feed`]) and is not our child in it (a chunk it sends up the
    /// tree is an answer), it is told to stop; the seed's push is taken as its acceptance.
    /// Our Unsubscribe, or its acceptance of our Subscribe, was lost: it still counts us as
    /// its child, our Haves keep it from calling us silent, and it would push the stripe
    /// beside our parent for as long as both lived.
    ///
    /// [`StripeTree::is_stray_feed`]: crate::core::tree::StripeTree::is_stray_feed
    pub(super) fn stop_stray_feed(&mut self, now: u64, from: SocketAddr, stripe: u8) {
        // While our parent withholds the stripe, a neighbour still feeding it is all that
        // carries it, and is let be. Stopped too, it cost continuity below withholders
        // (bl-sim, 1,000 peers, 4 withholders, seed 6: honest continuity 99.30 -> 98.89 %).
        if !self.tree.is_stray_feed(stripe, from) || self.tree.parent_withholds(stripe, now) {
            return;
        }
        let Some(n) = self.neighbours.get_mut(&from) else {
            return;
        };
        if n.children.contains(stripe) || now < n.strays_let_be_until {
            return;
        }
        n.strays_let_be_until = now + STRAY_STOP_EVERY_US;
        if n.role == Role::Seed {
            // The seed pushes only children it took, or offered a root slot: its push is its
            // acceptance, whose SubscribeReply was lost, and is taken or declined as one (a
            // member detached in its stripe takes it, as it would have taken the reply).
            self.on_subscribe_reply(now, from, stripe, true);
            if self.tree.parent(stripe) == Some(from) {
                return;
            }
        } else {
            self.out.send(from, &Message::Unsubscribe { stripe });
        }
        self.out.stats.counters.stray_feeds_stopped += 1;
    }

    pub(super) fn on_subscribe(
        &mut self,
        now: u64,
        from: SocketAddr,
        stripe: u8,
        hold_after: Option<u64>,
    ) {
        let barred = self.guard.is_barred(&from, now);
        let stripes = self.place.stripes;
        let extra_root = self.cfg.role == Role::Seed
            && self.guard.is_starved(stripe, now)
            && self
                .neighbours
                .get(&from)
                .is_some_and(|n| guard::is_starved_member(n, stripe, stripes));
        // Asked again while fed (a lost reply): the hold, or its release, was settled when
        // the subscription was taken. Honoured again, every repeated Subscribe fetched a
        // keyframe and the stripe's chunks from it.
        let fed_already = self
            .neighbours
            .get(&from)
            .is_some_and(|n| n.children.contains(stripe));
        let outcome = self.tree.on_subscribe(
            now,
            from,
            stripe,
            hold_after.is_some(),
            barred,
            extra_root,
            &self.place,
            self.cfg.tuning.max_upload,
            &mut self.neighbours,
            &mut self.out,
        );
        if let Some(barren) = outcome.displaced_barren {
            self.guard.bar(barren, now + BARRED_US);
        }
        if outcome.extra_root {
            self.note_extra_root(now, from, stripe);
        }
        // The seed pushes at once: its audits and barren rules judge its children by what
        // they pass on, and few joiners get a root slot.
        if outcome.accepted && !fed_already && self.cfg.role == Role::Peer {
            let start = self.tree.hold_for(
                now,
                from,
                hold_after,
                self.latest_keyframe.map(|k| k.0),
                self.highest.map(|h| h.0),
                self.cfg.tuning.history as u64 / 4,
            );
            if let HoldStart::ReleaseAt(keyframe) = start {
                self.release_hold(now, from, Seq(keyframe));
            }
        }
    }

    /// `from` stops feeding us `stripe`, or stops being fed it by us. A root the seed lets
    /// go in its member stripe asks the seed for peers: the answer names a root of the
    /// stripe older than it first (`climb::root_for`), below which it may find a place.
    pub(super) fn on_unsubscribe(&mut self, now: u64, from: SocketAddr, stripe: u8) {
        let let_go_by_seed = self
            .tree
            .on_unsubscribe(now, from, stripe, &mut self.neighbours);
        if let_go_by_seed && self.place.member == Some(stripe) {
            self.membership
                .ask_neighbour_for_peers(now, from, &mut self.out);
        }
    }

    /// A child held until a keyframe is released at `keyframe`: it is sent that keyframe
    /// (whatever its stripe: the first parent to release starts the joiner's playout) and
    /// the chunks from it on of the stripes we feed it, oldest first (playout needs them in
    /// order), at most [`BACKLOG_MAX_CHUNKS`]. Those are charged to the repair budget, as a
    /// child's: a child that unsubscribes and subscribes again gets no more than its
    /// requests would.
    pub(super) fn release_hold(&mut self, now: u64, to: SocketAddr, keyframe: Seq) {
        let stripes = self.place.stripes;
        let Some(fed) = self.neighbours.get(&to).map(|n| n.children) else {
            return;
        };
        let chunks: Vec<_> = self
            .history
            .from(keyframe.0)
            .filter(|c| c.seq == keyframe.0 || fed.contains(stripe_of(c.seq, stripes)))
            .take(BACKLOG_MAX_CHUNKS)
            .cloned()
            .collect();
        self.out.stats.counters.holds_released += 1;
        for chunk in chunks {
            if chunk.seq != keyframe.0 && !self.repair.budget.spend(true) {
                break;
            }
            self.repair.pushes.note(chunk.seq, now);
            let message = Message::Chunk(chunk);
            let len = wire::encoded_len(&message);
            self.out.send_sized(to, message, len);
        }
    }

    /// Seed, every tick: a stripe starved for [`STARVED_FOR_US`] gets an extra root at once
    /// ([`Guard::extra_root_candidate`], [`StripeTree::offer_extra_root`]) instead of
    /// waiting for one of its members to ask.
    ///
    /// [`STARVED_FOR_US`]: crate::core::config::STARVED_FOR_US
    /// [`Guard::extra_root_candidate`]: crate::core::guard::Guard::extra_root_candidate
    /// [`StripeTree::offer_extra_root`]: crate::core::tree::StripeTree::offer_extra_root
    pub(super) fn offer_extra_roots(&mut self, now: u64) {
        let stripes = self.place.stripes;
        for stripe in 0..stripes {
            let best = self
                .guard
                .extra_root_candidate(&self.neighbours, stripe, stripes, now);
            let Some(to) = best else {
                continue;
            };
            let offered = self.tree.offer_extra_root(
                now,
                to,
                stripe,
                &self.place,
                self.cfg.tuning.max_upload,
                &mut self.neighbours,
                &mut self.out,
            );
            match offered {
                Some(true) => self.note_extra_root(now, to, stripe),
                // Within the budget: no extra root, but the stripe waits as long for another.
                Some(false) => {
                    self.guard.extra_root_taken(stripe, now);
                    self.send_backlog(to, stripe);
                }
                None => {}
            }
        }
    }

    /// Seed, every tick: once its stripes have been calm long enough, a root of the stripe
    /// it took its oldest remembered extra root for is let go ([`crate::core::root_release`]).
    pub(super) fn release_extra_root(&mut self, now: u64) {
        let kept_before = self.root_release.kept();
        self.root_release.note(self.guard.starved_now(), now);
        for stripe in 0..self.place.stripes {
            let looks_withheld = self.guard.looks_withheld(stripe);
            if looks_withheld {
                self.root_release.keep(stripe);
            }
            // Said once per stripe: from here on the seed's upload keeps what those roots cost.
            if self.root_release.keeps(stripe) && !kept_before.contains(stripe) {
                let why = if looks_withheld {
                    "two thirds of its starved members here hang below a parent for a tick, or three quarters at once"
                } else {
                    "it starved again soon after one was let go"
                };
                self.out.warn(format!(
                    "stripe {stripe} looks withheld ({why}): roots taken for it beyond the budget are kept for good"
                ));
            }
        }
        self.settle_roots(now);
        let max_upload = self.cfg.tuning.max_upload;
        // Within the budget for now (a root left): every stripe stays remembered.
        if !self.root_release.due(now)
            || !self
                .tree
                .beyond_budget(&self.place, max_upload, &self.neighbours)
        {
            return;
        }
        for stripe in self.root_release.remembered() {
            // Let go, or its last root: either way that extra root is answered.
            self.root_release.forget_one(stripe);
            let released = self.tree.release_extra_root(
                now,
                stripe,
                &self.place,
                max_upload,
                &mut self.neighbours,
                &mut self.out,
            );
            if let Some(root) = released {
                self.root_release.released(stripe, now);
                self.out.stats.counters.extra_roots_released += 1;
                let calm_s = self.root_release.calm_us() / 1_000_000;
                self.out.warn(format!(
                    "let {root} go as a root of stripe {stripe} (one beyond its budget): no stripe looked starved for {calm_s} s"
                ));
                return;
            }
        }
    }

    /// Seed, every tick: once the swarm is calm ([`RootRelease::settle_due`]), and large
    /// enough that every stripe has a member root and no leaf hangs at the seed, its budget
    /// holds one root per stripe, and the roots beyond are let go one per calm spell, as extra
    /// roots are. The rest of the budget (with the model's 1.25 copies, a fifth slot: a
    /// second root of one stripe, a quarter of a stream copy) buys the swarm its forming:
    /// more room near the root while peers join fast, and a second root beside a withholder
    /// in the first slots. Kept all broadcast, it was the largest part of the seed's upload
    /// that was not the stream (bl-sim, 1,000 peers × 20 s, seeds 1–8: source amplification
    /// 1.492 with it, 1.336 settled; docs/PERFORMANCE.md). A swarm that keeps an extra root
    /// for good (its stripe looked withheld) before it settles keeps the whole budget.
    /// Settling is for good: a flash crowd later is helped by extra roots of the stripes
    /// that starve, up to K beyond the whole budget.
    ///
    /// [`RootRelease::settle_due`]: crate::core::root_release::RootRelease::settle_due
    fn settle_roots(&mut self, now: u64) {
        if self.highest.is_some() {
            self.root_release.began(now);
        }
        // One walk over the seed's neighbours: how many roots feed each stripe, and whether
        // each has a member root and none is a leaf.
        let stripes = usize::from(self.place.stripes);
        let mut roots = vec![0usize; stripes];
        let mut member_root = vec![false; stripes];
        let mut leaf = false;
        for n in self.neighbours.values() {
            for stripe in n.children.iter() {
                let Some(count) = roots.get_mut(usize::from(stripe)) else {
                    continue;
                };
                *count += 1;
                if n.member == Some(stripe) {
                    member_root[usize::from(stripe)] = true;
                } else {
                    leaf = true;
                }
            }
        }
        // A swarm large enough that every stripe has a member among the seed's children and
        // the seed feeds no leaf. A small one feeds leaves of stripes without a member from
        // the spare slots, and let go they had nobody to feed them (bl-sim, 6 peers, seed 6:
        // 24 chunks skipped, latency p99 696 -> 1,855 ms).
        let large = !leaf && member_root.iter().all(|m| *m);
        if large && self.root_release.settle_due(now) {
            self.root_release.settle();
            let calm_s = self.root_release.calm_us() / 1_000_000;
            self.out.warn(format!(
                "the swarm is calm (no stripe looked starved for {calm_s} s): one root per stripe from now on, the rest of the budget for stripes that starve"
            ));
        }
        self.root_release.remember_surplus(&roots);
        self.tree.settle_roots(self.root_release.settled());
    }

    fn note_extra_root(&mut self, now: u64, to: SocketAddr, stripe: u8) {
        // A stripe that looks withheld is kept by release_extra_root's latch, every tick.
        self.root_release.taken(stripe);
        self.guard.extra_root_taken(stripe, now);
        self.out.stats.counters.extra_roots += 1;
        let sent = self.send_backlog(to, stripe);
        self.out.warn(format!(
            "took {to} as an extra root of stripe {stripe}: most of its members here are starved of it (sent it {sent} chunks of the stripe it lacked)"
        ));
    }

    /// Seed: `to` was just made a root of starved `stripe`: it gets the stripe's recent chunks
    /// it lacks, which only we and the withholder held ([`guard::starved_backlog`], once per
    /// neighbour and stripe); how many.
    fn send_backlog(&mut self, to: SocketAddr, stripe: u8) -> usize {
        let stripes = self.place.stripes;
        let Some(n) = self.neighbours.get_mut(&to) else {
            return 0;
        };
        let backlog = guard::starved_backlog(&self.history, n, stripe, stripes);
        let sent = backlog.len();
        for chunk in backlog {
            let message = Message::Chunk(chunk);
            let len = wire::encoded_len(&message);
            self.out.send_sized(to, message, len);
        }
        sent
    }

    /// Seed: `from` claims to hold seq `claimed`, past our newest chunk, which nobody can
    /// ([`guard::claims_past_the_source`]): its claims are not believed (the Have is not
    /// kept), it loses its root slots, and it may not take one for [`BARRED_US`]. A liar
    /// claiming every seq took a stripe's only root slot 0.2 s into the stream and withheld
    /// it; the stripe's members could show it starved only a second later (bl-sim, 1,000
    /// peers, 5 % liars, seed 10). Barred, not banned: a peer still holding a restarted
    /// broadcast's higher seqs is honest, and comes back once it has moved to ours.
    pub(super) fn refute_claim(&mut self, now: u64, from: SocketAddr, claimed: u64) {
        self.out.stats.counters.claims_refuted += 1;
        let newest = self.highest.map_or(0, |s| s.0);
        if !self.guard.is_barred(&from, now) {
            self.out.warn(format!(
                "barred {from} from root slots: it claims chunk seq {claimed}, past our newest ({newest})"
            ));
        }
        self.guard.bar(from, now + BARRED_US);
        self.tree
            .let_go_every_stripe(from, &mut self.neighbours, &mut self.out);
    }

    pub(super) fn on_subscribe_reply(
        &mut self,
        now: u64,
        from: SocketAddr,
        stripe: u8,
        accepted: bool,
    ) {
        // The seed asks nobody to feed it: an acceptance sent to it is a neighbour's trick to
        // be counted as its parent (and get its Haves every tick).
        if self.cfg.role == Role::Seed {
            return;
        }
        // Whether the seed leaves our requests unanswered does not matter here: it serves
        // repairs from a small budget, and declining its offers for that left a withholder's
        // stripe without a root (bl-sim, 4 withholders, seed 6: 99.46 -> 96.78 %).
        let from_seed = self
            .neighbours
            .get(&from)
            .is_some_and(|n| n.role == Role::Seed);
        let adrift = self.place.member == Some(stripe)
            && (self.tree.depth(&self.place, &self.neighbours) == u8::MAX
                || self.tree.parent_withholds(stripe, now));
        self.tree.on_subscribe_reply(
            now,
            from,
            stripe,
            accepted,
            from_seed,
            adrift,
            &mut self.out,
        )
    }
}
