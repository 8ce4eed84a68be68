//! Admission: whom this node takes as a child of a stripe. The seed keeps its few root slots
//! for the oldest members of each stripe, displaces barren and silent children, and takes
//! extra roots for stripes it finds starved; a peer feeds its member stripe, where a member
//! of it may displace a leaf, and adopts leaves of other stripes with its spare slots.

use std::net::SocketAddr;

use super::{is_silent, Place, StripeTree};
use crate::core::config::{
    ADOPTION_HEADROOM, HANDOVER_US, MEMBER_DISPLACED_EVERY_US, MEMBER_SILENT_FOR_LEAF_US,
};
use crate::core::guard::is_barren;
use crate::core::neighbours::{Neighbour, Neighbours};
use crate::core::outbox::Outbox;
use crate::proto::wire::{Message, Role};

/// What an accepted Subscribe cost someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOutcome {
    pub accepted: bool,
    /// Seed: a barren child displaced for the newcomer (the guard bars it for a while).
    pub displaced_barren: Option<SocketAddr>,
    /// Seed: the newcomer was taken beyond the budget, as an extra root of a starved stripe.
    pub extra_root: bool,
}

impl SubscribeOutcome {
    /// Accepted or not, at nobody's cost and within the budget.
    fn plain(accepted: bool) -> SubscribeOutcome {
        SubscribeOutcome {
            accepted,
            displaced_barren: None,
            extra_root: false,
        }
    }
}

/// The seed's order for its few stripe slots, best first: a silent child last (see
/// [`is_silent`]), then a barren one (see [`is_barren`]), then members before leaves, lower
/// indices (older, as far as the seed believes: [`Neighbour::seed_rank_index`]) first.
fn child_rank(n: &Neighbour, stripe: u8, now: u64) -> (bool, bool, bool, u64) {
    (
        is_silent(n, now),
        is_barren(n, now),
        n.member != Some(stripe),
        n.seed_rank_index(),
    )
}

/// Whether `n` lost a place in its member stripe at least as high as `depth` (ours, known):
/// its latest Have says it is detached, and its last Have that placed it said no deeper.
fn lost_a_place_as_high(n: &Neighbour, depth: u8) -> bool {
    depth != u8::MAX && n.depth == u8::MAX && n.attached_depth <= depth
}

/// A peer's answer to a Subscribe before it looks for room.
enum Acceptance {
    Yes,
    No,
    /// Full, but this child has gone silent: its slot (in that stripe) is taken.
    InPlaceOf(SocketAddr, u8),
    IfALeafMakesRoom,
}

impl StripeTree {
    /// Stripe subscriptions a node of `place` with upload budget `max_upload` may feed.
    pub(super) fn slots(place: &Place, max_upload: f64) -> usize {
        (max_upload * f64::from(place.stripes)).floor() as usize
    }

    /// The seed's root slots now: all of its budget while the swarm forms, one per stripe
    /// once it has settled ([`StripeTree::settle_roots`]). Extra roots of starved stripes
    /// are counted beyond this, up to K beyond the whole budget either way.
    pub(super) fn seed_slots(&self, place: &Place, max_upload: f64) -> usize {
        let budget = Self::slots(place, max_upload);
        match self.roots_settled {
            true => budget.min(usize::from(place.stripes)),
            false => budget,
        }
    }

    /// The most root slots the seed feeds, extra roots included: K beyond its whole budget.
    fn seed_cap(place: &Place, max_upload: f64) -> usize {
        Self::slots(place, max_upload) + usize::from(place.stripes)
    }

    /// `from` asks to be fed `stripe`. The seed keeps max_upload × K subscriptions in all
    /// (one per stripe once settled: [`StripeTree::seed_slots`]) and always at least one per
    /// stripe, ranking candidates by [`child_rank`], and refuses
    /// whom the guard `barred`; it takes up to K more, one at a time, as `extra_root`s of
    /// stripes the guard finds starved. A peer feeds its member stripe, where a member of it
    /// may displace a leaf, and adopts leaves of other stripes while it has room to spare.
    #[allow(clippy::too_many_arguments)]
    pub fn on_subscribe(
        &mut self,
        now: u64,
        from: SocketAddr,
        stripe: u8,
        wants_hold: bool,
        barred: bool,
        extra_root: bool,
        place: &Place,
        max_upload: f64,
        neighbours: &mut Neighbours,
        out: &mut Outbox,
    ) -> SubscribeOutcome {
        let refuse = SubscribeOutcome::plain(false);
        if stripe >= place.stripes {
            return refuse;
        }
        let Some(requester) = neighbours.get(&from) else {
            return refuse;
        };
        // Already fed the stripe (its Subscribe crossed our offer, or our reply was lost): it
        // keeps its slot, and nobody is displaced for it (counted in the total but not among
        // the candidates to displace, it made the seed let another root go).
        if requester.children.contains(stripe) {
            out.send(
                from,
                &Message::SubscribeReply {
                    stripe,
                    accepted: true,
                },
            );
            return SubscribeOutcome::plain(true);
        }
        let outcome = match place.role {
            Role::Seed if barred => refuse,
            Role::Seed => self.seed_accepts(
                now, from, stripe, extra_root, place, max_upload, neighbours, out,
            ),
            Role::Peer => {
                let accepted =
                    self.peer_accepts(now, from, stripe, wants_hold, place, max_upload, neighbours);
                let accepted = match accepted {
                    Acceptance::Yes => true,
                    Acceptance::No => false,
                    Acceptance::InPlaceOf(silent, its_stripe) => {
                        self.let_go(silent, its_stripe, neighbours, out);
                        true
                    }
                    Acceptance::IfALeafMakesRoom => {
                        // A member that lost a place as high as ours is worth a younger
                        // member's place.
                        let depth = self.depth(place, neighbours);
                        let older =
                            lost_a_place_as_high(requester, depth).then_some(requester.index);
                        self.make_room_for_member(now, older, stripe, neighbours, out)
                    }
                };
                SubscribeOutcome::plain(accepted)
            }
        };
        if outcome.accepted {
            self.take_child(now, from, stripe, neighbours);
        }
        out.send(
            from,
            &Message::SubscribeReply {
                stripe,
                accepted: outcome.accepted,
            },
        );
        outcome
    }

    /// The seed's slots: budget max_upload × K subscriptions in all, and always at least one
    /// per stripe. Small swarms (stripes without members) use the spare budget; large ones
    /// end with one member per stripe at the seed. Lower-index members belong nearest the
    /// root: they displace others, and anyone displaces a barren child.
    #[allow(clippy::too_many_arguments)]
    fn seed_accepts(
        &mut self,
        now: u64,
        from: SocketAddr,
        stripe: u8,
        extra_root: bool,
        place: &Place,
        max_upload: f64,
        neighbours: &mut Neighbours,
        out: &mut Outbox,
    ) -> SubscribeOutcome {
        let no = SubscribeOutcome::plain(false);
        let Some(requester) = neighbours.get(&from) else {
            return no;
        };
        let requester_rank = child_rank(requester, stripe, now);
        let budget = self.seed_slots(place, max_upload);
        let total = neighbours.children_count() as usize;
        let worst = neighbours
            .iter()
            .filter(|(addr, n)| n.children.contains(stripe) && **addr != from)
            .map(|(addr, n)| (*addr, child_rank(n, stripe, now)))
            .max_by_key(|(_, r)| *r);
        let Some((worst, rank)) = worst else {
            return SubscribeOutcome::plain(true);
        };
        if total < budget {
            return SubscribeOutcome::plain(true);
        }
        // A starved stripe's detached member: one more root, displacing nobody (the root it
        // starves under may be an honest one whose subtree is still forming).
        if extra_root && total < Self::seed_cap(place, max_upload) {
            return SubscribeOutcome {
                accepted: true,
                displaced_barren: None,
                extra_root: true,
            };
        }
        // A leaf takes a member's slot only from a barren member, or one silent for
        // MEMBER_SILENT_FOR_LEAF_US.
        let member_alive = neighbours
            .get(&worst)
            .is_some_and(|n| now <= n.last_heard + MEMBER_SILENT_FOR_LEAF_US);
        let leaf_for_member = requester_rank.2 && !rank.2 && !rank.1 && member_alive;
        if requester_rank >= rank || leaf_for_member {
            let Some((leaf, its_stripe)) = Self::leaf_a_member_can_feed(now, stripe, neighbours)
            else {
                return no;
            };
            self.let_go(leaf, its_stripe, neighbours, out);
            return SubscribeOutcome::plain(true);
        }
        self.let_go(worst, stripe, neighbours, out);
        SubscribeOutcome {
            accepted: true,
            displaced_barren: rank.1.then_some(worst),
            extra_root: false,
        }
    }

    /// Seed, full, asked for `stripe` by a leaf that may not displace its children: if no
    /// neighbour is a member of `stripe`, nobody else can feed it, and a leaf we feed in a
    /// stripe whose member has room (its last Have) gives its slot up and goes to that
    /// member. Without this, three viewers that had all asked the seed first (members were
    /// detached then) kept its six slots with leaves of member stripes, and the two left
    /// without the stripe no viewer was a member of lived on repairs (tests/discovery.rs).
    /// A swarm with members of every stripe among the seed's neighbours never gets here.
    fn leaf_a_member_can_feed(
        now: u64,
        stripe: u8,
        neighbours: &Neighbours,
    ) -> Option<(SocketAddr, u8)> {
        let members = |s: u8| {
            neighbours
                .values()
                .filter(move |m| m.role == Role::Peer && m.member == Some(s) && !is_silent(m, now))
        };
        if members(stripe).next().is_some() {
            return None;
        }
        neighbours
            .iter()
            .flat_map(|(addr, n)| n.children.iter().map(move |s| (*addr, n, s)))
            .filter(|(_, n, s)| n.member != Some(*s) && members(*s).any(|m| m.spare > 0))
            .max_by_key(|(_, n, s)| child_rank(n, *s, now))
            .map(|(addr, _, s)| (addr, s))
    }

    #[allow(clippy::too_many_arguments)]
    fn peer_accepts(
        &self,
        now: u64,
        from: SocketAddr,
        stripe: u8,
        wants_hold: bool,
        place: &Place,
        max_upload: f64,
        neighbours: &Neighbours,
    ) -> Acceptance {
        let Some(requester) = neighbours.get(&from) else {
            return Acceptance::No;
        };
        let slots = Self::slots(place, max_upload);
        // Every stripe's children share the uplink: a member's own and any it adopted.
        let used = usize::from(neighbours.children_count());
        let interior = requester.member == Some(stripe);
        let own = place.member == Some(stripe);
        let orderly = !interior || requester.index > place.index;
        let eligible = match own {
            true => orderly,
            false => !interior && !wants_hold && self.adopts(now, stripe, neighbours),
        };
        let eligible = eligible && self.parent(stripe) != Some(from);
        if !eligible || slots == 0 {
            Acceptance::No
        } else if used < slots && (own || used + ADOPTION_HEADROOM < slots) {
            Acceptance::Yes
        } else if let Some((silent, its_stripe)) = neighbours
            .iter()
            .filter(|(a, n)| **a != from && is_silent(n, now))
            .find_map(|(a, n)| n.children.iter().next().map(|s| (*a, s)))
        {
            Acceptance::InPlaceOf(silent, its_stripe)
        } else if own && interior {
            Acceptance::IfALeafMakesRoom
        } else {
            Acceptance::No
        }
    }

    /// Whether this peer feeds a leaf `stripe`, not its member stripe, from its spare upload
    /// (adoption, as SplitStream's spare capacity): only while its own parent in the stripe
    /// is a member of it or the seed, and pushes. A chain of adopters then always ends in
    /// the member tree, which takes only members, so no adoption closes a loop. Without it,
    /// a leaf whose member neighbours were all full lived on repairs, though neighbours of
    /// other stripes had room to spare. A joiner that asks to be held until a keyframe is
    /// not adopted: its release is a burst (the keyframe and the chunks after it), and its
    /// stripe is better served by a member, or the seed, while the swarm forms (bl-sim, 1,000
    /// peers joining over 2 s, seeds 1-3: chunks skipped 156 -> 106 without those adoptions).
    /// Before the stream nothing pushes, so the parent is not judged on pushes then: judged
    /// so, nobody adopted before the stream, and a leaf that every member refused waited for
    /// the stripe until a second into it (bl-sim, 50 peers x 8 s, the stream at 2 s, seeds
    /// 1-30: repairs 3,664 -> 2,834; seed 7: one leaf refused by 11 peers, 63 repairs).
    fn adopts(&self, now: u64, stripe: u8, neighbours: &Neighbours) -> bool {
        let parent = self.parent(stripe).and_then(|p| neighbours.get(&p));
        let in_tree = parent.is_some_and(|p| p.role == Role::Seed || p.member == Some(stripe));
        in_tree && (self.flowing(now, stripe) || self.unbegun())
    }

    /// Full, but a member of our stripe asks: a leaf goes ([`StripeTree::displace_leaf`]), or
    /// else, for a member that lost a place as high as ours (`older`: its index; its Haves
    /// placed it no deeper than we are), the youngest member child younger than it, at most
    /// once per [`MEMBER_DISPLACED_EVERY_US`]. The child let go finds another older member,
    /// as a root let go does: the one above takes the next level's youngest, and so on down
    /// to a member with room. A member may hang only below an older one, and the oldest are
    /// full of younger members: a root the seed let go as it settled often had no older
    /// member with room, and its subtree lived on repairs (bl-sim, 1,000 peers, seed 4: its
    /// 63–66-peer subtree detached from 5.2 s until the seed took another root at 17.7 s).
    /// Judged by the place it lost, not by how long it has been adrift, this leaves the
    /// forming trees alone: joiners were never placed (bl-sim, 1,000 peers × 20 s, seeds
    /// 1–8: detached 4.99 → 3.97 %, duplicates 1.86 → 1.84 %, chunks skipped the same;
    /// letting a member adrift for 2 s with a subtree displace, 4.06 % and 2.00 %). Only
    /// while its Haves say it is detached: a withholder announces depth 1 all along, and
    /// taken so it starved the subtrees it displaced (`--withholders 4`, seeds 1–6: chunks
    /// skipped 14,782 → 15,987; 14,329 with this check).
    fn make_room_for_member(
        &mut self,
        now: u64,
        older: Option<u64>,
        stripe: u8,
        neighbours: &mut Neighbours,
        out: &mut Outbox,
    ) -> bool {
        if self.displace_leaf(stripe, neighbours, out) {
            return true;
        }
        let Some(older) = older else {
            return false;
        };
        if self
            .member_displaced_at
            .is_some_and(|at| now < at.saturating_add(MEMBER_DISPLACED_EVERY_US))
        {
            return false;
        }
        let youngest = neighbours
            .iter()
            .filter(|(_, n)| n.children.contains(stripe) && n.member == Some(stripe))
            .filter(|(_, n)| n.index > older)
            .max_by_key(|(a, n)| (n.index, **a))
            .map(|(a, _)| *a);
        let Some(child) = youngest else {
            return false;
        };
        self.let_go(child, stripe, neighbours, out);
        self.member_displaced_at = Some(now);
        true
    }

    /// Full, but a member of the stripe must find a place in its interior or the stripe's
    /// tree falls apart: it displaces a leaf, which finds another parent. A leaf of another
    /// stripe (adopted) goes first, then the youngest leaf of this one.
    fn displace_leaf(&mut self, stripe: u8, neighbours: &mut Neighbours, out: &mut Outbox) -> bool {
        let leaf = neighbours
            .iter()
            .flat_map(|(a, n)| n.children.iter().map(move |s| (a, n, s)))
            .filter(|(_, n, s)| n.member != Some(*s))
            .map(|(a, n, s)| ((s != stripe, n.index), *a, s))
            .max();
        let Some((_, leaf, its_stripe)) = leaf else {
            return false;
        };
        self.let_go(leaf, its_stripe, neighbours, out);
        true
    }

    /// `child` is fed no stripe any longer, and is told so for each.
    pub fn let_go_every_stripe(
        &mut self,
        child: SocketAddr,
        neighbours: &mut Neighbours,
        out: &mut Outbox,
    ) {
        let fed = neighbours
            .get(&child)
            .map(|n| n.children)
            .unwrap_or_default();
        for stripe in fed.iter() {
            self.let_go(child, stripe, neighbours, out);
        }
    }

    /// `child` is no longer fed `stripe`, and is told so.
    fn let_go(
        &mut self,
        child: SocketAddr,
        stripe: u8,
        neighbours: &mut Neighbours,
        out: &mut Outbox,
    ) {
        if let Some(n) = neighbours.get_mut(&child) {
            n.children.remove(stripe);
            if n.children.is_empty() {
                self.end_hold(child);
            }
        }
        self.children_stale = true;
        out.send(child, &Message::Unsubscribe { stripe });
    }

    /// Seed: offers `to`, a detached member of `stripe` whose Haves show it starved of the
    /// stripe, a root slot it did not ask for: within the budget if there is room, else as
    /// an extra root (at most K beyond the budget in all, as for
    /// [`StripeTree::on_subscribe`]'s). Members ask the seed only now and then (it refused
    /// most of them a moment earlier, and they wait 2 s before asking again): waiting for one
    /// to ask left a stripe whose only root withheld it dead for another half second after
    /// the seed found it starved (bl-sim, 5 % liars, seed 8). `None` if nothing was offered,
    /// else whether the slot lies beyond the budget.
    #[allow(clippy::too_many_arguments)]
    pub fn offer_extra_root(
        &mut self,
        now: u64,
        to: SocketAddr,
        stripe: u8,
        place: &Place,
        max_upload: f64,
        neighbours: &mut Neighbours,
        out: &mut Outbox,
    ) -> Option<bool> {
        let budget = self.seed_slots(place, max_upload);
        let total = usize::from(neighbours.children_count());
        let fed = neighbours.get(&to)?.children.contains(stripe);
        let room = total < Self::seed_cap(place, max_upload);
        if place.role != Role::Seed || stripe >= place.stripes || fed || !room {
            return None;
        }
        self.take_child(now, to, stripe, neighbours);
        out.send(
            to,
            &Message::SubscribeReply {
                stripe,
                accepted: true,
            },
        );
        Some(total >= budget)
    }

    /// Seed: whether it feeds more subscriptions than its budget.
    pub fn beyond_budget(&self, place: &Place, max_upload: f64, neighbours: &Neighbours) -> bool {
        usize::from(neighbours.children_count()) > self.seed_slots(place, max_upload)
    }

    /// Seed: lets go of one root of `stripe`, for which it took an extra root
    /// ([`crate::core::root_release`]), if it still feeds more than its budget and the stripe
    /// has another root: the one it ranks worst ([`child_rank`]: silent, barren, a leaf, or
    /// the youngest). The extra root itself was often the stripe's oldest member (the seed
    /// offers the slot to its oldest starved member); let go, it had no older member to feed
    /// it, asked the seed again and displaced the stripe's other root (bl-sim, 1,000 peers ×
    /// 20 s, seed 1). The root let go finds a parent among the stripe's members, as after
    /// any Unsubscribe, and its subtree goes with it; the seed still pushes it the stripe for
    /// [`HANDOVER_US`] meanwhile. Whom it let go.
    pub fn release_extra_root(
        &mut self,
        now: u64,
        stripe: u8,
        place: &Place,
        max_upload: f64,
        neighbours: &mut Neighbours,
        out: &mut Outbox,
    ) -> Option<SocketAddr> {
        if place.role != Role::Seed || !self.beyond_budget(place, max_upload, neighbours) {
            return None;
        }
        let roots = || {
            neighbours
                .iter()
                .filter(|(_, n)| n.children.contains(stripe))
        };
        if roots().count() < 2 {
            return None;
        }
        let (worst, _) = roots()
            .map(|(addr, n)| (*addr, child_rank(n, stripe, now)))
            .max_by_key(|(addr, rank)| (*rank, *addr))?;
        self.let_go(worst, stripe, neighbours, out);
        self.handovers
            .retain(|h| h.to != worst || h.stripe != stripe);
        self.handovers.push(super::Handover {
            to: worst,
            stripe,
            until: now + HANDOVER_US,
        });
        Some(worst)
    }

    /// `from` is fed `stripe` from now on.
    fn take_child(&mut self, now: u64, from: SocketAddr, stripe: u8, neighbours: &mut Neighbours) {
        if let Some(n) = neighbours.get_mut(&from) {
            if n.children.is_empty() {
                n.fed_since = now;
                n.audit = None;
                n.audits_unanswered = 0;
            }
            n.subscribed_at = now;
            n.children.insert(stripe);
            self.children_stale = true;
        }
    }
}
