//! The neighbour table: every node this one completed a handshake with, and what it knows
//! of each. Every sub-machine reads it; the facade hands it to them, none holds it.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

use crate::core::addr_map::AddrMap;
use crate::core::config::{
    DEFAULT_RTT_US, IGNORED_FOR_US, REPAIR_RETRY_MAX_US, REPAIR_RETRY_MIN_US, STARVED_JUDGED_CHUNKS,
};
use crate::core::stripes::{stripe_of, StripeSet};
use crate::proto::wire::Role;

/// What a neighbour's last Have said it holds: `first..=highest - 128`, and of the newest
/// 128 seqs those set in `recent` (bit i = `highest - i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaveSummary {
    pub first: u64,
    pub highest: u64,
    pub recent: u128,
}

impl HaveSummary {
    /// Held as its bitmap says, not merely presumed (older than the bitmap's 128 seqs).
    pub fn announces(&self, seq: u64) -> bool {
        seq <= self.highest
            && seq >= self.first
            && self.highest - seq < 128
            && self.recent & (1u128 << (self.highest - seq)) != 0
    }

    /// Whether its bitmap shows it starved of `stripe` (of `stripes`) while others reach it:
    /// among the bitmap's seqs older than the newest 16 (those may still be on their way), it
    /// holds under half of that stripe's chunks and at least a third of the others' (two
    /// stripes of four may be starved at once). `None` when those seqs hold fewer than
    /// [`STARVED_JUDGED_CHUNKS`] of the stripe's: a member that has only just joined cannot tell.
    pub fn starved_of(&self, stripe: u8, stripes: u8) -> Option<bool> {
        let (mut held, mut all, mut held_other, mut all_other) = (0u32, 0u32, 0u32, 0u32);
        for back in 16..128u32 {
            let Some(seq) = self.highest.checked_sub(u64::from(back)) else {
                break;
            };
            if seq < self.first {
                break;
            }
            let has = u32::from(self.recent & (1u128 << back) != 0);
            if stripe_of(seq, stripes) == stripe {
                (held, all) = (held + has, all + 1);
            } else {
                (held_other, all_other) = (held_other + has, all_other + 1);
            }
        }
        (all >= STARVED_JUDGED_CHUNKS).then_some(2 * held < all && 3 * held_other >= all_other)
    }

    /// Held as its bitmap says, or presumed held (older than the bitmap).
    pub fn holds(&self, seq: u64) -> bool {
        self.announces(seq)
            || (seq >= self.first && seq <= self.highest && self.highest - seq >= 128)
    }
}

#[derive(Debug)]
pub struct Neighbour {
    /// Its LAN address, from its Confirm (passed on in peer exchange).
    pub lan: Option<SocketAddr>,
    /// Introductions it asked of us (or made us act on) in the second since
    /// `introductions_since`.
    pub introductions: u8,
    pub introductions_since: u64,
    pub role: Role,
    pub index: u64,
    pub member: Option<u8>,
    pub last_heard: u64,
    /// Stripes this node pushes to the neighbour.
    pub children: StripeSet,
    /// Seed: stripes whose backlog it was sent as a starved stripe's new root (once each).
    pub backlog_sent: StripeSet,
    pub have: Option<HaveSummary>,
    /// Subscriptions it would still accept, from its last Have.
    pub spare: u8,
    /// Subscriptions it feeds, from its last Have.
    pub feeding: u8,
    /// When we began feeding it (seed: a child that passes nothing on gives its place up).
    pub fed_since: u64,
    /// Seed: the seq its last audit asked this stripe child for, until the child answers.
    pub audit: Option<u64>,
    /// Seed: audits in a row it left unanswered.
    pub audits_unanswered: u8,
    /// When we last accepted a subscription of its: a chunk pushed before that was not
    /// pushed to it in that stripe.
    pub subscribed_at: u64,
    /// Its depth in its member stripe, from its last Have.
    pub depth: u8,
    /// Its depth in its member stripe from its last Have that placed it in the tree (255:
    /// none yet). A member detached now that was as high as we are lost its place above.
    pub attached_depth: u8,
    /// We confirmed its Welcome and have heard nothing since: Confirms sent so far. A lost
    /// Confirm left a half-open link (we count it, it never heard of us): at the seed for 10
    /// s, and a stripe's oldest member cut off from the seed for good (bl-sim, 300 peers).
    pub unconfirmed: Option<u8>,
    /// Smoothed round-trip time (µs), from Hello→Welcome and Request→Chunk.
    pub rtt_us: Option<u64>,
    /// The least round trip sampled (µs): the path's own delay, without queues.
    pub rtt_min_us: Option<u64>,
    /// Requests for chunks its Have claimed that it left unanswered since it last answered
    /// one or sent us a recent chunk we lacked (a parent's push). Its Have is unsigned: a
    /// neighbour that claims to hold everything and answers nothing is not asked, chosen as
    /// a parent or believed once this reaches [`IGNORED_LIMIT`], until [`IGNORED_FOR_US`]
    /// after `ignored_since` (then one request tells again). Any chunk used to reset it, and
    /// a liar's replays of old chunks kept it asked; without pushes resetting it, a 3-peer
    /// loopback swarm ignored its parents (their repair budgets refused a few requests) and
    /// skipped three stripes in four (tests/discovery.rs).
    pub ignored: u8,
    /// When `ignored` last reached the limit.
    pub ignored_since: u64,
    /// Seed: the lowest index it ranks this neighbour at (see [`Neighbour::seed_rank_index`]).
    pub index_floor: u64,
    /// Kept for being near ([`crate::core::proximity`]): it may give its place to a nearer
    /// stranger whatever the neighbours not kept so number. A flag here rather than a set
    /// beside the table, which allocated for every peer: bl-sim at 100,000 peers × 20 s
    /// peaked 49 MB higher with the set (5,993 → 6,042 MB; runs differ by up to 20 MB).
    pub near: bool,
    /// Until when chunks it pushes us of a stripe it does not feed us are let be: we asked it
    /// for a chunk lately, or told it to stop lately ([`crate::core::config::STRAY_STOP_EVERY_US`]).
    pub strays_let_be_until: u64,
}

/// Unanswered requests after which a neighbour is no longer asked (see [`Neighbour::ignored`]).
pub const IGNORED_LIMIT: u8 = 8;

impl Neighbour {
    /// The index the seed ranks it by for a root slot: its own claim, but no older than a
    /// history before the stream's newest chunk when it first reached the seed. An index is
    /// unsigned: a newcomer claiming index 1 took the oldest member's place nearer the root.
    /// Only the seed's ranking uses this; the index peers order their stripe trees by stays
    /// the claimed one everywhere (views that differed could make a tree loop).
    pub fn seed_rank_index(&self) -> u64 {
        self.index.max(self.index_floor)
    }

    pub fn new(role: Role, index: u64, member: Option<u8>, now: u64) -> Self {
        Neighbour {
            role,
            index,
            member,
            last_heard: now,
            children: StripeSet::EMPTY,
            backlog_sent: StripeSet::EMPTY,
            have: None,
            spare: 0,
            feeding: 0,
            fed_since: now,
            audit: None,
            audits_unanswered: 0,
            subscribed_at: now,
            depth: u8::MAX,
            attached_depth: u8::MAX,
            unconfirmed: None,
            rtt_us: None,
            rtt_min_us: None,
            ignored: 0,
            ignored_since: 0,
            index_floor: 0,
            near: false,
            strays_let_be_until: 0,
            lan: None,
            introductions: 0,
            introductions_since: 0,
        }
    }

    pub fn holds(&self, seq: u64) -> bool {
        self.have.is_some_and(|h| h.holds(seq))
    }

    /// A peer whose Have says it is attached in its member stripe, so it has a place, which
    /// it never told us: it greeted us, or welcomed our Hello, before any Welcome placed it
    /// (see [`crate::core::membership::Membership::ask_place`]).
    pub fn place_unheard(&self) -> bool {
        self.role == Role::Peer && self.index == 0 && self.member.is_none() && self.depth != u8::MAX
    }

    /// Whether its claims have stopped being worth acting on (see [`Neighbour::ignored`]).
    pub fn ignores_us(&self) -> bool {
        self.ignored >= IGNORED_LIMIT
    }
}

/// The table, in address order (iteration order decides who is sent what first, and the
/// simulator needs the same seed to give the same run).
#[derive(Debug, Default)]
pub struct Neighbours(AddrMap<Neighbour>);

impl Deref for Neighbours {
    type Target = AddrMap<Neighbour>;
    fn deref(&self) -> &AddrMap<Neighbour> {
        &self.0
    }
}

impl DerefMut for Neighbours {
    fn deref_mut(&mut self) -> &mut AddrMap<Neighbour> {
        &mut self.0
    }
}

impl Neighbours {
    /// Stripe subscriptions this node feeds, over all neighbours (at most 255).
    pub fn children_count(&self) -> u8 {
        let total: u32 = self.values().map(|n| n.children.len()).sum();
        total.min(255) as u8
    }

    /// The seed (of several, the one heard from last), if it is a neighbour.
    pub fn seed(&self) -> Option<SocketAddr> {
        self.iter()
            .filter(|(_, n)| n.role == Role::Seed)
            .max_by_key(|(_, n)| n.last_heard)
            .map(|(a, _)| *a)
    }

    /// `addr` left a request unanswered.
    pub fn note_unanswered(&mut self, now: u64, addr: SocketAddr) {
        if let Some(n) = self.get_mut(&addr) {
            n.ignored = n.ignored.saturating_add(1);
            if n.ignored >= IGNORED_LIMIT {
                n.ignored_since = now;
            }
        }
    }

    /// Neighbours ignored for [`IGNORED_FOR_US`] get one request's chance again: an honest
    /// one that was busy (its repair budget spent) must not be shunned for good.
    pub fn forgive_ignored(&mut self, now: u64) {
        for n in self.values_mut() {
            if n.ignores_us() && now >= n.ignored_since + IGNORED_FOR_US {
                n.ignored = IGNORED_LIMIT - 1;
            }
        }
    }

    pub fn note_rtt(&mut self, addr: SocketAddr, sample: u64) {
        if let Some(n) = self.get_mut(&addr) {
            // TCP's smoothing (RFC 6298): 7/8 old, 1/8 new.
            n.rtt_us = Some(n.rtt_us.map_or(sample, |rtt| (7 * rtt + sample) / 8));
            n.rtt_min_us = Some(n.rtt_min_us.map_or(sample, |m| m.min(sample)));
        }
    }

    /// How long an answer from `addr` may take: twice its RTT and a little, within bounds.
    pub fn answer_wait(&self, addr: SocketAddr) -> u64 {
        let rtt = self
            .get(&addr)
            .and_then(|n| n.rtt_us)
            .unwrap_or(DEFAULT_RTT_US);
        (2 * rtt + 10_000).clamp(REPAIR_RETRY_MIN_US, REPAIR_RETRY_MAX_US)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A neighbour that answers slowly on purpose (or whose answers we time badly) inflates
    /// only its own RTT: requests to it wait at most REPAIR_RETRY_MAX_US before going
    /// elsewhere, and every other neighbour's wait is its own.
    #[test]
    fn a_slow_neighbour_makes_only_its_own_requests_wait_and_at_most_the_bound() {
        let at = |i: u16| SocketAddr::from(([127, 0, 0, 1], 9000 + i));
        let mut ns = Neighbours::default();
        ns.insert(at(1), Neighbour::new(Role::Peer, 1, None, 0));
        ns.insert(at(2), Neighbour::new(Role::Peer, 2, None, 0));
        for _ in 0..64 {
            ns.note_rtt(at(1), 20_000);
            ns.note_rtt(at(2), 20_000);
        }
        let honest = ns.answer_wait(at(2));
        assert_eq!(honest, 50_000);
        for _ in 0..64 {
            ns.note_rtt(at(1), 30_000_000);
        }
        assert_eq!(ns.answer_wait(at(1)), REPAIR_RETRY_MAX_US);
        assert_eq!(ns.answer_wait(at(2)), honest);
    }
}
