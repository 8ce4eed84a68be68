//! The stripe trees: for every stripe, this node's parent (who pushes it every chunk of the
//! stripe) and its children (whom it pushes to). Members of a stripe form its interior and
//! feed only members with a higher join index, so each stripe is a tree rooted at the seed;
//! everyone else is a leaf of it. Here: subscribing, choosing and replacing a parent, and the
//! depth and spare room a Have announces; [`admission`]: accepting and displacing children.

mod admission;
pub mod hold;
mod moving_up;
mod stripe;

pub use admission::SubscribeOutcome;
pub use hold::HoldStart;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::core::config::{
    ADOPTION_HEADROOM, CHILD_SILENT_US, DEFAULT_RTT_US, HOP_DELAY_US, PARENT_GONE_US,
    PARENT_QUIET_US, REFUSAL_BACKOFF_US, STALLED_BACKOFF_US, STALL_US, TICK_US,
};
use crate::core::neighbours::{Neighbour, Neighbours};
use crate::core::outbox::Outbox;
use crate::core::rng::Rng;
use crate::core::stripes::StripeSet;
use crate::proto::wire::{Message, Role};
use stripe::{PushWindow, Stripe};

/// Where this node stands in the swarm: its join index, its member stripe, and how many
/// stripes the stream has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub role: Role,
    pub index: u64,
    pub member: Option<u8>,
    pub stripes: u8,
}

impl Place {
    /// Whether `n` is an older member of our member stripe: in it, only such a member may
    /// feed us.
    pub fn is_elder(&self, n: &Neighbour) -> bool {
        self.member.is_some() && n.member == self.member && n.index < self.index
    }
}

/// A Subscribe sent and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingSubscribe {
    pub to: SocketAddr,
    pub sent: u64,
    /// It asked the parent to hold its pushes until a keyframe ([`hold`]).
    pub hold: bool,
}

#[derive(Debug)]
pub struct StripeTree {
    stripes: Vec<Stripe>,
    /// Who refused us as a child of a stripe, and until when we do not ask again.
    refused: BTreeMap<(SocketAddr, u8), u64>,
    /// Who is fed each stripe, rebuilt when a subscription or a neighbour changes (the
    /// per-chunk path must not walk every neighbour: a seed has a thousand).
    children_of: Vec<Vec<SocketAddr>>,
    children_stale: bool,
    /// When the first chunk of any stripe came: a parent cannot have withheld before.
    first_heard: Option<u64>,
    /// The first maintenance at which the stream had moved on without us (`moved_on`): a
    /// parent that took us before the stream began cannot have gone quiet before that either.
    moved_on_since: Option<u64>,
    /// Seed: extra roots let go, still pushed their stripe until the time given while they
    /// find a parent ([`StripeTree::release_extra_root`]).
    handovers: Vec<Handover>,
    /// Children whose pushes we hold until a keyframe ([`hold`]).
    holds: Vec<hold::Hold>,
    /// Joiner: the seq our Subscribes ask parents to hold until a keyframe past ([`hold`]).
    hold_after: Option<u64>,
    /// Seed: the swarm has settled ([`crate::core::root_release`]), and its budget holds one
    /// root per stripe; extra roots of starved stripes still go up to K beyond the whole
    /// max_upload × K.
    roots_settled: bool,
    /// When we last let a member child go for a member that lost a place as high as ours
    /// ([`StripeTree::make_room_for_member`]).
    member_displaced_at: Option<u64>,
    /// The seed's Welcome told us the stream had not begun ([`StripeTree::set_told_unbegun`]).
    told_unbegun: bool,
}

/// Seed: an extra root let go of `stripe`, still pushed it until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Handover {
    to: SocketAddr,
    stripe: u8,
    until: u64,
}

/// A member of `stripe` fed by the seed itself: its stripe's root. When it dies, its children
/// are its heirs: they ask the seed for its slot (free once it is silent, [`is_silent`])
/// before anyone else. Without this they chose parents among its subtree, which had nothing
/// of the stripe either, and the stripe lived on the seed's repair budget until someone
/// happened to ask the seed (tests/swarm.rs, a third of 20 peers killed: every survivor
/// skipped the same chunk in 1 run of 24 with two copies at once).
fn is_root_of(n: &Neighbour, stripe: u8) -> bool {
    n.role == Role::Peer && n.member == Some(stripe) && n.depth == 1
}

/// A peer that sent us nothing for [`PARENT_GONE_US`] (its Haves come every 300 ms at the
/// longest) is not chosen as a parent, nor moved to: killed, it stays a neighbour for 1.5 s,
/// and a Subscribe to it costs 400 ms of waiting for a reply.
fn is_gone(n: &Neighbour, now: u64) -> bool {
    now > n.last_heard + PARENT_GONE_US
}

/// A child not heard from for [`CHILD_SILENT_US`]: probably dead (killed, no Goodbye), so its
/// slot goes to whoever asks.
fn is_silent(n: &Neighbour, now: u64) -> bool {
    now > n.last_heard + CHILD_SILENT_US
}

impl StripeTree {
    pub fn new(stripes: u8, now: u64) -> StripeTree {
        StripeTree {
            stripes: vec![Stripe::new(now); stripes as usize],
            refused: BTreeMap::new(),
            children_of: Vec::new(),
            children_stale: true,
            first_heard: None,
            moved_on_since: None,
            handovers: Vec::new(),
            holds: Vec::new(),
            hold_after: None,
            roots_settled: false,
            member_displaced_at: None,
            told_unbegun: false,
        }
    }

    /// Seed: whether its budget holds one root per stripe (settled) or max_upload × K.
    pub fn settle_roots(&mut self, settled: bool) {
        self.roots_settled = settled;
    }

    /// The stream has `stripes` stripes after all (the seed said so): start over.
    pub fn reset(&mut self, stripes: u8) {
        self.stripes = vec![Stripe::new(0); stripes as usize];
    }

    pub fn parents(&self) -> Vec<Option<SocketAddr>> {
        self.stripes.iter().map(|s| s.parent).collect()
    }

    pub fn parent(&self, stripe: u8) -> Option<SocketAddr> {
        self.stripes.get(stripe as usize).and_then(|s| s.parent)
    }

    pub fn is_parent(&self, addr: SocketAddr) -> bool {
        self.stripes.iter().any(|s| s.parent == Some(addr))
    }

    /// Seed: the stripe of the root `addr` we let go and still hand over, if any.
    pub fn handed_over(&self, addr: SocketAddr) -> Option<u8> {
        self.handovers
            .iter()
            .find(|h| h.to == addr)
            .map(|h| h.stripe)
    }

    /// Whether `addr` feeds us a stripe, or we asked it to.
    pub fn is_or_asked_parent(&self, addr: SocketAddr) -> bool {
        self.stripes
            .iter()
            .any(|s| s.parent == Some(addr) || s.pending.is_some_and(|p| p.to == addr))
    }

    /// Someone's subscriptions changed, or how many a child feeds (the push order): the
    /// per-stripe child lists are rebuilt when next used.
    pub fn children_changed(&mut self) {
        self.children_stale = true;
    }

    /// A new chunk of `stripe` arrived (from anyone).
    pub fn heard(&mut self, stripe: u8, seq: u64, now: u64) {
        if let Some(s) = self.stripes.get_mut(stripe as usize) {
            s.newest = Some(s.newest.map_or(seq, |n| n.max(seq)));
            s.heard = now;
            s.window.new = s.window.new.saturating_add(1);
        }
        self.first_heard.get_or_insert(now);
    }

    /// Whether `from`, which pushed us a chunk of `stripe`, feeds it to us without our asking:
    /// the stripe has another parent, which has sent us a chunk of it since it took us, and
    /// `from` is not the one we are asking to be it. A stripe without a parent takes what
    /// comes, and so does one whose new parent has not yet sent a chunk: until it does, the
    /// other feed may be all that carries the stripe.
    pub fn is_stray_feed(&self, stripe: u8, from: SocketAddr) -> bool {
        self.stripes.get(stripe as usize).is_some_and(|s| {
            s.parent.is_some_and(|p| p != from)
                && s.pushes > 0
                && s.pending.is_none_or(|p| p.to != from)
        })
    }

    /// A chunk of `stripe`, new or not, came from `from`: if that is the stripe's parent, it
    /// forwards. Repairs keep a stripe flowing whatever its parent does, so without this a
    /// parent that took a subscription and withheld every chunk was never replaced.
    pub fn pushed(&mut self, stripe: u8, from: SocketAddr) {
        if let Some(s) = self.stripes.get_mut(stripe as usize) {
            if s.parent == Some(from) {
                s.pushes += 1;
                s.window.from_parent = s.window.from_parent.saturating_add(1);
                s.release_due = None;
            }
        }
    }

    /// Whether `stripe`'s parent is starving us of it: of the chunks new to us in this window
    /// (at least [`STARVED_MIN_CHUNKS`]), it sent under half (copies count), or it sent
    /// nothing for half a window since it took us and the stream began to flow (counted as
    /// in [`StripeTree::maintain`]; from the subscription alone, an offer from a neighbour
    /// claiming to be the seed would take every member off its parent before the stream).
    pub fn parent_withholds(&self, stripe: u8, now: u64) -> bool {
        let began = self.began();
        self.stripes.get(stripe as usize).is_some_and(|s| {
            s.parent.is_some()
                && !s.awaits_release(now)
                && (s.window.starved() || s.pushed_nothing_for(STALL_US / 2, began, now))
        })
    }

    /// When the stream began, as far as we know: our first chunk, or the first maintenance
    /// at which our neighbours announced seqs we lack, whichever came first. A peer whose
    /// only parents are a liar that took every stripe never gets a chunk: counted from the
    /// first chunk alone, its parents were never judged to withhold.
    fn began(&self) -> Option<u64> {
        self.first_heard
            .into_iter()
            .chain(self.moved_on_since)
            .min()
    }

    /// The newest seq received of `stripe`.
    pub fn newest(&self, stripe: u8) -> Option<u64> {
        self.stripes.get(stripe as usize).and_then(|s| s.newest)
    }

    /// Whether `stripe` has a parent that sent a chunk of it in the last [`PARENT_QUIET_US`]:
    /// chunks of it not yet seen may still come by push.
    pub fn flowing(&self, now: u64, stripe: u8) -> bool {
        self.stripes
            .get(stripe as usize)
            .is_some_and(|s| s.parent.is_some() && now < s.heard + PARENT_QUIET_US)
    }

    /// The children fed `stripe`, taken out of the tree while the caller sends (no list is
    /// built per chunk); give them back with [`StripeTree::put_back_children`].
    pub fn take_children(&mut self, stripe: u8, neighbours: &Neighbours) -> Vec<SocketAddr> {
        if self.children_stale {
            self.children_stale = false;
            let mut by_stripe = vec![Vec::new(); self.stripes.len()];
            for (addr, n) in neighbours.iter() {
                for (s, list) in by_stripe.iter_mut().enumerate() {
                    if n.children.contains(s as u8) {
                        list.push(*addr);
                    }
                }
            }
            for h in &self.handovers {
                if let Some(list) = by_stripe.get_mut(usize::from(h.stripe)) {
                    if !list.contains(&h.to) {
                        list.push(h.to);
                    }
                }
            }
            for (s, list) in by_stripe.iter_mut().enumerate() {
                list.retain(|a| !self.is_held(a));
                list.sort_by_key(|a| push_rank(neighbours.get(a), s as u8));
            }
            self.children_of = by_stripe;
        }
        self.children_of
            .get_mut(stripe as usize)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub fn put_back_children(&mut self, stripe: u8, children: Vec<SocketAddr>) {
        if let Some(slot) = self.children_of.get_mut(stripe as usize) {
            *slot = children;
        }
    }

    /// A neighbour is gone: it is nobody's parent any more, and any Subscribe to it is void.
    pub fn forget(&mut self, addr: SocketAddr) {
        self.children_stale = true;
        self.end_hold(addr);
        self.handovers.retain(|h| h.to != addr);
        for s in self.stripes.iter_mut() {
            if s.parent == Some(addr) {
                s.parent = None;
            }
            if s.pending.is_some_and(|p| p.to == addr) {
                s.pending = None;
            }
        }
    }

    /// The seed told us the stream had not begun, and no chunk has come since.
    pub(crate) fn unbegun(&self) -> bool {
        self.told_unbegun && self.began().is_none()
    }

    /// Whether the seed's Welcome told us the stream had not begun: until a chunk comes or
    /// neighbours announce one, nobody is fed anything a move could cut off (`moving_up`).
    pub fn set_told_unbegun(&mut self, told: bool) {
        self.told_unbegun = told;
    }

    pub fn forget_expired_refusals(&mut self, now: u64) {
        self.refused.retain(|_, until| *until > now);
        let before = self.handovers.len();
        self.handovers.retain(|h| h.until > now);
        if self.handovers.len() != before {
            self.children_stale = true;
        }
    }

    fn refused_now(&self, addr: SocketAddr, stripe: u8, now: u64) -> bool {
        self.refused
            .get(&(addr, stripe))
            .is_some_and(|until| now < *until)
    }

    /// The answer to our Subscribe for `stripe`, or an acceptance we did not ask for (or no
    /// longer wait for: the Subscribe is void after 4 ticks). The seed offers a starved
    /// member a root slot when it finds the member's stripe starved
    /// ([`StripeTree::offer_extra_root`]): taken while we are `adrift` in that stripe
    /// (detached, or below a parent that withholds it: [`StripeTree::parent_withholds`]),
    /// unless we left that sender for withholding lately (a neighbour that claims to be the
    /// seed, withholds and offers again would otherwise take the slot back at once). A late
    /// answer to our last Subscribe is taken while we still have no parent and ask nobody
    /// else: its sender passed [`StripeTree::choose_parent`]'s checks when we asked. Any other
    /// acceptance is declined with an Unsubscribe, so that nobody feeds us a subscription we
    /// do not count (before, a late reply left its sender pushing us the stripe beside our
    /// parent). Taking one from anybody while we had no parent and asked nobody let any
    /// neighbour in past every check of [`StripeTree::choose_parent`].
    #[allow(clippy::too_many_arguments)]
    pub fn on_subscribe_reply(
        &mut self,
        now: u64,
        from: SocketAddr,
        stripe: u8,
        accepted: bool,
        from_seed: bool,
        adrift: bool,
        out: &mut Outbox,
    ) {
        let Some(s) = self.stripes.get_mut(stripe as usize) else {
            return;
        };
        let asked = s.pending.is_some_and(|p| p.to == from);
        if !accepted {
            if asked {
                s.pending = None;
                self.refused
                    .insert((from, stripe), now + REFUSAL_BACKOFF_US);
            }
            return;
        }
        if s.parent == Some(from) {
            return;
        }
        let left_for_withholding = self
            .refused
            .get(&(from, stripe))
            .is_some_and(|until| *until > now + REFUSAL_BACKOFF_US);
        let offered = from_seed && adrift && !left_for_withholding;
        let late =
            s.parent.is_none() && s.pending.is_none() && s.voided.is_some_and(|v| v.to == from);
        if !(asked || offered || late) {
            out.send(from, &Message::Unsubscribe { stripe });
            return;
        }
        // Held only while we still wait for a keyframe: an answer that comes after playout
        // started is judged on its pushes at once.
        let asked_to_hold = match (asked, late) {
            (true, _) => s.pending.is_some_and(|p| p.hold),
            (false, true) => s.voided.is_some_and(|v| v.hold),
            _ => false,
        };
        s.held = asked_to_hold && self.hold_after.is_some();
        s.release_due = None;
        s.pending = None;
        s.voided = None;
        if let Some(old) = s.parent.replace(from) {
            out.send(old, &Message::Unsubscribe { stripe });
        }
        s.subscribed_at = now;
        s.pushes = 0;
        s.window = PushWindow::starting(now);
        s.let_go_by_seed = false;
    }

    /// `from` stops feeding us `stripe`, or stops being fed it by us. True if `from` was our
    /// parent in `stripe` and is the seed: the seed let us go.
    pub fn on_unsubscribe(
        &mut self,
        now: u64,
        from: SocketAddr,
        stripe: u8,
        neighbours: &mut Neighbours,
    ) -> bool {
        let seed = neighbours.get(&from).is_some_and(|n| n.role == Role::Seed);
        if let Some(n) = neighbours.get_mut(&from) {
            n.children.remove(stripe);
            self.children_stale = true;
            if n.children.is_empty() {
                self.end_hold(from);
            }
        }
        // A root let go that found its parent says so: the handover's copies are duplicates.
        let handovers = self.handovers.len();
        self.handovers
            .retain(|h| !(h.to == from && h.stripe == stripe));
        self.children_stale |= self.handovers.len() != handovers;
        if let Some(s) = self.stripes.get_mut(stripe as usize) {
            if s.parent == Some(from) {
                s.parent = None;
                s.let_go_by_seed = seed;
                self.refused
                    .insert((from, stripe), now + REFUSAL_BACKOFF_US);
                return seed;
            }
        }
        false
    }

    /// Whom to ask to feed `stripe`: members with room first (a full one refuses, and is not
    /// asked again for a while; asking the least loaded instead sent children to small
    /// uplinks already full), the nearest of those in delay ([`delay_via`]: every hop adds
    /// delay, at 3,000 peers trees were 8 deep), the roomiest, then at random. In its own
    /// stripe a member asks full members too: a full member lets a leaf go for it, and a
    /// member's place sets the depth of its whole subtree (at 2,000 peers in bl-sim, members
    /// at depth 2 had spent 60 % of their slots on leaves). A leaf whose members with room
    /// all refused it asks next a peer of another stripe with room beyond its headroom, which
    /// may adopt it (admission), then a full member; without any, the seed.
    pub fn choose_parent(
        &self,
        now: u64,
        stripe: u8,
        place: &Place,
        neighbours: &Neighbours,
        rng: &mut Rng,
    ) -> Option<SocketAddr> {
        let own = place.member == Some(stripe);
        // Whether every eligible member's Have says it is detached (see below).
        let mut detached = true;
        let mut members: Vec<((u8, u64, u8), SocketAddr)> = neighbours
            .iter()
            .filter(|(addr, n)| {
                n.role == Role::Peer
                    && !n.ignores_us()
                    && n.member == Some(stripe)
                    && (place.member != Some(stripe) || n.index < place.index)
                    && !self.refused_now(**addr, stripe, now)
                    && !is_gone(n, now)
            })
            .map(|(addr, n)| {
                detached &= n.have.is_some() && n.depth == u8::MAX;
                let full = n.spare == 0 && !own;
                ((2 * u8::from(full), delay_via(n), u8::MAX - n.spare), *addr)
            })
            .collect();
        // Only members whose Haves say they are detached (no path to the seed, depth 255):
        // the seed first. A withholder in a root slot detaches its whole stripe, and the seed
        // frees its slot for whoever asks once its audit finds it barren, or takes an extra
        // root for the stripe once it finds it starved. A member not yet heard in a Have is
        // not known to be detached.
        if !members.is_empty() && detached {
            if let Some(seed) = self.seed_for(now, stripe, neighbours) {
                return Some(seed);
            }
        }
        // A leaf whose members are full asks an attached peer of another stripe with room,
        // which may adopt it (admission: `adopts`) before a full member refuses it, or the
        // seed spends a root slot on a leaf. Not while we wait for a keyframe: adopters do
        // not hold (see `adopts`).
        if !own && self.hold_after.is_none() {
            members.extend(
                neighbours
                    .iter()
                    .filter(|(addr, n)| {
                        n.role == Role::Peer
                            && !n.ignores_us()
                            && n.member.is_some_and(|m| m != stripe)
                            && usize::from(n.spare) > ADOPTION_HEADROOM
                            && n.depth != u8::MAX
                            && !self.refused_now(**addr, stripe, now)
                            && !is_gone(n, now)
                    })
                    .map(|(addr, n)| ((1, delay_via(n), u8::MAX - n.spare), *addr)),
            );
        }
        if let Some(least) = members.iter().map(|(rank, _)| *rank).min() {
            members.retain(|(rank, _)| *rank == least);
            members.sort();
            return members.get(rng.below(members.len())).map(|(_, a)| *a);
        }
        self.seed_for(now, stripe, neighbours)
    }

    /// The seed, if it is our neighbour and has not refused us `stripe` lately.
    fn seed_for(&self, now: u64, stripe: u8, neighbours: &Neighbours) -> Option<SocketAddr> {
        neighbours
            .iter()
            .find(|(addr, n)| n.role == Role::Seed && !self.refused_now(**addr, stripe, now))
            .map(|(addr, _)| *addr)
    }

    /// Peer, every tick: a Subscribe unanswered for 4 ticks is void; a parent that sent
    /// nothing of its stripe for [`STALL_US`] while the stream moved on (other stripes flow,
    /// or two neighbours announce seqs past ours: `moved_on`) has gone quiet and is replaced;
    /// a stripe without a parent gets one asked. Without `moved_on`, parents that all went
    /// quiet together (a liar that took every stripe and forwards nothing) were kept for ever.
    ///
    /// `detached_have` is our Have as it reads while we have no parent in our member stripe:
    /// it goes ahead of a Subscribe that a root the seed let go sends a member for a place
    /// in that stripe.
    #[allow(clippy::too_many_arguments)]
    pub fn maintain(
        &mut self,
        now: u64,
        moved_on: bool,
        place: &Place,
        neighbours: &Neighbours,
        detached_have: &Message,
        rng: &mut Rng,
        out: &mut Outbox,
    ) {
        if place.role != Role::Peer || place.index == 0 {
            return;
        }
        let heard_overall = self.stripes.iter().map(|s| s.heard).max().unwrap_or(0);
        if moved_on {
            self.moved_on_since.get_or_insert(now);
        }
        let began = self.began();
        // Only a peer the seed told the stream had not begun: one that joined while it flowed
        // has no chunk for a moment too, but the leaves its moves displace do.
        let unbegun = self.unbegun();
        for stripe in 0..place.stripes {
            let Some(s) = self.stripes.get_mut(stripe as usize) else {
                continue;
            };
            if let Some(pending) = s.pending {
                if now < pending.sent + 4 * TICK_US {
                    continue;
                }
                s.pending = None;
                s.voided = Some(pending);
            }
            let mut heir = false;
            // A parent that holds for us while we wait for a keyframe pushes nothing by
            // design: it is judged only on being gone.
            let judged = !s.awaits_release(now);
            if let Some(parent) = s.parent {
                // Quiet since the stream began at the earliest, as `withheld` below. Counted
                // from the subscription when no chunk had come yet, a peer that subscribed
                // over a second before the stream, and heard its neighbours announce the
                // first chunks before its parents' first pushes, dropped every parent at once
                // 4 and 13 ms into the stream (loopback, 50 peers × 8 s: one peer in each of
                // 2 runs of 20, which then asked for 1 and 8 repairs).
                let quiet =
                    now.saturating_sub(s.heard.max(s.subscribed_at).max(began.unwrap_or(now)));
                let flows = now < heard_overall + STALL_US / 2 || moved_on;
                // Took the subscription, pushed nothing: a liar claiming depth 0 and room to
                // spare would be chosen again at once, so it is not asked for a long while.
                // Counted from when the stream began to flow: peers that subscribed before
                // it began dropped every parent whose stripe's first chunk came after a tick
                // (loopback, 10 peers, 2 Mb/s: latency p50 18 -> 260 ms, the seed's upload
                // 1.08 -> 2.0x the stream, since 2a80f5a).
                let window_over = now >= s.window.since + STALL_US;
                let starved = window_over && s.window.starved();
                if window_over {
                    s.window = PushWindow::starting(now);
                }
                // The seed pushes a child it takes at once, so a parent that claims to be
                // the seed (its Welcome is unsigned) and pushed nothing for half a window
                // since the stream began is a liar. One that took every stripe of a viewer
                // and forwarded nothing kept the viewer, and every child it took meanwhile,
                // without those stripes for a second (loopback, tests/hostile.rs under load:
                // the slowest chunk of the viewers that joined next, 637-1,469 ms, median
                // 852, in the 8 runs of 15 where the liar's Welcome came first; a chunk was
                // skipped in 1 of 10 other runs and in CI; 574-613 ms in 4 of 10 with this).
                // Half a window for any parent of a viewer without a chunk cost honest
                // viewers among liars (bl-sim, 1,000 peers, 5 % liars, seed 5: 180 -> 1,075
                // chunks skipped).
                let claims_seed = neighbours
                    .get(&parent)
                    .is_some_and(|n| n.role == Role::Seed);
                let withheld_after = match claims_seed {
                    true => STALL_US / 2,
                    false => STALL_US,
                };
                let withheld =
                    judged && (starved || s.pushed_nothing_for(withheld_after, began, now));
                // Held for us and still silent well after our playout started: a parent
                // that holds is honest only if it releases, and the stripe meanwhile lives
                // on repairs (bl-sim, 1,000 peers, 5 % liars, seeds 1 and 2: chunks skipped
                // 1,457 -> 1,276 and 1,125 -> 989 with this, against a full stall after the
                // start). It may just be far from the keyframe, so it is asked again after a
                // refusal's back-off, not a withholder's.
                let unreleased = s.release_due.is_some_and(|t| now >= t);
                // Sent us nothing at all, not even a Have, for [`PARENT_GONE_US`]: it is gone
                // (a seed killed by SIGKILL), whether or not the stream flows elsewhere.
                let gone = neighbours.get(&parent).is_none_or(|n| is_gone(n, now));
                if gone
                    || judged && (starved || unreleased || flows && (withheld || quiet > STALL_US))
                {
                    heir = gone
                        && neighbours
                            .get(&parent)
                            .is_some_and(|n| is_root_of(n, stripe));
                    out.send(parent, &Message::Unsubscribe { stripe });
                    s.parent = None;
                    let backoff = match withheld {
                        true => STALLED_BACKOFF_US,
                        false => REFUSAL_BACKOFF_US,
                    };
                    self.refused.insert((parent, stripe), now + backoff);
                }
            }
            if self.parent(stripe).is_none() {
                let to = heir
                    .then(|| self.seed_for(now, stripe, neighbours))
                    .flatten()
                    .or_else(|| self.choose_parent(now, stripe, place, neighbours, rng));
                if let Some(to) = to {
                    // A member's claim to a place is judged by its last Have (admission:
                    // `lost_a_place_as_high`), and a neighbour outside our tree gets one only
                    // every few ticks: a root the seed let go asked the stripe's other root
                    // 138 ms later, its last Have there still said depth 1, it was refused,
                    // and its subtree lived on repairs for 1.4 s once the seed's handover
                    // ended (bl-sim, 50 peers × 8 s, the stream at 2 s, seed 1). Only a
                    // root the seed let go: sent by every member without a parent, it
                    // skipped more (1,000 peers × 20 s, 1 % loss, seeds 1-16: 414 chunks
                    // against 381 for the root let go only and 384 before either).
                    let let_go = self
                        .stripes
                        .get(stripe as usize)
                        .is_some_and(|s| s.let_go_by_seed);
                    let ours = place.member == Some(stripe);
                    if ours && let_go && neighbours.get(&to).is_some_and(|n| n.role == Role::Peer) {
                        out.send(to, detached_have);
                    }
                    self.subscribe(now, to, stripe, place, out);
                }
            } else {
                self.move_up(now, stripe, unbegun, place, neighbours, rng, out);
            }
        }
    }

    /// Asks `to` to feed us `stripe`, to hold its pushes until a keyframe if we wait for one
    /// and only play the stripe. Our member stripe we pass on, and its children would starve
    /// while we wait (bl-sim, 3,000 peers × 20 s, seed 1: repairs served +10 % when every
    /// stripe was held).
    fn subscribe(&mut self, now: u64, to: SocketAddr, stripe: u8, place: &Place, out: &mut Outbox) {
        let hold_after = self.hold_after.filter(|_| place.member != Some(stripe));
        if let Some(s) = self.stripes.get_mut(stripe as usize) {
            s.pending = Some(PendingSubscribe {
                to,
                sent: now,
                hold: hold_after.is_some(),
            });
        }
        out.send(to, &Message::Subscribe { stripe, hold_after });
    }

    /// Hops from the seed in our member stripe: the parent's depth + 1 (the seed is 0, 255
    /// is not attached).
    pub fn depth(&self, place: &Place, neighbours: &Neighbours) -> u8 {
        if place.role == Role::Seed {
            return 0;
        }
        let parent = place
            .member
            .and_then(|m| self.parent(m))
            .and_then(|p| neighbours.get(&p));
        match parent {
            Some(p) if p.role == Role::Seed => 1,
            Some(p) => p.depth.saturating_add(1),
            None => u8::MAX,
        }
    }

    /// Stripe subscriptions this node would still accept (a member of the stripe may also
    /// take one more member by displacing a leaf).
    pub fn spare_slots(&self, place: &Place, max_upload: f64, neighbours: &Neighbours) -> u8 {
        let slots = match place.role {
            Role::Seed => self
                .seed_slots(place, max_upload)
                .max(usize::from(place.stripes)),
            Role::Peer => Self::slots(place, max_upload),
        };
        slots
            .saturating_sub(usize::from(neighbours.children_count()))
            .min(255) as u8
    }

    /// Stripes this peer has no parent in, once it has a place in the swarm.
    pub fn orphans(&self, place: &Place) -> StripeSet {
        let mut set = StripeSet::EMPTY;
        if place.role != Role::Peer || place.index == 0 {
            return set;
        }
        for (s, stripe) in self.stripes.iter().enumerate() {
            if stripe.parent.is_none() {
                set.insert(s as u8);
            }
        }
        set
    }
}

/// How long a chunk takes to reach us through member `n`, roughly: its depth times
/// [`HOP_DELAY_US`], plus half its RTT (255, unattached, is far). Depth alone chose a parent
/// 300 ms away over one 5 ms away at the same depth.
fn delay_via(n: &Neighbour) -> u64 {
    let rtt = n.rtt_us.unwrap_or(DEFAULT_RTT_US);
    u64::from(n.depth) * HOP_DELAY_US + rtt / 2
}

/// Where a child comes in a chunk's pushes, lowest first: members of the stripe that feed
/// others, most first, then other members, then leaves. A parent's uplink sends one copy after
/// another, so the copy to its last child leaves several serialisation times after the first
/// (1.6 ms each for a 1.2 KB chunk at the model's median 6.3 Mb/s uplink); a child that
/// forwards passes that wait on to its whole subtree, a leaf to nobody. Ties keep the list's
/// order (address order, the seed's handovers last), so runs stay deterministic.
fn push_rank(child: Option<&Neighbour>, stripe: u8) -> (bool, std::cmp::Reverse<u8>) {
    match child {
        Some(n) if n.member == Some(stripe) => (false, std::cmp::Reverse(n.feeding)),
        _ => (true, std::cmp::Reverse(0)),
    }
}

#[cfg(test)]
mod tests;
