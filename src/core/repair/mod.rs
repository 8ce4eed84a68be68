//! Have and repair: what this node announces it holds, what it knows exists but lacks (the
//! missing set), whom it asks for that and when, and how many repairs it serves others (the
//! repair budget). Push is the data path; this is how a lost or late push is made good.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::core::config::{
    Tuning, CHILD_OVERDRAFT, DEFAULT_RTT_US, IDLE_HAVE_TICKS_PEER, IDLE_HAVE_TICKS_SEED,
    IN_FLIGHT_WAIT_US, LATE_UPSTREAM_WAIT_US, PARENT_QUIET_US, PARENT_REPAIR_EXTRA_US,
    REPAIR_DELAY_US, REPAIR_SHARE_MIN, REPAIR_SHARE_SEED, SEED_AFTER_TRIES, SEED_SPREAD_US,
    STRAY_ASKED_GRACE_US, TREE_HAVE_TICKS_PEER, UNPUSHED_CREDIT_MAX,
};
use crate::core::history::History;
pub use crate::core::missing::Arrival;
use crate::core::missing::{Asked, Missing, MissingSet};
use crate::core::neighbours::{Neighbour, Neighbours};
use crate::core::outbox::Outbox;
use crate::core::push_log::PushLog;
use crate::core::rng::Rng;
use crate::core::seq_times::SeqTimes;
use crate::core::stripes::{stripe_of, StripeSet};
use crate::core::timers::{Timer, Timers};
use crate::core::units::{Micros, Seq};
use crate::proto::wire::{Message, Role, MAX_REQUEST_SEQS};

/// How many repairs this node may still serve, refilled every tick from the stream rate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepairBudget {
    /// Repairs it may still serve (chunks).
    pub credit: f64,
    /// Seed: chunks it read while no child subscribed to their stripe (stream start), which
    /// it owes one copy each on request beyond the credit.
    pub unpushed: f64,
    /// New chunks since the last tick: the stream rate the budget scales with.
    pub new_chunks: u64,
}

impl RepairBudget {
    /// Refills the budget from the stream rate seen in the last tick. Repairs are charged to
    /// --max-upload: what the pushes leave of it, at least a floor (orphans after a parent
    /// died need a burst of repairs from busy members). The seed's budget is a fixed share:
    /// everything it sends counts against source amplification.
    pub fn refill(&mut self, role: Role, max_upload: f64, children: u8, stripes: u8) {
        let share = match role {
            Role::Seed => max_upload * REPAIR_SHARE_SEED,
            Role::Peer => {
                let pushing = f64::from(children) / f64::from(stripes);
                (max_upload - pushing).max(REPAIR_SHARE_MIN * max_upload)
            }
        };
        let refill = self.new_chunks as f64 * share + 2.0;
        // Unused budget keeps a little while: a joiner's catch-up comes as one burst.
        self.credit = (self.credit + refill).min(4.0 * refill);
        self.new_chunks = 0;
    }

    /// Whether one more repair may be served. A child asking again for a push it lost comes
    /// first: it may overdraw the budget a little, which later refills repay before anyone
    /// else is served. Catch-up from joiners must not starve it.
    pub fn spend(&mut self, for_child: bool) -> bool {
        let floor = if for_child {
            1.0 - CHILD_OVERDRAFT
        } else {
            1.0
        };
        if self.unpushed >= 1.0 {
            self.unpushed -= 1.0;
        } else if self.credit < floor {
            return false;
        } else {
            self.credit -= 1.0;
        }
        true
    }

    /// Seed: nobody got this chunk from us: its first copy, asked for by an early joiner, is
    /// owed whatever the budget says.
    pub fn owe_unpushed(&mut self) {
        self.unpushed = (self.unpushed + 1.0).min(UNPUSHED_CREDIT_MAX);
    }
}

/// How far the stream has gone, as this node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// The newest seq claimed: by a neighbour's Have, or verified here.
    pub claimed: Seq,
    /// The newest seq we may act on beyond noting: verified here, or the median of what
    /// neighbours announced.
    pub proven: Seq,
}

impl Known {
    /// A seq this node verified itself.
    pub fn verified(seq: Seq) -> Known {
        Known {
            claimed: seq,
            proven: seq,
        }
    }
}

#[derive(Debug, Default)]
pub struct Repair {
    pub missing: MissingSet,
    pub budget: RepairBudget,
    /// When this node last pushed each recent chunk down its stripe.
    pub pushes: PushLog,
    /// The median of neighbours' newest seqs, as of the last Have ([`Repair::corroborate`]).
    pub corroborated: Option<Seq>,
    /// Scratch for the median, kept to spare an allocation per Have.
    claims: Vec<u64>,
    /// Seed: when it last served each recent chunk to a peer outside the chunk's root slots
    /// ([`SEED_SPREAD_US`]).
    spread: SeqTimes,
}

impl Repair {
    /// Sets [`Repair::corroborated`] to the median of the newest seqs neighbours announced:
    /// liars must be half of a node's neighbours to move it. (Taking the second highest, so
    /// that one liar could not, let two of 5 % liars in a 1,000-peer bl-sim run wipe their
    /// neighbours' missing sets: continuity 96 %.)
    pub fn corroborate(&mut self, neighbours: &Neighbours) -> Option<Seq> {
        // Claims of neighbours that leave our requests unanswered count only if nobody
        // else's do: liars that claimed everything were half of some peers' neighbours
        // (their Peers lists name only liars), and the median was theirs.
        let believed = neighbours
            .values()
            .any(|n| n.have.is_some() && !n.ignores_us());
        self.claims.clear();
        self.claims.extend(
            neighbours
                .values()
                .filter(|n| !(believed && n.ignores_us()))
                .filter_map(|n| n.have)
                // A Have of nothing (before the stream, or a joiner's) names seq 0: counted,
                // it made "the stream moved on without us" true before the stream began,
                // and peers replaced every parent a second after subscribing.
                .filter(|h| h.recent != 0)
                .map(|h| h.highest),
        );
        let Some(last) = self.claims.len().checked_sub(1) else {
            // Nobody announced a chunk (yet): no claim to go by.
            self.corroborated = None;
            return None;
        };
        let middle = last / 2;
        let (_, median, _) = self.claims.select_nth_unstable(middle);
        self.corroborated = Some(Seq(*median));
        self.corroborated
    }

    /// Answers `from`'s Request for `seqs` from `history`, within the budget. The seed's
    /// requests (its audits, one chunk a second) may overdraw it as a child's do: an audit
    /// left unanswered counts against us, and with churn, roots that spent their budget on
    /// orphans were taken for withholders (bl-sim, 1,000 peers, churn, seed 8: 146 → 4,436
    /// chunks skipped).
    ///
    /// With `rejects` (a peer), the seqs it lacks or has no budget for go back in one
    /// Reject, and the requester asks elsewhere at once instead of after 2 × RTT + 10 ms. In
    /// a flash crowd most asks go to joiners that lack the chunk or are busy, and a viewer's
    /// first seconds were spent waiting out such silences (bl-sim, 10,000 × 30 s, seed 1:
    /// docs/PERFORMANCE.md, "Requests refused out loud"). A request that crossed our push
    /// gets no Reject: the push is on its way; nor a child's for a chunk of its stripe that
    /// we lack (below). The seed sends none: it is asked last, it refuses thousands of
    /// joiners' asks while they fetch their backlogs, and Rejects for them were 0.05 stream
    /// copies of its upload (10,000 × 20 s).
    ///
    /// The seed serves a chunk to a peer outside its root slots once per [`SEED_SPREAD_US`];
    /// the next to ask within that time finds it at the first, or down the tree.
    #[allow(clippy::too_many_arguments)]
    pub fn serve(
        &mut self,
        now: u64,
        from: SocketAddr,
        seqs: Vec<u64>,
        from_seed: bool,
        (children, child_since): (StripeSet, u64),
        child_min_rtt_us: u64,
        history: &History,
        stripes: u8,
        role: Role,
        out: &mut Outbox,
    ) {
        // The seed collects nothing: it refuses thousands of asks in a flash crowd.
        let mut rejected = (role == Role::Peer).then(Vec::new);
        for seq in seqs {
            let stripe = stripe_of(seq, stripes);
            let Some(chunk) = history.get(seq).cloned() else {
                // A child's ask for a chunk of a stripe we feed it gets no Reject: we are
                // missing it too and push it down once our own repair brings it. Rejected,
                // the child asked everyone else at once, and when a seed died a whole
                // subtree asked its neighbours for every chunk the seed never sent
                // (tests/lifecycle.rs, two seeds, scripts/stress: 2 runs of 12 skipped
                // chunks of three stripes to the end, their viewers sending up to 11,049
                // Requests in 20 s against 90-1,300; none of 12 without these Rejects).
                if let Some(r) = rejected.as_mut().filter(|_| !children.contains(stripe)) {
                    r.push(seq);
                }
                continue;
            };
            let crossed = children.contains(stripe)
                && self
                    .pushes
                    .crossed(seq, stripes, now, child_since, child_min_rtt_us);
            if crossed {
                out.stats.counters.repairs_crossed += 1;
                continue;
            }
            let outsider = role == Role::Seed && !children.contains(stripe);
            let spread = |at: u64| now < at.saturating_add(SEED_SPREAD_US);
            if outsider && self.spread.at(seq).is_some_and(spread) {
                out.stats.counters.repairs_spread += 1;
                continue;
            }
            if !self.budget.spend(children.contains(stripe) || from_seed) {
                out.stats.counters.repairs_refused += 1;
                if let Some(r) = rejected.as_mut() {
                    r.push(seq);
                }
                continue;
            }
            out.stats.counters.repairs_served += 1;
            if outsider {
                self.spread.note(seq, now);
            }
            out.send_owned(from, Message::Chunk(chunk));
        }
        if let Some(seqs) = rejected.filter(|r| !r.is_empty()) {
            out.send_owned(from, Message::Reject { seqs });
        }
    }

    /// `from` rejected our Request for `seqs`: those we last asked of it (and only those: a
    /// Reject for anything else moves nothing) are tried again, of someone else, at once the
    /// first time a seq is rejected and when its wait runs out after that. It counts as
    /// having left a seq unanswered only if its Have's bitmap showed that seq (see
    /// `request_due`).
    pub fn on_reject(&mut self, now: Micros, from: SocketAddr, seqs: &[u64], timers: &mut Timers) {
        for &seq in seqs {
            self.missing.rejected_by(Seq(seq), from, now);
        }
        timers.set_earlier(Timer::Repair, self.missing.earliest());
    }

    /// Chunk `seq` of `stripe` arrived from `from` (None: stdin): it is no longer missing
    /// (its answer times the neighbour asked), and, if it `shows_late_upstream` (it came
    /// down the stripe's tree or answered a request), earlier chunks of its stripe still
    /// absent were lost on the way. An answer, or a chunk that `serves` us (a recent one: a
    /// parent's push), clears the sender's unanswered count.
    #[allow(clippy::too_many_arguments)]
    pub fn on_arrival(
        &mut self,
        now: Micros,
        seq: Seq,
        from: Option<SocketAddr>,
        serves: bool,
        shows_late_upstream: bool,
        stripes: u8,
        neighbours: &mut Neighbours,
        timers: &mut Timers,
    ) {
        let mut answered = false;
        if let Some(Missing {
            asked: Some(asked), ..
        }) = self.missing.remove(seq)
        {
            if from == Some(asked.to) {
                neighbours.note_rtt(asked.to, now.since(asked.at));
                answered = true;
            }
        }
        if answered || serves {
            if let Some(n) = from.and_then(|a| neighbours.get_mut(&a)) {
                n.ignored = 0;
            }
        }
        self.budget.new_chunks += 1;
        if !shows_late_upstream {
            return;
        }
        let stripe = stripe_of(seq.0, stripes);
        let of_stripe = |s: Seq| stripe_of(s.0, stripes) == stripe;
        self.missing
            .bring_forward(seq, now + LATE_UPSTREAM_WAIT_US, of_stripe);
        timers.set_earlier(Timer::Repair, self.missing.earliest());
    }

    /// The sender of chunk `seq` pushed us the chunk before it in its stripe too (a
    /// ChunkPrevPushed): if we lack that one, it was lost on the link, and the sender can
    /// answer for it, so it is asked for at once. After a plain Chunk it may be late upstream
    /// and come down by push, and the ask waits [`LATE_UPSTREAM_WAIT_US`]. A lost chunk holds
    /// back every chunk behind it until its repair comes: 1 % loss cost 140 ms of the latency
    /// p50 at 3,000 peers, and asking at once took 90.6 ms off the p50 at 10,000
    /// (docs/PERFORMANCE.md, "A push lost on our link asked for at once").
    pub fn prev_lost_on_link(&mut self, now: Micros, seq: Seq, stripes: u8, timers: &mut Timers) {
        if let Some(prev) = seq.0.checked_sub(u64::from(stripes)) {
            self.missing.ask_now(Seq(prev), now);
            timers.set_earlier(Timer::Repair, self.missing.earliest());
        }
    }

    /// Playout starts at `start`: what lies between it and `last` that we lack is missing
    /// now, or, where `arrival` says its parent may still push it (a parent that held our
    /// pushes until this keyframe and has not released yet: `core::tree::hold`), once it
    /// has had the time a chunk in flight gets.
    #[allow(clippy::too_many_arguments)]
    pub fn note_gap(
        &mut self,
        now: Micros,
        start: Seq,
        last: Seq,
        history: &History,
        tuning: &Tuning,
        arrival: impl Fn(Seq) -> Arrival,
        timers: &mut Timers,
    ) {
        for seq in start.through(last.min(start.ahead(tuning.history as u64))) {
            if !history.contains(seq.0) {
                let arrival = arrival(seq);
                let at = match arrival {
                    Arrival::MayStillBePushed => now + IN_FLIGHT_WAIT_US.min(tuning.latency_us / 2),
                    Arrival::Lost => now,
                };
                self.missing.note(seq, at, arrival);
                timers.set_earlier(Timer::Repair, Some(at));
            }
        }
    }

    /// Everything up to `known.claimed` exists somewhere: note what we lack as missing, from
    /// past `highest` (what we hold) and no earlier than `play_from`. `arrival` tells, per
    /// seq, whether its parent may still push it.
    #[allow(clippy::too_many_arguments)]
    pub fn note_known(
        &mut self,
        now: Micros,
        known: Known,
        play_from: Seq,
        highest: Option<Seq>,
        history: &History,
        tuning: &Tuning,
        arrival: impl Fn(Seq) -> Arrival,
        timers: &mut Timers,
    ) {
        // Haves are unsigned. What one neighbour alone claims is noted missing only up to a
        // quarter history past the newest chunk we verified (a Have naming u64::MAX made us
        // ask for 1,024 chunks that do not exist), and drops nothing (below: a Have naming
        // u64::MAX cleared the whole missing set, and playout skipped all it was repairing).
        // Before we hold a chunk, from where playout starts: unbounded, a lie filled the set
        // with 1,024 seqs far ahead, nothing removed them (they lay above every floor), and
        // no gap was noted again (bl-sim, 5 % liars: 98 % of honest peers' skips).
        let anchor = highest.unwrap_or(play_from);
        let trusted = anchor.ahead(tuning.history as u64 / 4);
        // The median may take us further, and drop what lies a history behind it, within
        // what the pace of our own chunks allows (the caller's bound: Node::plausible_newest).
        // Without a chunk of our own there is no pace to judge it by: liars were half of
        // some peers' neighbours (their Peers lists name only liars), and the median was
        // theirs.
        let proven = match highest {
            Some(_) => known.proven,
            None => known.proven.min(trusted),
        };
        let seq = known.claimed.min(trusted.max(proven));
        // Whatever lies beyond what we now believe exists was noted on a claim since
        // disproved (the bound tightens as our own chunks come): nothing would remove it
        // but the stream reaching it.
        self.missing.remove_above(trusted.max(proven));
        // Histories are windows of the newest seqs, so nobody holds a seq a whole history
        // behind the newest one known to exist: asking for it is futile. This also bounds the
        // set's span by a history however far playout lags (bl-sim, 100,000 peers, 10 s: a
        // peer held 750 entries over 2,070 seqs, so its playout was at least 4.7 s behind the
        // newest).
        let held_somewhere = proven.min(seq).next().back(tuning.history as u64);
        self.missing.remove_below(held_somewhere);
        let from = highest.map_or(play_from, Seq::next);
        let from = from.max(play_from).max(held_somewhere);
        if seq < from || self.missing.len() >= tuning.history {
            return;
        }
        for s in from.through(seq.min(from.ahead(1024))) {
            if !history.contains(s.0) {
                let arrival = arrival(s);
                let wait = match arrival {
                    // Not longer than playout would wait for it.
                    Arrival::MayStillBePushed => IN_FLIGHT_WAIT_US.min(tuning.latency_us / 2),
                    Arrival::Lost => REPAIR_DELAY_US,
                };
                self.missing.note(s, now + wait, arrival);
                timers.set_earlier(Timer::Repair, Some(now + wait));
            }
        }
    }

    /// Chunks put off for a parent that has since gone quiet in their stripe (or is gone)
    /// will not come by push: ask for them now.
    pub fn stripes_gone_quiet(
        &mut self,
        now: Micros,
        stripes: u8,
        flowing: impl Fn(u8) -> bool,
        timers: &mut Timers,
    ) {
        if self.missing.is_empty() {
            return;
        }
        for stripe in 0..stripes {
            if !flowing(stripe) {
                let of_stripe = |s: Seq| stripe_of(s.0, stripes) == stripe;
                self.missing.bring_forward(Seq(u64::MAX), now, of_stripe);
            }
        }
        timers.set_earlier(Timer::Repair, self.missing.earliest());
    }

    /// Sends the requests that are due. The first for a chunk goes to its stripe's parent: it
    /// lost the chunk on our link (it answers at once) or upstream (it is repairing it and
    /// pushes it down to us anyway), so a subtree does not storm its neighbours for one chunk
    /// lost near the root. Then any peer that announced it; the seed when no peer has it
    /// after two tries, or when no peer's bitmap shows it (see `pick_source`).
    #[allow(clippy::too_many_arguments)]
    pub fn request_due(
        &mut self,
        now: Micros,
        play_from: Option<Seq>,
        parent_of: impl Fn(u8) -> Option<SocketAddr>,
        stripes: u8,
        neighbours: &mut Neighbours,
        rng: &mut Rng,
        timers: &mut Timers,
        out: &mut Outbox,
    ) {
        if self.missing.is_empty() || !timers.expired(Timer::Repair, now) {
            return;
        }
        let mut batches: BTreeMap<SocketAddr, Vec<u64>> = BTreeMap::new();
        let due = self.missing.due(now, play_from.unwrap_or_default(), 256);
        // Only parents heard from lately are asked: a dead one would cost a round of waiting.
        let live_parents: Vec<Option<SocketAddr>> = (0..stripes)
            .map(|s| {
                parent_of(s).filter(|p| {
                    neighbours
                        .get(p)
                        .is_some_and(|n| now.0 < n.last_heard + PARENT_QUIET_US)
                })
            })
            .collect();
        let seed = neighbours.seed();
        for seq in due {
            let stripe_parent = live_parents
                .get(stripe_of(seq.0, stripes) as usize)
                .copied()
                .flatten();
            let entry = self.missing.get(seq);
            let tries = entry.map_or(0, |m| m.tries);
            // Asked before and still missing: whoever was asked left it unanswered. Counted
            // against it only if its Have claimed the chunk: the seed, asked last whatever it
            // announced, was otherwise ignored for chunks it no longer held, and a peer
            // whose only neighbour it was lost track of the stream. A Reject counts only
            // against a claim its bitmap made: one for a chunk a Have merely presumes held
            // (older than its bitmap) corrects the presumption. Counted too, a seed's death
            // made every peer presume the chunks of its stripes held: the Rejects came back
            // within a round trip, each one a count, and viewers ignored every neighbour,
            // then skipped those stripes for seconds (tests/lifecycle.rs, two seeds: 1 of 8
            // runs under scripts/stress, with 248-362 neighbours ignored a viewer against
            // 4-14 in the runs that passed).
            let mut rejecter = None;
            let rejected = entry.is_some_and(|m| m.rejected);
            if let Some(asked) = entry.and_then(|m| m.asked) {
                let claimed = |n: &Neighbour| {
                    if rejected {
                        n.have.is_some_and(|h| h.announces(seq.0))
                    } else {
                        n.holds(seq.0)
                    }
                };
                if neighbours.get(&asked.to).is_some_and(claimed) {
                    neighbours.note_unanswered(now.0, asked.to);
                }
                rejecter = rejected.then_some(asked.to);
            }
            let (target, wait) =
                pick_source(seq, tries, stripe_parent, seed, rejecter, neighbours, rng);
            if !self.missing.contains(seq) {
                continue;
            }
            let mut next_try = now + wait;
            if let Some(to) = target {
                let batch = batches.entry(to).or_default();
                if batch.len() < MAX_REQUEST_SEQS {
                    batch.push(seq.0);
                } else {
                    // Left out of a full Request, it moves on to its next try at once, and
                    // counts against whom it was meant for if it stays missing: a large gap
                    // is spread over several neighbours, and a liar, which claims every
                    // chunk and is picked for many, is soon ignored. (Held at its try
                    // instead: bl-sim, 1,000 peers × 20 s, seeds 1-8, chunks skipped 414 ->
                    // 444-526 in all; counted against nobody, 500 peers with 5 % liars, seed
                    // 3, the worst honest peer played 73.6 % against 95.8 %.) So a seq left
                    // out of a full Request to the seed skips that ask of the seed.
                    next_try = now;
                }
            }
            // A round with nobody to ask counts as a try too: it leads to the seed.
            let asked = target.map(|to| Asked { to, at: now });
            self.missing.tried(seq, next_try, asked);
        }
        let mut batches: Vec<(SocketAddr, Vec<u64>)> = batches.into_iter().collect();
        batches.sort();
        for (to, seqs) in batches {
            // Its answer may come after the chunk came from elsewhere: not a stray feed.
            if let Some(n) = neighbours.get_mut(&to) {
                n.strays_let_be_until = n.strays_let_be_until.max(now.0 + STRAY_ASKED_GRACE_US);
            }
            out.send(to, &Message::Request { seqs });
        }
        // Anything below what playout still wants is no longer worth asking for.
        if let Some(p) = play_from {
            self.missing.remove_below(p);
        }
        timers.set_or_clear(Timer::Repair, self.missing.earliest());
    }
}

/// Whom to ask for `seq` on its try number `tries`, and how long to wait for the answer.
/// `rejecter` just sent a Reject for it, and is not asked again at once.
fn pick_source(
    seq: Seq,
    tries: u32,
    stripe_parent: Option<SocketAddr>,
    seed: Option<SocketAddr>,
    rejecter: Option<SocketAddr>,
    neighbours: &Neighbours,
    rng: &mut Rng,
) -> (Option<SocketAddr>, u64) {
    // Peers that announced it, in address order (no list: this runs for every missing
    // chunk). Peers first: the seed's upload is the scarce resource.
    let peer_holders = || {
        neighbours
            .iter()
            .filter(move |(a, n)| {
                n.role != Role::Seed && n.holds(seq.0) && !n.ignores_us() && Some(**a) != rejecter
            })
            .map(|(a, _)| *a)
    };
    let peer_count = peer_holders().count();
    let ask_seed = || {
        seed.map_or((None, DEFAULT_RTT_US), |s| {
            (Some(s), neighbours.answer_wait(s))
        })
    };
    let announced = || {
        neighbours.values().any(|n| {
            n.role != Role::Seed && !n.ignores_us() && n.have.is_some_and(|h| h.announces(seq.0))
        })
    };
    // A parent whose Have covers the seq but lacks it is repairing it one round trip further
    // up and pushes it down: others are asked only after that much more time.
    let parent_lacks_it = stripe_parent
        .and_then(|p| neighbours.get(&p))
        .is_some_and(|n| n.have.is_some_and(|h| h.highest >= seq.0) && !n.holds(seq.0));
    match stripe_parent {
        Some(parent) if tries == 0 => {
            let extra = if parent_lacks_it {
                PARENT_REPAIR_EXTRA_US
            } else {
                0
            };
            (Some(parent), neighbours.answer_wait(parent) + extra)
        }
        // Peers that "hold" it may only be presumed to: a Have's bitmap covers the newest 128
        // seqs, and everything older counts as held. A chunk every peer lost (only a seed
        // read it) was asked of peers over and over and never of the seed: in the two-seed
        // test, every viewer skipped the same chunk in 6 failovers of 16 when tests ran two
        // at a time. So try number [`SEED_AFTER_TRIES`], if no peer's bitmap shows it, goes
        // to the seed. (Every try from then on, whatever the bitmaps said, swamped the seed's
        // budget: bl-sim, 1,000 peers × 10 s, seeds 1–8, chunks skipped 40 → 1,826 a run;
        // every other try, 40 → 171; every other try while no bitmap shows it, 40 → 58 and
        // source amplification 1.59 → 1.69.) The seed leaves requests beyond its repair
        // budget unanswered, and a viewer's first seconds are when every joiner fetches its
        // backlog from it: asked once, a chunk it left unanswered was asked of peers until
        // its deadline passed (tests/lifecycle.rs, two seeds, once in CI: the two viewers
        // that joined at the stream's start skipped the same two chunks, while the surviving
        // seed had left 254 requests unanswered). So it is asked again at tries 8, 16, 32,
        // ...: on loopback, where a try takes 20 ms, that is up to 5 more asks in a 3 s
        // playout latency; where a try takes a few hundred ms, as in bl-sim, seldom any.
        _ if tries % SEED_AFTER_TRIES == 0
            && (tries / SEED_AFTER_TRIES).is_power_of_two()
            && seed.is_some()
            && !announced() =>
        {
            ask_seed()
        }
        _ if peer_count > 0 => {
            let pick = rng.below(peer_count);
            match peer_holders().nth(pick) {
                Some(to) => (Some(to), neighbours.answer_wait(to)),
                None => (None, DEFAULT_RTT_US),
            }
        }
        _ if tries >= 2 => ask_seed(),
        // Nobody announced it yet (Haves are 200–300 ms apart): wait for them.
        _ => (None, DEFAULT_RTT_US),
    }
}

/// The Have this node announces: what its history holds, and its place in the trees.
pub fn have(
    history: &History,
    highest: Option<Seq>,
    children: u8,
    spare: u8,
    depth: u8,
) -> Message {
    let (first, highest, recent) = match highest {
        Some(Seq(highest)) => {
            let first = history.first().unwrap_or(highest);
            let mut recent = 0u128;
            for seq in history.seqs_between(highest.saturating_sub(127), highest) {
                recent |= 1u128 << (highest - seq);
            }
            (first, highest, recent)
        }
        None => (0, 0, 0),
    };
    Message::Have {
        first,
        highest,
        recent,
        children,
        spare,
        depth,
    }
}

/// Haves double as keepalives: on tick number `ticks` they go often to the tree around us
/// (parents and children), less often to the rest. Peers' Haves go every
/// [`TREE_HAVE_TICKS_PEER`] ticks to the tree and every [`IDLE_HAVE_TICKS_PEER`] to others
/// (they are each other's repair sources); the seed's every tick to its children and every
/// [`IDLE_HAVE_TICKS_SEED`] ticks to the rest: it has a thousand neighbours and is asked for
/// repairs last.
pub fn announce(
    ticks: u64,
    role: Role,
    have: &Message,
    is_parent: impl Fn(SocketAddr) -> bool,
    neighbours: &Neighbours,
    out: &mut Outbox,
) {
    let (tree_ticks, idle_ticks) = match role {
        Role::Seed => (1, IDLE_HAVE_TICKS_SEED),
        Role::Peer => (TREE_HAVE_TICKS_PEER, IDLE_HAVE_TICKS_PEER),
    };
    let everyone = ticks % idle_ticks == 0;
    let tree_due = ticks % tree_ticks == 0;
    for (addr, n) in neighbours.iter() {
        if everyone || tree_due && (!n.children.is_empty() || is_parent(*addr)) {
            out.send(*addr, have);
        }
    }
}

#[cfg(test)]
mod tests;
