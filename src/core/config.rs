//! The core's configuration ([`Config`], with its [`Tuning`]) and the protocol's fixed
//! timings and limits, each with the measured reason for its value.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::media::identity::StreamId;
use crate::media::verified::VerifiedChunks;
use crate::proto::wire::Role;

/// How often Haves go out and maintenance runs.
pub const TICK_US: u64 = 100_000;
/// A missing chunk is requested this long after a later one is known.
pub const REPAIR_DELAY_US: u64 = 50_000;
/// ... and this long after a later push of its own stripe that was not a ChunkPrevPushed: it
/// is late upstream, and its parent pushes it down once repaired (a push lost on our link is
/// asked for at once: core::repair). 100 ms, not [`REPAIR_DELAY_US`], since that ask came in:
/// bl-sim, 3,000 × 20 s, 1 % loss, seed 1, duplicates 2.59 → 2.13 % of chunks played,
/// overhead 14.53 → 14.23 %, latency p50 434.5 ms both. 100 ms for every gap a later chunk
/// shows (those Haves show too) held back the stripes of withholding roots: continuity with
/// 4 withholders among 500 peers 0.9979 → 0.9958, with 5 % liars 0.9995 → 0.9988.
pub const LATE_UPSTREAM_WAIT_US: u64 = 100_000;
/// A request that was not answered is retried (elsewhere) after twice the RTT to whom it went
/// and 10 ms, within these bounds (a far or busy neighbour must not be asked again before it
/// can answer; a near one that lost the answer should be asked again soon).
pub const REPAIR_RETRY_MIN_US: u64 = 20_000;
pub const REPAIR_RETRY_MAX_US: u64 = 600_000;
/// A neighbour that pushes us a stripe it does not feed us by our account (our Unsubscribe to
/// it, or its acceptance of our Subscribe, was lost, so it still counts us as its child) is
/// sent an Unsubscribe, at most once in this long: one is enough unless it is lost too.
/// bl-sim, 1,000 peers × 20 s, seed 1: such leftover feeds were half of all duplicates.
pub const STRAY_STOP_EVERY_US: u64 = 200_000;
/// ... unless we asked it for a chunk in this long: what it sends may be the answer (a
/// request waits at most [`REPAIR_RETRY_MAX_US`] for one).
pub const STRAY_ASKED_GRACE_US: u64 = REPAIR_RETRY_MAX_US;
/// The RTT assumed of a neighbour not yet timed.
pub const DEFAULT_RTT_US: u64 = 100_000;
/// The first request for a missing chunk goes to the stripe's parent. If the parent lacks it
/// too (its Have says so), it is repairing it one round trip further up and pushes it down:
/// others are asked only after that much more time.
pub const PARENT_REPAIR_EXTRA_US: u64 = 100_000;
/// A parent that sent nothing for this long may be dead: its stripe's gaps are repaired from
/// others at once, and it is not asked.
pub const PARENT_QUIET_US: u64 = 250_000;
/// The seed gives a stripe child this long to pass the stripe on before anyone may take its
/// place.
pub const BARREN_AFTER_US: u64 = 2_000_000;
/// ... and then refuses its subscriptions this long.
pub const BARRED_US: u64 = 30_000_000;
/// Seed: a Have claiming seqs more than this past our newest chunk is a lie (we are the
/// source), and its sender loses its root slots and is barred ([`BARRED_US`]). 1.2 s at
/// 2 Mb/s: a second seed of the same chunks (`tee` into two bl-seeds) runs at most a pipe's
/// buffer (64 KiB, about 58 chunks) ahead of us.
pub const CLAIM_SLACK_SEQS: u64 = 256;
/// The seed audits its stripe children every this many ticks, asking for a chunk this many
/// seqs old (about 1 s at 2 Mb/s).
pub const AUDIT_TICKS: u64 = 10;
/// A stripe child that leaves this many audits in a row unanswered is barren, whatever
/// children it announces: a withholder took a root slot and announced the children that had
/// not left it yet (bl-sim, 5 % liars, seed 8: stripe 1 without a root for 6 s).
pub const AUDIT_MISSES_BARREN: u8 = 3;
pub const AUDIT_AGE_CHUNKS: u64 = 256;
/// Seed: a stripe is starved below its root slots when more than half of the stripe's members
/// among the seed's neighbours (at least this many, each heard within [`STARVED_HEARD_US`])
/// have shown the stripe missing from their Haves for [`STARVED_FOR_US`]; the seed then
/// offers its oldest starved member that left its parent (depth 255) a root slot beyond the
/// budget, and takes one that asks.
/// A withholder in a root slot that answers the seed's audits and announces depth 1 and
/// children starves its whole stripe this way (bl-sim, 1,000 peers, the first 4 withholding:
/// continuity 70-81 %). Letting the root go instead, as a withholder, let honest roots go too:
/// at startup a stripe can look starved for 2 s (bl-sim, 1,000 peers, seed 8), and re-forming
/// it took 3 s more.
pub const STARVED_MIN_MEMBERS: usize = 4;
/// A quarter second since the backlog (below): the sooner the new root, the more of what the
/// stripe missed is still due when it arrives. Against 0.5 s (bl-sim, 1,000 peers × 20 s):
/// the first 4 withholding, seeds 1, 2, 6, 8, honest continuity mean 99.913 -> 99.924 %;
/// 5 % liars, seeds 1-16, 99.915 -> 99.937 % (seed 8 99.762 -> 99.854 %, seed 11 99.740 ->
/// 99.835 %); without adversaries (10 s, seeds 1-8) no more extra roots, chunks skipped
/// 41.0 -> 46.0 a run.
pub const STARVED_FOR_US: u64 = 250_000;
pub const STARVED_HEARD_US: u64 = 1_000_000;
/// A member's Have tells whether it is starved of its stripe only once the seqs it judges by
/// hold this many of the stripe's chunks ([`crate::core::neighbours::HaveSummary::starved_of`]);
/// until then it counts neither way. While peers join fast, half of a stripe's members may
/// have joined within the last few dozen seqs: counted as fed, they hid a stripe below a liar
/// in a root slot until 1.7 s into the stream (bl-sim, 1,000 peers × 20 s, 5 % liars, seed
/// 10: honest continuity 99.684 -> 99.868 %; seeds 1-16 mean 99.937 -> 99.963 %; the first 4
/// withholding, seeds 1-8, mean 99.960 -> 99.983 %, worst 99.872 -> 99.922 %; without
/// adversaries, 10 s, seeds 1-8, no more extra roots).
pub const STARVED_JUDGED_CHUNKS: u32 = 4;
/// After an extra root, a stripe must stay starved this long before the seed takes another:
/// the new root's subtree takes a second or more to form, and while it does the stripe still
/// looks starved. Since the seed offers extra roots unasked, 0.5 s here took a second and
/// third one for honest stripes still forming (bl-sim, 1,000 peers × 10 s, seeds 1-8: 0.75
/// extra roots a run and 1.73 stream copies of seed upload, against 0.38 and 1.68 at 2 s).
pub const EXTRA_ROOT_GAP_US: u64 = 2_000_000;
/// Seed: once no stripe has looked starved for this long (and as long since the last
/// release), it lets go of one root slot beyond its budget ([`crate::core::root_release`]).
pub const EXTRA_ROOT_CALM_US: u64 = 4_000_000;
/// Seed: a starved stripe is not judged withheld
/// ([`crate::core::guard::Guard::looks_withheld`]) within this long of the first extra root
/// of its starved spell (nor within [`EXTRA_ROOT_GAP_US`] of the last): the members the new
/// root takes, and those still joining, hang below parents while their Haves show the
/// starvation it ends. Judged from 2 s after it, 100,000 peers joining 10,000 a second kept
/// an honest stripe's two extra roots for the whole run: at the first tick 2 s after its
/// extra root, 88 of the 166 members starved of it at the seed hung below a parent, and
/// 0.2 s later it was no longer starved (bl-sim, 100,000 × 20 s, seed 1; source
/// amplification 1.80 at 60 s). Withholders' stripes looked withheld within 1.7 s of the
/// stream's start, before 2 s could pass after any extra root (1,000 peers, `--withholders
/// 4`, seeds 1, 2, 6, 8).
pub const WITHHELD_JUDGED_AFTER_US: u64 = 4_000_000;
/// Seed: a starved stripe two thirds of whose starved members here hang below a parent looks
/// withheld ([`crate::core::guard::Guard::looks_withheld`]) only once that has held this
/// long, at every tick it could be judged; three quarters, at once. At 100,000 peers joining
/// 10,000 a second an honest stripe stalled for a moment, and at the tick it got its first
/// extra root exactly two thirds of its starved members hung below a parent (144 of 216;
/// 57-69 % at every other tick of the spell): judged at once, the seed kept that root for
/// the whole run (bl-sim, 100,000 × 60 s, seed 1: source amplification 1.783); held for a
/// tick, it was let go at 7.7 s (100,000 × 12 s). Below withholders, three quarters or more
/// hung below a parent at the tick of 14 of the 16 such judgements in `--withholders 4` runs
/// (1,000 × 20 s, seeds 1-8); the other two came a tick later, and every run's figures were
/// the same. Honest and `--liars 5%` runs (1,000 × 20 s, seeds 1-8) are byte-identical.
pub const WITHHELD_HELD_US: u64 = TICK_US;
/// Seed: an extra root it lets go is still pushed its stripe this long, while it finds a
/// parent among the stripe's members: its subtree is not left without the stripe meanwhile.
pub const HANDOVER_US: u64 = 1_000_000;
/// Seed: a member it makes a root of a starved stripe (an extra root, or a slot within the
/// budget) is sent at once the stripe's chunks captured within this long of the seed's
/// newest that its Have does not show, at most [`BACKLOG_MAX_CHUNKS`]. Until the stripe was
/// found starved, only the seed and the withholder held them: its members could not repair
/// them from anyone but the seed, whose repair budget is small, and skipped them (bl-sim,
/// 1,000 peers, the first 4 withholding, seed 2: 94 % of the chunks skipped were captured
/// before the extra root, due up to 4.5 s after capture at peers that started late).
/// The new root pushes what it lacked down its subtree, as it does any chunk new to it.
/// Two seconds: the playout latency (1.5 s by default) and the quarter second the seed
/// waits before it calls a stripe starved, with room for the Haves that show it.
pub const BACKLOG_US: u64 = 2_000_000;
/// At 2 Mb/s (6 TS packets a chunk) and 4 stripes, two seconds of a stripe are 111 chunks.
pub const BACKLOG_MAX_CHUNKS: usize = 128;
/// Repairs a peer serves are budgeted: what its pushes leave of its upload budget
/// (max_upload − subscriptions fed ÷ K copies of the stream), at least this fraction of
/// max_upload (orphans after a parent died need a burst from members that are full). Not
/// more: pushes and repairs share one uplink queue, and at 1.0 × max_upload a stripe root
/// with a 2 Mb/s uplink overfilled it, its pushes were dropped, and its whole stripe lived on
/// repairs (bl-sim seed 5: 98.9 % continuity, 99.996 % at 0.5). The
/// seed serves [`REPAIR_SHARE_SEED`] × max_upload. Requests beyond the budget are left
/// unanswered and retried elsewhere, so joiners catching up and orphans cannot swamp one
/// uplink.
pub const REPAIR_SHARE_MIN: f64 = 0.5;
/// Slots a peer keeps free when it adopts a leaf of another stripe (core::tree::admission):
/// for members of its own stripe, which would otherwise displace an adopted leaf, and for
/// the repairs its spare upload serves. Adopting up to the last slot, bl-sim (1,000 peers ×
/// 20 s, seeds 1–8) skipped 114 chunks against 60 with one slot kept free; two slots kept
/// free did no better at 10,000 peers (seed 1: pooled p99 1,158 against 1,114 ms; both
/// measured while joiners waiting for a keyframe were still adopted).
pub const ADOPTION_HEADROOM: usize = 1;
pub const REPAIR_SHARE_SEED: f64 = 0.25;
/// The seed serves each chunk to one peer outside the chunk's root slots at most once this
/// long, as a BitTorrent super-seed sends each piece once: the next to ask finds it at that
/// peer or down the tree. A push lost on a root's link drew asks from up to 69 peers for that
/// one seq (docs/PERFORMANCE.md, "Who asks the seed for repairs"), and joiners catching up
/// asked for the same backlog. Its root children's asks are always served.
/// bl-sim, 1,000 × 20 s, seeds 1–8: the seed's repairs 3,469 → 2,595, source amplification
/// 1.540 → 1.499, chunks skipped 206 → 242; with 5 % liars (seeds 1–3) its budget went to
/// more distinct chunks, and chunks skipped fell 755 → 436. A window of 0.2 s gave the same
/// honest figures (1.501). At 10,000 × 30 s, seeds 1 / 2: 1.522 → 1.485 and 1.494 → 1.475,
/// with fewer chunks skipped (424 → 355, 395 → 301).
pub const SEED_SPREAD_US: u64 = 500_000;
/// Repairs a parent may owe its children beyond the budget (chunks): their lost pushes are
/// served before anyone's catch-up.
pub const CHILD_OVERDRAFT: f64 = 32.0;
/// Unpushed chunks the seed serves beyond its budget, at most (twice a joiner's catch-up).
pub const UNPUSHED_CREDIT_MAX: f64 = 2.0 * CATCH_UP_MAX_CHUNKS as f64;
/// Peers' Haves go every [`TREE_HAVE_TICKS_PEER`] ticks to parents and children, and every
/// [`IDLE_HAVE_TICKS_PEER`] ticks to other neighbours (they are each other's repair sources).
/// The seed's go every tick to its children and every [`IDLE_HAVE_TICKS_SEED`] ticks to the
/// rest: it has a thousand neighbours and is asked for repairs last. Haves were as many
/// datagrams as chunks in bl-sim; they are keepalives and repair hints, not the data path.
pub const TREE_HAVE_TICKS_PEER: u64 = 2;
pub const IDLE_HAVE_TICKS_PEER: u64 = 3;
pub const IDLE_HAVE_TICKS_SEED: u64 = 30;
/// A neighbour that left [`crate::core::neighbours::IGNORED_LIMIT`] requests unanswered is
/// not asked, nor believed, for this long.
pub const IGNORED_FOR_US: u64 = 5_000_000;
/// A peer silent this long is gone (it would have sent ~7 Haves).
pub const NEIGHBOUR_TIMEOUT_US: u64 = 1_500_000;
/// The seed Haves idle neighbours every 3 s: it is gone after 3 missed.
pub const SEED_TIMEOUT_US: u64 = 10_000_000;
/// A Hello unanswered this long is retried, at most [`HELLO_ATTEMPTS`] times, each wait twice
/// the last (up to 8×).
pub const HELLO_RETRY_US: u64 = 500_000;
pub const HELLO_ATTEMPTS: u32 = 4;
/// Indices order peers by join time, counted in the stream's own clock: a joiner's index lies
/// in the block of this many after the newest seq it was told of. The seed hands them out in
/// order; a peer that joined through another peer draws one at random from its block, so the
/// many joiners of one moment rarely tie.
pub const INDICES_PER_CHUNK: u64 = 1024;
/// On this try, and again at each doubling of it, a missing chunk that no peer's bitmap shows
/// is asked of the seed even if peers' Haves claim it (the first try goes to the stripe's
/// parent, the next ones to peers that announced it): a Have claims everything older than
/// its 128-seq bitmap, so a chunk that only a seed read looked held by every peer.
pub const SEED_AFTER_TRIES: u32 = 4;
/// A parent that sent us no datagram at all for this long (its Haves come every 100–200 ms)
/// is gone: replaced at once. Two seeds serving one stream lost 2 chunks to the survivor's
/// repair budget when the dead one's children waited a second (tests/lifecycle.rs).
pub const PARENT_GONE_US: u64 = 500_000;
/// A child that sent us no datagram for this long (its Haves to its parents come every
/// 200 ms) is presumed dead: whoever asks for a place in its stripe takes its slot. Less than
/// [`PARENT_GONE_US`], so that the dead child's own children, which ask the seed for a dead
/// root's slot once their parent is gone, find it free. Until its
/// neighbour entry timed out ([`NEIGHBOUR_TIMEOUT_US`]), a killed root child of the seed kept
/// its slot (members with low indices outrank newcomers), the seed pushed its stripe into the
/// void, and on a loaded machine every survivor of a 20-peer swarm whose third was killed
/// skipped the same two chunks of that stripe (tests/swarm.rs, 4 runs in 24 with two copies
/// at once).
pub const CHILD_SILENT_US: u64 = 400_000;
/// ... but a member's slot goes to a leaf only once the member is silent this long: one lost
/// Have and a long path made a live root silent while its stripe's orphans asked the seed, a
/// leaf took the slot, and every member of the stripe was detached for 2 s (bl-sim, 1,000
/// peers, the first 4 withholding, seed 2). Its heirs, members, take it at
/// [`CHILD_SILENT_US`].
pub const MEMBER_SILENT_FOR_LEAF_US: u64 = 1_200_000;
/// A parent that sent nothing of its stripe for this long, while other stripes flowed, is
/// replaced. Time, not a chunk count: stripes come over paths of different delay.
pub const STALL_US: u64 = 1_000_000;
/// A parent that sent under half of a stripe's new chunks over a [`STALL_US`] window is
/// replaced, if the stripe brought at least this many (a stripe of a slow stream brings few:
/// one lost push must not count as half).
pub const STARVED_MIN_CHUNKS: u32 = 8;
/// A chunk of a stripe whose parent has not yet sent anything later may still be on its way:
/// it counts as missing only after this long, or half the playout latency if that is
/// less (a later chunk of its own stripe shortens it to [`REPAIR_DELAY_US`]).
pub const IN_FLIGHT_WAIT_US: u64 = 750_000;
/// An introduced peer is greeted while our contacts are below the target plus this: it went to
/// the trouble of asking, and its Hello through its NAT is already on the way.
pub const INTRODUCED_EXTRA: usize = 4;
/// Introductions one neighbour may ask of us, or make us act on, per second.
pub const INTRODUCTIONS_PER_NEIGHBOUR: u8 = 4;
/// Verified chunks a node's guard remembers when no memo is shared with it: a batch checked
/// ahead of handling ([`crate::core::node::Node::verify_ahead`]: the driver reads at most 16
/// datagrams together) must still be there when each of its chunks is handled.
pub const OWN_MEMO: usize = 64;
/// Addresses taken from one tracker or DHT answer (a tracker lists up to 50; more would only
/// be Hellos to strangers, and a lying tracker could aim us at a victim).
pub const MAX_CANDIDATES: usize = 50;
/// How long a node that refused us as a child is not asked again.
pub const REFUSAL_BACKOFF_US: u64 = 2_000_000;
/// How often a full member lets a younger member child of its stripe go for a member that
/// lost a place as high as its own (`StripeTree::make_room_for_member`). Honest need is rare
/// (a root the seed let go as it settled, an old member orphaned); a liar claiming a high
/// place costs one subtree one reattachment per spell at each full parent it neighbours.
pub const MEMBER_DISPLACED_EVERY_US: u64 = 2_000_000;
/// How often a fed stripe looks for a nearer parent once the stream flows (before, every
/// tick: `StripeTree::move_up`), and how much nearer (in expected delay) it must be.
pub const MOVE_UP_EVERY_US: u64 = 1_000_000;
pub const MOVE_UP_GAIN_US: u64 = 30_000;
/// What one hop down a stripe tree costs a chunk, as parents are ranked (depth × this + half
/// the RTT to the parent). bl-sim, 1,000 peers, seeds 1–8: with 50 ms latency p50 518 ms,
/// with 100 ms 515 ms, by depth alone 545 ms; its mean hop (half a 5–300 ms RTT plus queues)
/// is near 100 ms.
pub const HOP_DELAY_US: u64 = 100_000;
/// How long a parent replaced for going quiet is not asked again. Its Have may still claim
/// depth 0 and room to spare (unsigned): with the refusal backoff alone a liar that takes
/// children and drops their pushes was chosen again every 2 s.
pub const STALLED_BACKOFF_US: u64 = 30_000_000;
/// A peer that joined before the stream began waits this long after its first chunk to learn
/// which chunk is the stream's first.
pub const EARLY_START_WAIT_US: u64 = 300_000;
/// Seq 0, the stream's first chunk, starts a peer that joined before the stream at once if
/// it was captured within this long of the peer's clock: generous for clocks a little apart
/// and a slow first hop, far below the minutes between two broadcasts under one key.
pub const FIRST_CHUNK_FRESH_US: u64 = 10_000_000;
/// A chunk numbered past our newest but captured this much before it is from an earlier
/// broadcast under the same key. bl-chunk's captures never go back; the slack covers chunk
/// streams made before they did, whose captures follow a wall clock stepped back by NTP.
/// Broadcasts restarted under one key within this long of each other stay replayable.
pub const REPLAY_SLACK_US: u64 = 60_000_000;
/// A joiner starts at the newest keyframe only if at most this many chunks followed it;
/// otherwise it waits for the next keyframe. Fetching a whole GOP of backlog would cost the
/// swarm a burst of repairs for chunks that are mostly too old to play within the latency.
pub const CATCH_UP_MAX_CHUNKS: u64 = 64;
/// A joiner waiting for the next keyframe only takes what is pushed to it for this long
/// after its first chunk; then it fetches every chunk past the one it waits after, since the
/// keyframe may lie in a stripe it has no parent for (bl-sim, 1,000 peers, seed 2: one peer
/// received 916 chunks in 8 s and never started). Fetching from the first chunk on found it
/// too, but cost 1.73× the stream at the seed instead of 1.56× (seed 1).
pub const AWAIT_KEYFRAME_PUSHED_US: u64 = 2_500_000;
/// A parent holds a joiner's pushes until a keyframe (`core::tree::hold`) at most this long:
/// ffmpeg's libx264 puts keyframes 250 frames apart by default, 10 s at 25 frames a second.
pub const KEYFRAME_HOLD_MAX_US: u64 = 10_000_000;
/// A joiner's playout started at a keyframe one parent released: another parent that held
/// for it and pushes nothing within this long is let go. The keyframe reaches parents at
/// different times, but a parent that holds and never releases is a withholder the joiner
/// cannot otherwise tell while it waits.
pub const RELEASE_GRACE_US: u64 = 500_000;
/// How many peers the seed remembers for its tracker answers: a uniform sample of every
/// peer that confirmed.
pub const TRACKER_SAMPLE: usize = 1024;
/// Peers named in one tracker answer of the seed (a peer names up to
/// [`MAX_PEERS_PER_MESSAGE`]).
pub const SEED_PEERS_PER_ANSWER: usize = 8;
/// How often a peer short of neighbours goes back to its bootstrap nodes.
pub const BOOTSTRAP_RETRY_US: u64 = 3_000_000;
/// A start position not reached by any verified chunk this long after chunks began to arrive
/// is taken for a lie (it came in an unsigned Welcome) and forgotten.
pub const START_GRACE_US: u64 = 1_000_000;
/// A peer that heard nothing (no answer, or no data) this long says so on stderr, once per
/// silence.
pub const QUIET_WARN_US: u64 = 5_000_000;
/// How long an answer to our GetPeers is awaited (and accepted).
pub const PEERS_ANSWER_US: u64 = 5_000_000;
/// Peer exchange period while below the target neighbour count.
pub const PEER_EXCHANGE_US: u64 = 2_000_000;

/// The knobs a user or a model may turn. [`Tuning::for_role`] is the one place their
/// defaults are set, for bl-seed, bl-peer and bl-sim alike. bl-sim departs from them in two
/// ways, both part of its model: every core keeps a history of 1,024 chunks, not 4,096 (at
/// 100,000 cores the larger ring costs 2.4 GB more; at the model's 2 Mb/s 1,024 chunks are
/// ~5 s, three times the playout latency), and each node's `max_upload` follows its drawn
/// uplink.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Stripes (K); peers learn it from the seed.
    pub stripes: u8,
    /// Upload budget in copies of the stream. Children slots = ⌊max_upload × K⌋, and the seed
    /// keeps at least one per stripe.
    pub max_upload: f64,
    /// Playout: the longest a chunk waits for a missing earlier one.
    pub latency_us: u64,
    /// Chunks kept for repair and joiners.
    pub history: usize,
    pub target_neighbours: usize,
    pub max_neighbours: usize,
    /// After the stream ended (seed) or playout finished (peer), keep serving this long.
    pub linger_us: u64,
    /// Peer: give up after this long without a verified chunk (None: never).
    pub give_up_us: Option<u64>,
}

impl Tuning {
    pub fn for_role(role: Role) -> Tuning {
        Tuning {
            stripes: 4,
            max_upload: if role == Role::Seed { 1.5 } else { 2.0 },
            latency_us: 1_500_000,
            history: 4096,
            target_neighbours: 12,
            // The seed is the tracker: it must be able to know every peer to hand out lists.
            max_neighbours: if role == Role::Seed { 1024 } else { 40 },
            // The seed serves the stream's last repairs; a peer's neighbours need it less.
            linger_us: if role == Role::Seed {
                2_500_000
            } else {
                1_000_000
            },
            // Long enough for a seed to restart or an encoder to come back; a script that
            // waits for a broadcast that may start later passes --give-up 0.
            give_up_us: (role == Role::Peer).then_some(30_000_000),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub role: Role,
    pub stream: StreamId,
    pub tuning: Tuning,
    pub bootstrap: Vec<SocketAddr>,
    pub rng_seed: u64,
    /// Keys the node's address tokens and Hello nonces; bl-seed and bl-peer fill it from the
    /// OS's random source (tests and bl-sim leave it zero). The `rng_seed` generator is
    /// xorshift64*: one output gives its state, so a Hello's nonce drawn from it alone
    /// (seen by any stranger greeted) gave away the token secret drawn before it, and with
    /// it tokens for any address (reflection: a 13-byte GetPeers for a 1.2 KB Peers).
    pub secret: [u8; 32],
    /// Answer stats requests from any address, not only loopback.
    pub stats_from_anywhere: bool,
    /// Chunks already verified by another core in this process (the simulator runs thousands
    /// of cores; each ed25519 check is done once instead of once per core).
    pub verified: Option<Arc<Mutex<VerifiedChunks>>>,
}

impl Config {
    pub fn new(role: Role, stream: StreamId) -> Self {
        Config {
            role,
            stream,
            tuning: Tuning::for_role(role),
            bootstrap: Vec::new(),
            rng_seed: 1,
            secret: [0; 32],
            stats_from_anywhere: false,
            verified: None,
        }
    }
}
