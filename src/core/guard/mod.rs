//! The guard: what keeps forged data out and forgers away. It verifies chunks (through the
//! process's memo of checks already done, in the simulator), bans who sent a forgery, and
//! holds the seed's defences of its few root slots: the audit of its stripe children, the
//! barren rule, an extra root for a starved stripe, and no slot for whoever claims chunks
//! past the source's newest.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ed25519_dalek::VerifyingKey;

use crate::core::config::{
    AUDIT_AGE_CHUNKS, AUDIT_MISSES_BARREN, BACKLOG_MAX_CHUNKS, BACKLOG_US, BARREN_AFTER_US,
    CHILD_SILENT_US, CLAIM_SLACK_SEQS, EXTRA_ROOT_GAP_US, OWN_MEMO, STARVED_FOR_US,
    STARVED_HEARD_US, STARVED_MIN_MEMBERS, WITHHELD_HELD_US, WITHHELD_JUDGED_AFTER_US,
};
use crate::core::history::History;
use crate::core::neighbours::{Neighbour, Neighbours};
use crate::core::outbox::Outbox;
use crate::core::stripes::{stripe_of, StripeSet};
use crate::core::units::Seq;
use crate::media::chunk::{Chunk, Rejection};
use crate::media::identity::StreamId;
use crate::media::verified::VerifiedChunks;
use crate::proto::wire::{Message, Role};

/// Where a chunk came from: the seed's stdin, or a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Input,
    Neighbour(SocketAddr),
}

impl Source {
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Source::Input => None,
            Source::Neighbour(addr) => Some(addr),
        }
    }
}

#[derive(Debug)]
pub struct Guard {
    stream: StreamId,
    key: Option<VerifyingKey>,
    /// Chunks already verified: shared by the simulator's cores, else the guard's own.
    memo: Arc<Mutex<VerifiedChunks>>,
    banned: BTreeSet<SocketAddr>,
    /// Seed: children displaced for passing nothing on, refused until the time given (else
    /// a forger with a low index takes its root slot straight back).
    barred: BTreeMap<SocketAddr, u64>,
    /// Seed: per stripe, since when it has been starved ([`Guard::note_starved_stripes`]).
    starved_since: Vec<Option<u64>>,
    /// Seed: per stripe, when it last got an extra root.
    last_extra_root: Vec<Option<u64>>,
    /// Seed: per stripe, when it got its first extra root of the starved spell it is in.
    spell_extra_root: Vec<Option<u64>>,
    /// Seed: stripes that look withheld ([`Guard::looks_withheld`]).
    looks_withheld: StripeSet,
    /// Seed: per stripe, since when two thirds of its starved members here have hung below
    /// a parent, at every tick it could be judged.
    withheld_since: Vec<Option<u64>>,
}

impl Guard {
    /// `memo`: chunks other cores of this process verified (bl-sim); without one the guard
    /// keeps its own, for the chunks [`Guard::verify_ahead`] checks in batches.
    pub fn new(stream: StreamId, memo: Option<Arc<Mutex<VerifiedChunks>>>) -> Guard {
        let memo = memo.unwrap_or_else(|| Arc::new(Mutex::new(VerifiedChunks::new(OWN_MEMO))));
        Guard {
            stream,
            key: stream.verifying_key().ok(),
            memo,
            banned: BTreeSet::new(),
            barred: BTreeMap::new(),
            starved_since: Vec::new(),
            last_extra_root: Vec::new(),
            spell_extra_root: Vec::new(),
            looks_withheld: StripeSet::EMPTY,
            withheld_since: Vec::new(),
        }
    }

    /// False when the stream id is no valid key: nothing will ever verify.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    pub fn is_banned(&self, addr: &SocketAddr) -> bool {
        self.banned.contains(addr)
    }

    /// Checks the signatures of chunks that came together as one batch, ahead of their
    /// handling: those that hold are remembered, and [`Guard::verify`] finds them. Returns
    /// how many the batch verified.
    pub fn verify_ahead(&self, chunks: &[&Arc<Chunk>]) -> usize {
        match &self.key {
            Some(key) => self
                .memo
                .lock()
                .map_or(0, |mut memo| memo.verify_ahead(&self.stream, key, chunks)),
            None => 0,
        }
    }

    /// Checks the chunk's signature (once per process where a memo is shared, once per batch
    /// checked ahead).
    pub fn verify(&self, chunk: &Arc<Chunk>) -> Result<(), Rejection> {
        match &self.key {
            Some(key) => match self.memo.lock() {
                Ok(mut memo) => memo.verify(&self.stream, key, chunk),
                Err(_) => chunk.verify(&self.stream, key),
            },
            None => Err(Rejection::BadSignature),
        }
    }

    /// A copy of `held` (verified) that differs from it is forged, unless `held` may itself
    /// be a replay (`held_may_be_replayed`: a peer's chunks come from neighbours) and the
    /// copy is signed: then it is another broadcast's under the same key, and the caller
    /// judges which is the stream's (by capture time); banning there banned the honest sender
    /// once a replay got in first. The seed's chunks come from its input: any differing copy
    /// is forged, caught without a signature check (its audit). Returns whom to drop.
    pub fn check_copy(
        &mut self,
        held: &Arc<Chunk>,
        copy: &Arc<Chunk>,
        from: Source,
        held_may_be_replayed: bool,
        out: &mut Outbox,
    ) -> CopyVerdict {
        let differs = !Arc::ptr_eq(held, copy) && **held != **copy;
        if differs && held_may_be_replayed && self.verify(copy).is_ok() {
            return CopyVerdict::OtherBroadcast;
        }
        match from.addr() {
            Some(addr) if differs => {
                out.stats.counters.chunks_forged += 1;
                out.warn(format!(
                    "banned {addr}: sent a copy of chunk seq {} that differs from the verified one",
                    copy.seq
                ));
                self.ban(addr, out);
                CopyVerdict::Forged(addr)
            }
            _ => {
                // The end record goes to every neighbour on purpose (it must reach all, and
                // is ~100 bytes once): its copies are not wasted stream data. Counted, they
                // were every duplicate of a lossless 10-peer loopback swarm (10 per peer).
                if !copy.is_end() {
                    out.stats.counters.chunks_duplicate += 1;
                }
                CopyVerdict::Duplicate
            }
        }
    }

    /// A chunk failed verification: counted, said, its sender banned; returns whom to drop.
    pub fn reject(
        &mut self,
        seq: u64,
        why: Rejection,
        from: Source,
        out: &mut Outbox,
    ) -> Option<SocketAddr> {
        out.stats.counters.chunks_forged += 1;
        match from {
            Source::Neighbour(addr) => {
                out.warn(format!("banned {addr}: sent chunk seq {seq} with {why}"));
                self.ban(addr, out);
                Some(addr)
            }
            Source::Input => {
                out.warn(format!("dropped chunk seq {seq} from stdin: {why}"));
                None
            }
        }
    }

    fn ban(&mut self, addr: SocketAddr, out: &mut Outbox) {
        self.banned.insert(addr);
        out.stats.counters.peers_banned += 1;
    }

    /// Seed: whether `addr` was displaced as barren lately and may not subscribe yet.
    pub fn is_barred(&self, addr: &SocketAddr, now: u64) -> bool {
        self.barred.get(addr).is_some_and(|until| now < *until)
    }

    pub fn bar(&mut self, addr: SocketAddr, until: u64) {
        self.barred.insert(addr, until);
    }

    pub fn forget_expired(&mut self, now: u64) {
        self.barred.retain(|_, until| *until > now);
    }

    /// Seed: ask every stripe child for a chunk of its stripe it received a second ago. The
    /// answer must equal what the seed sent; a child that forges what it forwards is banned
    /// ([`Guard::check_copy`]) and its root slot freed. Every subtree below a forger bans it,
    /// but only the seed can take its slot away; one that answers the seed honestly is not
    /// caught. An audit still unanswered at the next counts against the child ([`is_barren`]).
    pub fn audit(
        neighbours: &mut Neighbours,
        history: &History,
        highest: Option<Seq>,
        stripes: u8,
        out: &mut Outbox,
    ) {
        let Some(Seq(highest)) = highest else {
            return;
        };
        let stripes = u64::from(stripes);
        let base = highest.saturating_sub(AUDIT_AGE_CHUNKS);
        for (addr, n) in neighbours.iter_mut() {
            if n.children.is_empty() {
                continue;
            }
            if n.audit.take().is_some() {
                n.audits_unanswered = n.audits_unanswered.saturating_add(1);
            }
            for s in n.children.iter().map(u64::from).filter(|s| *s < stripes) {
                let seq = base + (s + stripes - base % stripes) % stripes;
                if history.contains(seq) {
                    out.send(*addr, &Message::Request { seqs: vec![seq] });
                    n.audit = Some(seq);
                }
            }
        }
    }
}

impl Guard {
    /// Seed, every tick: notes which stripes are starved below the seed's root slots. A
    /// withholder in a root slot that answers the seed's audits (it treats the seed apart) and
    /// announces depth 1 and children passes both checks above, and only its stripe's members
    /// can tell: their Haves show the stripe missing while others arrive. A stripe is starved
    /// when more than half of its members among the seed's neighbours (at least
    /// [`STARVED_MIN_MEMBERS`], heard lately) have shown so for [`STARVED_FOR_US`], whether
    /// they still hang below the withholder or have left it; the seed then takes one more
    /// root for it ([`Guard::is_starved`]). Counting only members that had left it and said
    /// they were detached, the seed knew a second later, when they had asked it, been refused
    /// and backed off for 2 s (bl-sim, 1,000 peers, the first 4 withholding, seeds 1, 2, 6, 8:
    /// 51,575–76,329 chunks skipped; 13,839–31,623 counting every member).
    pub fn note_starved_stripes(&mut self, neighbours: &Neighbours, stripes: u8, now: u64) {
        let k = usize::from(stripes);
        self.starved_since.resize(k, None);
        self.last_extra_root.resize(k, None);
        self.spell_extra_root.resize(k, None);
        self.withheld_since.resize(k, None);
        // (members, starved, starved below a parent) per stripe, in one pass.
        let mut counts = vec![(0usize, 0usize, 0usize); k];
        for n in neighbours.values() {
            let Some(stripe) = n.member else {
                continue;
            };
            let heard = n.have.is_some() && now <= n.last_heard + STARVED_HEARD_US;
            if n.role != Role::Peer || n.children.contains(stripe) || !heard {
                continue;
            }
            // A member that cannot tell yet (just joined) is not counted either way.
            let Some(starved) = n.have.and_then(|h| h.starved_of(stripe, stripes)) else {
                continue;
            };
            if let Some(c) = counts.get_mut(usize::from(stripe)) {
                c.0 += 1;
                c.1 += usize::from(starved);
                c.2 += usize::from(starved && n.depth != u8::MAX);
            }
        }
        let spells = self.spell_extra_root.iter_mut();
        let stripe_counts = self
            .starved_since
            .iter_mut()
            .zip(spells)
            .zip(counts)
            .enumerate();
        for (stripe, ((since, spell), (members, starved, below_a_parent))) in stripe_counts {
            let extra = self.last_extra_root.get(stripe).copied().flatten();
            let stripe = stripe as u8;
            if members < STARVED_MIN_MEMBERS || 2 * starved <= members {
                *since = None;
                *spell = None;
                self.looks_withheld.remove(stripe);
                if let Some(held) = self.withheld_since.get_mut(usize::from(stripe)) {
                    *held = None;
                }
                continue;
            }
            since.get_or_insert(now);
            // Offers come every EXTRA_ROOT_GAP_US while the stripe stays starved, so the
            // longer wait runs from the spell's first one, not from each.
            let settled = extra.is_none_or(|t| now >= t + EXTRA_ROOT_GAP_US)
                && spell.is_none_or(|t| now >= t + WITHHELD_JUDGED_AFTER_US);
            let two_thirds = 3 * below_a_parent >= 2 * starved;
            let three_quarters = 4 * below_a_parent >= 3 * starved;
            let Some(held) = self.withheld_since.get_mut(usize::from(stripe)) else {
                continue;
            };
            if settled && below_a_parent >= STARVED_MIN_MEMBERS && two_thirds {
                let from = *held.get_or_insert(now);
                if three_quarters || now >= from + WITHHELD_HELD_US {
                    self.looks_withheld.insert(stripe);
                }
            } else {
                *held = None;
            }
        }
    }

    /// Seed: whether `stripe`, starved, looks withheld: two thirds of its starved members
    /// (and [`STARVED_MIN_MEMBERS`]) hung below a parent, at every tick for
    /// [`WITHHELD_HELD_US`], or three quarters at a tick since it starved. An honest
    /// stripe still forming starves members with no parent yet: at honest runs' extra roots,
    /// 0-8 of 12-37 starved members had a parent; below withholders, 10-38 of 12-51 (bl-sim,
    /// 500-3,000 peers); it keeps its extra roots. At 100,000 peers joining 10,000 a second,
    /// though, 45-57 % of an honest stripe's starved members hung below a parent, their
    /// chains still filling: at half, the seed marked stripe 1 withheld 1.9 s into the
    /// stream, before its first extra root, and kept that root for good (bl-sim, 100,000 ×
    /// 20 s, seed 1: source amplification 2.053; two thirds: the root let go at 7.6 s,
    /// 1.937). Honest and `--liars 5%` runs at 1,000 peers and 10,000 × 30 s seed 3 are
    /// unchanged; `--withholders 4` (1,000 × 20 s, seeds 1-8) lost a little on three seeds,
    /// honest continuity mean 99.806 → 99.790 % (60 % did the same). Waiting instead until 4 s
    /// after the spell's first extra root before judging at all cost them 99.806 → 99.559 %.
    /// Since peers adopt places before the stream, the honest stripe at 100,000 peers reached
    /// exactly two thirds at the one tick it could be judged before its extra root
    /// ([`WITHHELD_HELD_US`]). Not judged within [`EXTRA_ROOT_GAP_US`] of an extra root, nor within
    /// [`WITHHELD_JUDGED_AFTER_US`] of the first of its starved spell: members it took still
    /// show the starvation it ends (1,000 × 20 s, seed 2; 100,000 peers).
    pub fn looks_withheld(&self, stripe: u8) -> bool {
        self.looks_withheld.contains(stripe)
    }

    /// Seed: the stripes that look starved now, however briefly.
    pub fn starved_now(&self) -> StripeSet {
        let mut set = StripeSet::EMPTY;
        let starved = self
            .starved_since
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some());
        starved.for_each(|(stripe, _)| set.insert(stripe as u8));
        set
    }

    /// Seed: whether `stripe` has been starved for [`STARVED_FOR_US`], and got no extra root
    /// in the last [`EXTRA_ROOT_GAP_US`] (a tick in which it did not look starved does not
    /// shorten that wait).
    pub fn is_starved(&self, stripe: u8, now: u64) -> bool {
        let i = usize::from(stripe);
        let starved = self
            .starved_since
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|since| now >= since + STARVED_FOR_US);
        let gap_over = self
            .last_extra_root
            .get(i)
            .copied()
            .flatten()
            .is_none_or(|last| now >= last + EXTRA_ROOT_GAP_US);
        starved && gap_over
    }

    /// Seed: whom to offer an extra root of `stripe` once it is starved ([`Guard::is_starved`]):
    /// the oldest (as the seed ranks join indices) of its starved members here
    /// ([`shows_starved`]) that is not barred, not fed the stripe already, and was heard
    /// within [`CHILD_SILENT_US`] (a silent one would lose the slot at once). Detached or
    /// not: a member still below a withholder takes the offer too
    /// ([`crate::core::tree::StripeTree::parent_withholds`]). Offered only to detached
    /// members, the slot went to a younger one while the oldest still hung below the
    /// withholder, and the older members, which cannot be a younger member's children, stayed
    /// starved until the next extra root 2 s later (bl-sim, 1,000 peers, the first 4
    /// withholding, 20 s, seeds 1, 2, 6, 8: honest continuity mean 99.658 → 99.749 %, worst
    /// 99.464 → 99.591 %; runs without withholders byte-identical).
    pub fn extra_root_candidate(
        &self,
        neighbours: &Neighbours,
        stripe: u8,
        stripes: u8,
        now: u64,
    ) -> Option<SocketAddr> {
        if !self.is_starved(stripe, now) {
            return None;
        }
        neighbours
            .iter()
            .filter(|(addr, n)| {
                n.role == Role::Peer
                    && !n.children.contains(stripe)
                    && now <= n.last_heard + CHILD_SILENT_US
                    && !self.is_barred(addr, now)
                    && shows_starved(n, stripe, stripes)
            })
            .min_by_key(|(addr, n)| (n.seed_rank_index(), **addr))
            .map(|(addr, _)| *addr)
    }

    /// Seed: an extra root was taken (or offered) for `stripe`: another only after
    /// [`EXTRA_ROOT_GAP_US`], and the stripe is not judged withheld within
    /// [`WITHHELD_JUDGED_AFTER_US`] of the first of its starved spell.
    pub fn extra_root_taken(&mut self, stripe: u8, now: u64) {
        // Sized with `starved_since`: a stripe is starved, so it can get one, only once noted.
        if let Some(last) = self.last_extra_root.get_mut(usize::from(stripe)) {
            *last = Some(now);
        }
        if let Some(first) = self.spell_extra_root.get_mut(usize::from(stripe)) {
            first.get_or_insert(now);
        }
    }
}

/// Seed: what member `n`, just made a root of starved `stripe`, is sent at once: the
/// stripe's chunks captured within [`BACKLOG_US`] of our newest that its Have does not show,
/// the newest [`BACKLOG_MAX_CHUNKS`] of them, oldest first (the nearest to being due). Once
/// per neighbour and stripe: the backlog goes out with the offer, before the member takes
/// it, and a liar that declined every offer (claiming to hold nothing) would otherwise draw
/// one every [`EXTRA_ROOT_GAP_US`] for as long as its claims kept the stripe starved.
pub fn starved_backlog(
    history: &History,
    n: &mut Neighbour,
    stripe: u8,
    stripes: u8,
) -> Vec<Arc<Chunk>> {
    if n.backlog_sent.contains(stripe) {
        return Vec::new();
    }
    n.backlog_sent.insert(stripe);
    let Some(newest) = history.last().and_then(|seq| history.get(seq)) else {
        return Vec::new();
    };
    let since = newest.capture_us.saturating_sub(BACKLOG_US);
    let have = n.have;
    let mut backlog: Vec<Arc<Chunk>> = history
        .from(0)
        .rev()
        // The seed's captures never go back (they come from bl-chunk).
        .take_while(|c| c.capture_us >= since)
        .filter(|c| !c.is_end() && stripe_of(c.seq, stripes) == stripe)
        .filter(|c| !have.is_some_and(|h| h.announces(c.seq)))
        .take(BACKLOG_MAX_CHUNKS)
        .cloned()
        .collect();
    backlog.reverse();
    backlog
}

/// Seed: a Have claiming seq `claimed` when our newest is `newest` claims what nobody can
/// hold yet: we are the source, and chunks reach nobody before us. [`CLAIM_SLACK_SEQS`] of
/// slack for a second seed fed the same chunks a little ahead of us.
pub fn claims_past_the_source(claimed: u64, newest: Option<Seq>) -> bool {
    claimed > newest.map_or(0, |s| s.0).saturating_add(CLAIM_SLACK_SEQS)
}

/// A member of `stripe` whose Have shows the stripe missing while others arrive
/// ([`crate::core::neighbours::HaveSummary::starved_of`]): not merely joining.
pub fn shows_starved(n: &Neighbour, stripe: u8, stripes: u8) -> bool {
    n.member == Some(stripe)
        && n.have
            .is_some_and(|h| h.starved_of(stripe, stripes) == Some(true))
}

/// A starved member of `stripe` ([`shows_starved`]) that says it is detached (depth 255): one
/// that left its parent. The seed takes one that asks it as an extra root (its own offers go
/// to starved members, detached or not: [`Guard::extra_root_candidate`]).
pub fn is_starved_member(n: &Neighbour, stripe: u8, stripes: u8) -> bool {
    n.depth == u8::MAX && shows_starved(n, stripe, stripes)
}

/// What a second copy of a chunk we hold turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyVerdict {
    Duplicate,
    Forged(SocketAddr),
    /// Signed, but not the chunk held: one of the two is from another broadcast under the
    /// same key.
    OtherBroadcast,
}

/// The barren rule: a stripe child of the seed that has passed nothing on for
/// [`BARREN_AFTER_US`] gives its place up to anyone. A forger (every child banned it) or a
/// free rider in a root slot would starve its whole stripe (bl-sim: continuity 83 % with 3
/// forgers among 300 peers). "Nothing on" is its own claim of children, or
/// [`AUDIT_MISSES_BARREN`] audits in a row unanswered: a withholder that keeps announcing
/// children does not answer the seed either, unless it treats the seed apart.
pub fn is_barren(n: &Neighbour, now: u64) -> bool {
    !n.children.is_empty()
        && now >= n.fed_since + BARREN_AFTER_US
        && (n.feeding == 0 || n.audits_unanswered >= AUDIT_MISSES_BARREN)
}

/// Seed: a copy of chunk `seq` from `n`: if its audit asked for it, the audit is answered.
pub fn audit_answered(n: &mut Neighbour, seq: u64) {
    if n.audit == Some(seq) {
        n.audit = None;
        n.audits_unanswered = 0;
    }
}

#[cfg(test)]
mod tests;
