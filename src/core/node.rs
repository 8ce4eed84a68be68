//! The sans-IO swarm core: one state machine for the seed and peer roles.
//!
//! It never reads a clock, a socket or the OS RNG. Call contract (docs/PROTOCOL.md):
//! feed it with [`Node::handle_datagram`], [`Node::handle_chunk`] (seed: chunks from stdin),
//! [`Node::handle_input_end`] and [`Node::handle_timeout`]; after each call drain
//! [`Node::poll_transmit`] and [`Node::poll_event`], then sleep until [`Node::poll_timeout`].
//! Time is µs since the UNIX epoch (wall clock, so latency = play time − capture time);
//! randomness comes from the seed in [`Config::rng_seed`].
//!
//! Dissemination: the stream is cut into K stripes by `seq mod K`. Every peer has an index
//! (join order, in the stream's clock: from the seed, or self-drawn when it joined through a
//! peer) and a member stripe. For every stripe a node has one
//! parent that pushes it every chunk of that stripe the moment it verifies: members of the
//! stripe form its interior (a member only feeds members with a higher index, so the stripe is
//! a tree rooted at the seed), everyone else is a leaf fed by one member. Every node announces
//! what it holds to all neighbours (Have) every 100 ms; a chunk still missing 50 ms after a
//! later one is known is pulled from a neighbour that has it. A parent that goes quiet is
//! replaced. This is SplitStream's stripes with GridMedia/Plumtree push–pull repair.

// Ordered maps throughout: iteration order decides who is sent what first, and the
// simulator needs the same seed to give the same run.
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ed25519_dalek::VerifyingKey;

use crate::core::addr_map::AddrMap;
use crate::core::history::History;
use crate::core::missing::{Missing, MissingSet};
use crate::core::stats::{LatencyReport, NodeStats, Report};
use crate::media::chunk::{Chunk, MAX_DATAGRAM};
use crate::media::identity::StreamId;
use crate::media::join::{JoinEvent, Joiner};
use crate::media::verified::VerifiedChunks;
use crate::proto::wire::{self, Message, PeerInfo, Role, MAX_PEERS_PER_MESSAGE, MAX_REQUEST_SEQS};

/// How often Haves go out and maintenance runs.
pub const TICK_US: u64 = 100_000;
/// A missing chunk is requested this long after a later one is known.
pub const REPAIR_DELAY_US: u64 = 50_000;
/// A request that was not answered is retried (elsewhere) after twice the RTT to whom it went
/// and 10 ms, within these bounds (a far or busy neighbour must not be asked again before it
/// can answer; a near one that lost the answer should be asked again soon).
pub const REPAIR_RETRY_MIN_US: u64 = 20_000;
pub const REPAIR_RETRY_MAX_US: u64 = 600_000;
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
/// The seed audits its stripe children every this many ticks, asking for a chunk this many
/// seqs old (about 1 s at 2 Mb/s).
pub const AUDIT_TICKS: u64 = 10;
pub const AUDIT_AGE_CHUNKS: u64 = 256;
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
pub const REPAIR_SHARE_SEED: f64 = 0.25;
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
/// A parent that sent nothing of its stripe for this long, while other stripes flowed, is
/// replaced. Time, not a chunk count: stripes come over paths of different delay.
pub const STALL_US: u64 = 1_000_000;
/// A chunk of a stripe whose parent has not yet sent anything later may still be on its way:
/// it counts as missing only after this long, or half the playout latency if that is
/// less (a later chunk of its own stripe shortens it to [`REPAIR_DELAY_US`]).
pub const IN_FLIGHT_WAIT_US: u64 = 750_000;
/// How long a node that refused us as a child is not asked again.
pub const REFUSAL_BACKOFF_US: u64 = 2_000_000;
/// A peer that joined before the stream began waits this long after its first chunk to learn
/// which chunk is the stream's first.
pub const EARLY_START_WAIT_US: u64 = 300_000;
/// A joiner starts at the newest keyframe only if at most this many chunks followed it;
/// otherwise it waits for the next keyframe. Fetching a whole GOP of backlog would cost the
/// swarm a burst of repairs for chunks that are mostly too old to play within the latency.
pub const CATCH_UP_MAX_CHUNKS: u64 = 64;
/// How many peers the seed remembers for its tracker answers: a uniform sample of every
/// peer that confirmed.
pub const TRACKER_SAMPLE: usize = 1024;
/// Peers named in one tracker answer of the seed (a peer names up to
/// [`MAX_PEERS_PER_MESSAGE`]).
pub const SEED_PEERS_PER_ANSWER: usize = 8;
/// How often a peer short of neighbours goes back to its bootstrap nodes.
pub const BOOTSTRAP_RETRY_US: u64 = 3_000_000;
/// Peer exchange period while below the target neighbour count.
pub const PEER_EXCHANGE_US: u64 = 2_000_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub role: Role,
    pub stream: StreamId,
    /// Stripes (K); peers learn it from the seed.
    pub stripes: u8,
    /// Upload budget in copies of the stream. Children slots = max_upload × K (peers); the seed
    /// keeps ⌊max_upload⌋ children per stripe (at least one).
    pub max_upload: f64,
    /// Playout: the longest a chunk waits for a missing earlier one.
    pub latency_us: u64,
    /// Chunks kept for repair and joiners.
    pub history: usize,
    pub target_neighbours: usize,
    pub max_neighbours: usize,
    pub bootstrap: Vec<SocketAddr>,
    pub rng_seed: u64,
    /// After the stream ended (seed) or playout finished (peer), keep serving this long.
    pub linger_us: u64,
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
            stripes: 4,
            max_upload: if role == Role::Seed { 1.5 } else { 2.0 },
            latency_us: 1_500_000,
            history: 4096,
            target_neighbours: 12,
            // The seed is the tracker: it must be able to know every peer to hand out lists.
            max_neighbours: if role == Role::Seed { 1024 } else { 40 },
            bootstrap: Vec::new(),
            rng_seed: 1,
            linger_us: 1_000_000,
            stats_from_anywhere: false,
            verified: None,
        }
    }
}

/// A datagram to send: the driver encodes it with [`wire::encode`]; `len` is its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub message: Message,
    pub len: usize,
}

/// Sizes of a node's buffers (see [`Node::buffered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffered {
    pub history: usize,
    pub missing: usize,
    /// Seqs between the oldest and the newest missing one (the missing set's ring).
    pub missing_span: usize,
    pub playout: usize,
    pub neighbours: usize,
    /// Transmits and events not yet drained by the driver.
    pub queued: usize,
}

/// Something the driver must act on.
#[derive(Debug)]
pub enum Event {
    /// Peer: write this chunk to stdout, now.
    Play(Arc<Chunk>),
    /// Something worth a line on stderr.
    Warning(String),
    /// All done: the driver exits with status 0.
    Finished,
}

#[derive(Debug)]
struct Neighbour {
    role: Role,
    index: u64,
    member: Option<u8>,
    last_heard: u64,
    /// Stripes this node pushes to the neighbour (bit s).
    children: u64,
    have: Option<(u64, u64, u128)>,
    /// Subscriptions it would still accept, from its last Have.
    spare: u8,
    /// Subscriptions it feeds, from its last Have.
    feeding: u8,
    /// When we began feeding it (seed: a child that passes nothing on gives its place up).
    fed_since: u64,
    /// Its depth in its member stripe, from its last Have.
    depth: u8,
    /// We confirmed its Welcome and have heard nothing since: Confirms sent so far. A lost
    /// Confirm left a half-open link (we count it, it never heard of us): at the seed for 10
    /// s, and a stripe's oldest member cut off from the seed for good (bl-sim, 300 peers).
    unconfirmed: Option<u8>,
    /// Smoothed round-trip time (µs), from Hello→Welcome and Request→Chunk.
    rtt_us: Option<u64>,
}

impl Neighbour {
    fn new(role: Role, index: u64, member: Option<u8>, now: u64) -> Self {
        Neighbour {
            role,
            index,
            member,
            last_heard: now,
            children: 0,
            have: None,
            spare: 0,
            feeding: 0,
            fed_since: now,
            depth: u8::MAX,
            unconfirmed: None,
            rtt_us: None,
        }
    }

    fn holds(&self, seq: u64) -> bool {
        match self.have {
            Some((first, highest, recent)) => {
                if seq > highest || seq < first {
                    false
                } else if highest - seq < 128 {
                    recent & (1u128 << (highest - seq)) != 0
                } else {
                    true
                }
            }
            None => false,
        }
    }
}

/// xorshift64*: small, fast, seedable; the core's only source of randomness.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

pub struct Node {
    cfg: Config,
    key: Option<VerifyingKey>,
    rng: Rng,
    token_secret: [u8; 32],
    started_at: u64,
    local_addr: Option<SocketAddr>,
    index: u64,
    member: Option<u8>,
    stripes: u8,
    next_index: u64,
    /// Seed: joiners assigned so far (member stripes go round-robin).
    assigned_count: u64,
    neighbours: AddrMap<Neighbour>,
    /// Hellos sent and not yet answered: nonce, last attempt, attempts.
    hellos: BTreeMap<SocketAddr, (u64, u64, u32)>,
    banned: BTreeSet<SocketAddr>,
    /// Tokens other nodes gave us in their Welcome (for GetPeers as a non-neighbour).
    tokens: BTreeMap<SocketAddr, u64>,
    /// Seed: a uniform random sample of the peers that ever confirmed (tracker answers draw
    /// from it), and how many confirmed.
    tracker_sample: Vec<PeerInfo>,
    tracker_seen: u64,
    /// Last time we went back to the bootstrap addresses.
    last_bootstrap: u64,
    parents: Vec<Option<SocketAddr>>,
    subscribed_at: Vec<u64>,
    pending_subscribe: Vec<Option<(SocketAddr, u64)>>,
    refused: BTreeMap<(SocketAddr, u8), u64>,
    /// Seed: children displaced for passing nothing on, refused until the time given (else
    /// a forger with a low index takes its root slot straight back).
    barred: BTreeMap<SocketAddr, u64>,
    history: History,
    highest: Option<u64>,
    latest_keyframe: Option<u64>,
    /// Newest seq received per stripe, to notice a stalled parent.
    stripe_newest: Vec<Option<u64>>,
    /// Who is fed each stripe, rebuilt when a subscription or a neighbour changes (the
    /// per-chunk path must not walk every neighbour: a seed has a thousand).
    children_of: Vec<Vec<SocketAddr>>,
    children_stale: bool,
    /// No earlier call to [`Node::repair`] is needed than this.
    repair_at: u64,
    /// When the last chunk of each stripe arrived.
    stripe_heard: Vec<u64>,
    missing: MissingSet,
    /// First seq this peer plays (newest keyframe when it joined).
    play_from: Option<u64>,
    /// Joined mid-GOP: playout starts at the first keyframe after this seq.
    await_keyframe_after: Option<u64>,
    /// When the first chunk was played (startup figure).
    first_play_at: Option<u64>,
    /// When the first chunk arrived (peer), to fall back to playing from it.
    first_chunk_at: Option<u64>,
    joiner: Option<Joiner>,
    end: Option<u64>,
    end_deadline: Option<u64>,
    finish_at: Option<u64>,
    finished: bool,
    next_tick: u64,
    next_peer_exchange: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    ticks: u64,
    /// New chunks since the last tick: the stream rate the repair budget scales with.
    new_chunks: u64,
    /// Repairs this node may still serve (chunks).
    repair_credit: f64,
    /// Seed: chunks it read while no child subscribed to their stripe (stream start), which
    /// it owes one copy each on request beyond [`Self::repair_credit`].
    unpushed_credit: f64,
    stats: NodeStats,
    stream_bytes: u64,
}

/// Where the indices of peers joining when `newest` is the stream's newest chunk begin.
fn join_index_base(newest: Option<u64>) -> u64 {
    newest
        .map_or(0, |seq| seq.saturating_add(1))
        .saturating_mul(INDICES_PER_CHUNK)
}

fn stripe_of(seq: u64, stripes: u8) -> u8 {
    (seq % u64::from(stripes.max(1))) as u8
}

impl Node {
    pub fn new(cfg: Config, now: u64) -> Self {
        let mut rng = Rng(cfg.rng_seed.max(1) ^ 0x9e37_79b9_7f4a_7c15);
        let mut token_secret = [0u8; 32];
        for b in token_secret.chunks_mut(8) {
            b.copy_from_slice(&rng.next().to_le_bytes());
        }
        let stripes = cfg.stripes.max(1);
        let is_seed = cfg.role == Role::Seed;
        let key = cfg.stream.verifying_key().ok();
        let mut node = Node {
            key,
            rng,
            token_secret,
            started_at: now,
            local_addr: None,
            index: 0,
            member: None,
            stripes,
            next_index: 1,
            assigned_count: 0,
            neighbours: AddrMap::default(),
            hellos: BTreeMap::new(),
            banned: BTreeSet::new(),
            tokens: BTreeMap::new(),
            tracker_sample: Vec::new(),
            tracker_seen: 0,
            last_bootstrap: now,
            parents: vec![None; stripes as usize],
            subscribed_at: vec![0; stripes as usize],
            pending_subscribe: vec![None; stripes as usize],
            refused: BTreeMap::new(),
            barred: BTreeMap::new(),
            history: History::new(cfg.history),
            highest: None,
            latest_keyframe: None,
            stripe_newest: vec![None; stripes as usize],
            stripe_heard: vec![now; stripes as usize],
            children_of: Vec::new(),
            children_stale: true,
            repair_at: u64::MAX,
            missing: MissingSet::default(),
            play_from: None,
            await_keyframe_after: None,
            first_chunk_at: None,
            first_play_at: None,
            joiner: (!is_seed).then(|| {
                Joiner::new(1, cfg.history.max(1) as u64, cfg.latency_us, false)
                    .with_unordered_inputs()
                    .with_deduplicated_inputs()
            }),
            end: None,
            end_deadline: None,
            finish_at: None,
            finished: false,
            next_tick: now,
            next_peer_exchange: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            ticks: 0,
            new_chunks: 0,
            repair_credit: 0.0,
            unpushed_credit: 0.0,
            stats: NodeStats::default(),
            stream_bytes: 0,
            cfg,
        };
        if node.key.is_none() {
            node.events
                .push_back(Event::Warning("stream id is not a valid key".into()));
        }
        let bootstrap = node.cfg.bootstrap.clone();
        for addr in bootstrap {
            node.send_hello(now, addr);
        }
        node
    }

    /// The address the driver bound, for reports.
    pub fn set_local_addr(&mut self, addr: SocketAddr) {
        self.local_addr = Some(addr);
    }

    pub fn stream(&self) -> StreamId {
        self.cfg.stream
    }

    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    pub fn neighbour_count(&self) -> usize {
        self.neighbours.len()
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn member(&self) -> Option<u8> {
        self.member
    }

    pub fn parents(&self) -> &[Option<SocketAddr>] {
        &self.parents
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// How much the node holds now, for the simulator's bounded-buffer invariant.
    pub fn buffered(&self) -> Buffered {
        Buffered {
            history: self.history.len(),
            missing: self.missing.len(),
            missing_span: self.missing.span(),
            playout: self.joiner.as_ref().map_or(0, Joiner::pending),
            neighbours: self.neighbours.len(),
            queued: self.transmits.len() + self.events.len(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The driver counts chunks it could not write (stuck player) here.
    pub fn count_output_drop(&mut self) {
        self.stats.counters.chunks_dropped_output += 1;
    }

    pub fn report(&self, now: u64) -> Report {
        Report {
            role: match self.cfg.role {
                Role::Seed => "seed".into(),
                Role::Peer => "peer".into(),
            },
            stream_id: self.cfg.stream.to_string(),
            addr: self.local_addr.map(|a| a.to_string()).unwrap_or_default(),
            uptime_s: now.saturating_sub(self.started_at) as f64 / 1e6,
            neighbours: self.neighbours.len(),
            bytes_sent: self.stats.bytes_sent(),
            bytes_received: self.stats.bytes_received(),
            chunk_bytes_sent: self.stats.sent.get("chunk").bytes,
            counters: self.stats.counters,
            stream_bytes: self.stream_bytes,
            latency_ms: LatencyReport::from_histogram(&self.stats.latency_us),
            ingest_latency_ms: LatencyReport::from_histogram(&self.stats.ingest_latency_us),
            sent_by_kind: self
                .stats
                .sent
                .iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            startup_ms: self
                .first_play_at
                .map(|t| t.saturating_sub(self.started_at) as f64 / 1000.0),
            latency_histogram_ms: Vec::new(),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next time [`Node::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> u64 {
        let mut t = self.next_tick;
        if !self.missing.is_empty() {
            t = t.min(self.repair_at);
        }
        if let Some(j) = self.joiner.as_ref().and_then(Joiner::poll_timeout) {
            t = t.min(j);
        }
        for d in [self.end_deadline, self.finish_at].into_iter().flatten() {
            t = t.min(d);
        }
        t
    }

    // ---- sending -------------------------------------------------------------------------

    fn send(&mut self, to: SocketAddr, message: &Message) {
        self.send_owned(to, message.clone());
    }

    fn send_owned(&mut self, to: SocketAddr, message: Message) {
        let len = wire::encoded_len(&message);
        self.send_sized(to, message, len);
    }

    /// Queues `message` whose encoded size `len` the caller already knows (a chunk sent to
    /// several children is sized once).
    fn send_sized(&mut self, to: SocketAddr, message: Message, len: usize) {
        if len > MAX_DATAGRAM {
            let warning = format!("internal: {} message of {len} bytes", message.kind());
            self.events.push_back(Event::Warning(warning));
            return;
        }
        self.stats.count_sent(message.kind_index(), len);
        self.transmits.push_back(Transmit { to, message, len });
    }

    fn send_hello(&mut self, now: u64, to: SocketAddr) {
        let entry = self.hellos.entry(to).or_insert((0, now, 0));
        if entry.2 == 0 {
            entry.0 = self.rng.next();
        }
        entry.1 = now;
        entry.2 += 1;
        let nonce = entry.0;
        let index = (self.index > 0 || self.cfg.role == Role::Seed).then_some(self.index);
        let hello = wire::hello(self.cfg.stream, nonce, self.cfg.role, index, self.member);
        self.send_owned(to, hello);
    }

    fn token_for(&self, addr: SocketAddr) -> u64 {
        let hash = blake3::keyed_hash(&self.token_secret, addr.to_string().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    fn welcome(&self, assigned: Option<(u64, u8)>, nonce: u64, token: u64) -> Message {
        Message::Welcome(Box::new(wire::Welcome {
            nonce,
            token,
            role: self.cfg.role,
            index: self.index,
            member: self.member,
            stripes: self.stripes,
            assigned,
            latest_keyframe: self.latest_keyframe,
            latest_seq: self.highest,
            end: self.end,
        }))
    }

    fn confirm(&self, token: u64) -> Message {
        Message::Confirm {
            token,
            index: self.index,
            member: self.member,
        }
    }

    // ---- inputs --------------------------------------------------------------------------

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: u64, from: SocketAddr, bytes: &[u8]) {
        if self.banned.contains(&from) {
            self.stats.counters.datagrams_dropped += 1;
            return;
        }
        match wire::decode(bytes) {
            Ok(message) => self.handle_message(now, from, message, bytes.len()),
            Err(_) => self.stats.counters.datagrams_dropped += 1,
        }
    }

    /// A decoded datagram of `len` bytes arrived from `from`. The simulator calls this
    /// directly with what another core sent, skipping the encoding round trip.
    pub fn handle_message(&mut self, now: u64, from: SocketAddr, message: Message, len: usize) {
        if self.banned.contains(&from) {
            self.stats.counters.datagrams_dropped += 1;
            return;
        }
        let kind = message.kind_index();
        let known = self.neighbours.contains_key(&from);
        // Only the handshake and stats requests are accepted from strangers.
        let allowed = known
            || matches!(
                message,
                Message::Hello(_) | Message::Confirm { .. } | Message::StatsRequest { .. }
            )
            || (matches!(message, Message::Welcome(_)) && self.hellos.contains_key(&from))
            // The answer to our GetPeers from a node that welcomed us but was full (its
            // Goodbye overtakes the Peers): without it a joiner of a full seed stays alone.
            || (matches!(message, Message::Peers { .. }) && self.tokens.contains_key(&from))
            || matches!(message, Message::GetPeers { token } if token == self.token_for(from));
        if !allowed {
            self.stats.counters.datagrams_dropped += 1;
            return;
        }
        self.stats.count_received(kind, len);
        if let Some(n) = self.neighbours.get_mut(&from) {
            n.last_heard = now;
            // Peers (and Welcomes) also come to strangers: they prove nothing.
            if !matches!(message, Message::Peers { .. } | Message::Welcome(_)) {
                n.unconfirmed = None;
            }
        }
        match message {
            Message::Hello(hello) => {
                let wire::Hello {
                    stream,
                    nonce,
                    role,
                    index: hello_index,
                    padding,
                    ..
                } = *hello;
                // Answer only a padded Hello, with a Welcome no larger than it (no amplification).
                if stream != self.cfg.stream || padding.len() + 64 < wire::HELLO_MIN_SIZE {
                    self.stats.counters.datagrams_dropped += 1;
                    return;
                }
                let assigned =
                    (self.cfg.role == Role::Seed && role == Role::Peer && hello_index.is_none())
                        .then(|| {
                            let index = self.next_index.max(join_index_base(self.highest) + 1);
                            self.next_index = index + 1;
                            let member = self.assigned_count % u64::from(self.stripes);
                            self.assigned_count += 1;
                            (index, member as u8)
                        });
                let token = self.token_for(from);
                let reply = self.welcome(assigned, nonce, token);
                self.send(from, &reply);
            }
            Message::Welcome(welcome) => {
                let wire::Welcome {
                    nonce,
                    token,
                    role,
                    index,
                    member,
                    stripes,
                    assigned,
                    latest_keyframe,
                    latest_seq,
                    end,
                } = *welcome;
                let Some(&(expected, hello_at, attempts)) = self.hellos.get(&from) else {
                    return;
                };
                if nonce != expected {
                    self.stats.counters.datagrams_dropped += 1;
                    return;
                }
                self.hellos.remove(&from);
                if self.cfg.role == Role::Peer {
                    match (role, assigned) {
                        (Role::Seed, Some((my_index, my_member))) if self.index == 0 => {
                            self.index = my_index;
                            self.member = Some(my_member);
                            self.set_stripes(stripes);
                        }
                        // Joined through a peer a tracker named, the seed unasked (at 100,000
                        // joiners the seed cannot greet them all): take an index from the
                        // block of the stream's present, so stripe trees still grow outwards
                        // in join order.
                        (Role::Peer, _) if self.index == 0 && index > 0 && member.is_some() => {
                            let slot = self.rng.next() % INDICES_PER_CHUNK;
                            let own = join_index_base(latest_seq).saturating_add(1 + slot);
                            self.index = own;
                            self.member = Some((own % u64::from(stripes.max(1))) as u8);
                            self.set_stripes(stripes);
                        }
                        _ => {}
                    }
                    if self.play_from.is_none() && (role == Role::Seed || index > 0) {
                        self.start_playout(now, latest_keyframe, latest_seq);
                    }
                }
                // Both sides may have said Hello at once: an existing neighbour keeps its
                // state (above all the stripes we feed it).
                if let Some(n) = self.neighbours.get_mut(&from) {
                    n.role = role;
                    n.index = index;
                    n.member = member;
                } else if self.neighbours.len() >= self.cfg.max_neighbours {
                    return;
                } else {
                    self.neighbours
                        .insert(from, Neighbour::new(role, index, member, now));
                }
                // A Welcome to our only Hello times the round trip.
                if attempts == 1 {
                    self.note_rtt(from, now.saturating_sub(hello_at));
                }
                self.send(from, &self.confirm(token));
                if let Some(n) = self.neighbours.get_mut(&from) {
                    n.unconfirmed = Some(1);
                }
                self.tokens.insert(from, token);
                if self.neighbours.len() < self.cfg.target_neighbours {
                    self.send(from, &Message::GetPeers { token });
                }
                if let Some(last) = end {
                    self.learn_end(now, last);
                }
            }
            Message::Confirm {
                token,
                index,
                member,
            } => {
                if token != self.token_for(from) {
                    self.stats.counters.datagrams_dropped += 1;
                    return;
                }
                // The seed, as tracker, samples everyone who joined, neighbour or not, evenly
                // over time (reservoir sampling): its own neighbours alone would send a
                // hundred thousand joiners to the same thousand full peers, and only the
                // latest joiners (bl-sim, 10,000 in 5 s) chained each one to the previous
                // half second's, a tree too deep for the playout latency.
                if self.cfg.role == Role::Seed
                    && !self.tracker_sample.iter().any(|p| p.addr == from)
                {
                    if let Some(member) = member {
                        let info = PeerInfo {
                            addr: from,
                            index,
                            member,
                        };
                        self.tracker_seen += 1;
                        if self.tracker_sample.len() < TRACKER_SAMPLE {
                            self.tracker_sample.push(info);
                        } else {
                            let slot = (self.rng.next() % self.tracker_seen) as usize;
                            if let Some(p) = self.tracker_sample.get_mut(slot) {
                                *p = info;
                            }
                        }
                    }
                }
                if !known {
                    if self.neighbours.len() >= self.cfg.max_neighbours {
                        // Full: say so (a Goodbye is smaller than the Confirm) so the joiner
                        // does not count us; it can still ask us for peers with its token.
                        self.send(from, &Message::Goodbye);
                        return;
                    }
                    self.neighbours
                        .insert(from, Neighbour::new(Role::Peer, index, member, now));
                    // Tell the newcomer what we hold right away, so it can repair from us.
                    self.send_have_to(from);
                }
            }
            Message::GetPeers { .. } => {
                let mut candidates: Vec<PeerInfo> = self
                    .neighbours
                    .iter()
                    .filter(|(addr, n)| **addr != from && n.role == Role::Peer)
                    .filter_map(|(addr, n)| {
                        n.member.map(|member| PeerInfo {
                            addr: *addr,
                            index: n.index,
                            member,
                        })
                    })
                    .collect();
                for p in &self.tracker_sample {
                    if p.addr != from && !self.neighbours.contains_key(&p.addr) {
                        candidates.push(*p);
                    }
                }
                candidates.sort_by_key(|p| p.index);
                let mut peers = Vec::new();
                // The seed answers every joiner, so it names fewer: enough to start peer
                // exchange with.
                let limit = match self.cfg.role {
                    Role::Seed => SEED_PEERS_PER_ANSWER,
                    Role::Peer => MAX_PEERS_PER_MESSAGE,
                };
                while !candidates.is_empty() && peers.len() < limit {
                    let i = self.rng.below(candidates.len());
                    peers.push(candidates.swap_remove(i));
                }
                self.send(from, &Message::Peers { peers });
            }
            Message::Peers { peers } => {
                let orphans = self.orphan_stripes();
                for p in peers {
                    let me = self.local_addr == Some(p.addr);
                    let contacts = self.neighbours.len() + self.hellos.len();
                    // Beyond the target only members of a stripe we have no parent in: the
                    // members we know may all be full. In our own stripe only older members
                    // can feed us, and one of us without a parent cuts off a whole subtree,
                    // so more of them are let in.
                    let orphaned = orphans & (1u64 << (p.member % 64)) != 0;
                    let older_of_ours = self.member == Some(p.member) && p.index < self.index;
                    let extra = if older_of_ours { 12 } else { 4 };
                    let open = contacts < self.cfg.target_neighbours
                        || (orphaned && contacts < self.cfg.target_neighbours + extra);
                    if open
                        && !me
                        && !self.neighbours.contains_key(&p.addr)
                        && !self.hellos.contains_key(&p.addr)
                        && !self.banned.contains(&p.addr)
                    {
                        self.send_hello(now, p.addr);
                    }
                }
            }
            Message::Subscribe { stripe } => self.on_subscribe(now, from, stripe),
            Message::SubscribeReply { stripe, accepted } => {
                let Some(pending) = self.pending_subscribe.get_mut(stripe as usize) else {
                    return;
                };
                if pending.is_some_and(|(addr, _)| addr == from) {
                    *pending = None;
                    if accepted {
                        if let Some(old) = self.parents[stripe as usize].replace(from) {
                            if old != from {
                                self.send(old, &Message::Unsubscribe { stripe });
                            }
                        }
                        self.subscribed_at[stripe as usize] = now;
                    } else {
                        self.refused
                            .insert((from, stripe), now + REFUSAL_BACKOFF_US);
                    }
                }
            }
            Message::Unsubscribe { stripe } => {
                if let Some(n) = self.neighbours.get_mut(&from) {
                    n.children &= !(1u64 << (stripe % 64));
                    self.children_stale = true;
                }
                if self.parents.get(stripe as usize).copied().flatten() == Some(from) {
                    self.parents[stripe as usize] = None;
                    self.refused
                        .insert((from, stripe), now + REFUSAL_BACKOFF_US);
                }
            }
            Message::Chunk(chunk) => self.on_chunk(now, Some(from), chunk),
            Message::Have {
                first,
                highest,
                recent,
                children,
                spare,
                depth,
            } => {
                if let Some(n) = self.neighbours.get_mut(&from) {
                    n.depth = depth;
                    n.have = Some((first, highest, recent));
                    n.spare = spare;
                    n.feeding = children;
                }
                if self.cfg.role == Role::Peer && self.play_from.is_some() {
                    self.note_known_seq(now, highest);
                }
            }
            Message::Request { seqs } => {
                let children = self.neighbours.get(&from).map_or(0, |n| n.children);
                for seq in seqs {
                    if let Some(chunk) = self.history.get(seq).cloned() {
                        // A child asking again for a push it lost comes first: it may
                        // overdraw the budget a little, which later refills repay before
                        // anyone else is served. Catch-up from joiners must not starve it.
                        let child = children & (1u64 << (stripe_of(seq, self.stripes) % 64)) != 0;
                        let floor = if child { 1.0 - CHILD_OVERDRAFT } else { 1.0 };
                        if self.unpushed_credit >= 1.0 {
                            self.unpushed_credit -= 1.0;
                        } else if self.repair_credit < floor {
                            self.stats.counters.repairs_refused += 1;
                            continue;
                        } else {
                            self.repair_credit -= 1.0;
                        }
                        self.stats.counters.repairs_served += 1;
                        self.send_owned(from, Message::Chunk(chunk));
                    }
                }
            }
            Message::End { last_seq } => self.learn_end(now, last_seq),
            Message::Goodbye => self.drop_neighbour(from),
            Message::StatsRequest { nonce, padding } => {
                let local = from.ip().is_loopback();
                if !(local || self.cfg.stats_from_anywhere)
                    || padding.len() + 64 < wire::HELLO_MIN_SIZE
                {
                    self.stats.counters.datagrams_dropped += 1;
                    return;
                }
                let json = serde_json::to_string(&self.report(now)).unwrap_or_default();
                // The reply must fit one datagram; the per-kind table goes if it does not.
                let reply = Message::StatsReply { nonce, json };
                if wire::encoded_len(&reply) <= MAX_DATAGRAM {
                    self.send_owned(from, reply);
                } else {
                    let mut report = self.report(now);
                    report.sent_by_kind.clear();
                    let json = serde_json::to_string(&report).unwrap_or_default();
                    self.send(from, &Message::StatsReply { nonce, json });
                }
            }
            Message::StatsReply { .. } => {}
        }
    }

    /// Seed: a chunk read from stdin.
    pub fn handle_chunk(&mut self, now: u64, chunk: impl Into<Arc<Chunk>>) {
        self.on_chunk(now, None, chunk.into());
    }

    /// Seed: stdin ended. The swarm is told; the seed lingers to serve repairs, then finishes.
    pub fn handle_input_end(&mut self, now: u64) {
        match self.highest {
            Some(last) => self.learn_end(now, last),
            None => {
                self.finish_at = Some(now);
            }
        }
    }

    /// Leave politely: Goodbye to every neighbour.
    pub fn leave(&mut self) {
        let addrs: Vec<SocketAddr> = self.neighbours.keys().copied().collect();
        for addr in addrs {
            self.send(addr, &Message::Goodbye);
        }
        self.neighbours.clear();
        self.children_stale = true;
    }

    pub fn handle_timeout(&mut self, now: u64) {
        if let Some(j) = self.joiner.as_mut() {
            j.handle_timeout(now);
        }
        self.drain_joiner(now);
        if now >= self.next_tick {
            self.next_tick = now + TICK_US;
            self.tick(now);
        }
        self.repair(now);
        if let Some(deadline) = self.end_deadline {
            if now >= deadline {
                self.end_deadline = None;
                if let Some(j) = self.joiner.as_mut() {
                    j.handle_end(now, 0);
                }
                self.drain_joiner(now);
            }
        }
        if self.finish_at.is_some_and(|t| now >= t) && !self.finished {
            self.finished = true;
            self.leave();
            self.events.push_back(Event::Finished);
        }
    }

    // ---- chunks --------------------------------------------------------------------------

    fn on_chunk(&mut self, now: u64, from: Option<SocketAddr>, chunk: Arc<Chunk>) {
        let seq = chunk.seq;
        if from.is_some() {
            self.stats.counters.chunks_received += 1;
        }
        if let Some(held) = self.history.get(seq) {
            // A copy that differs from the verified one we hold is forged, whoever signed
            // it: caught without a signature check (this is how the seed's audit works).
            if let Some(addr) = from.filter(|_| !Arc::ptr_eq(held, &chunk) && **held != *chunk) {
                self.stats.counters.chunks_forged += 1;
                self.events.push_back(Event::Warning(format!(
                    "banned {addr}: sent a copy of chunk seq {seq} that differs from the verified one"
                )));
                self.ban(addr);
                return;
            }
            self.stats.counters.chunks_duplicate += 1;
            return;
        }
        let floor = self
            .highest
            .map_or(0, |h| h.saturating_sub(self.cfg.history as u64));
        if from.is_some()
            && (seq < floor
                || self.play_from.is_some_and(|p| seq < p) && !self.missing.contains(seq))
        {
            self.stats.counters.chunks_late += 1;
            return;
        }
        let verdict = match (&self.key, &self.cfg.verified) {
            (Some(key), Some(memo)) => match memo.lock() {
                Ok(mut memo) => memo.verify(&self.cfg.stream, key, &chunk),
                Err(_) => chunk.verify(&self.cfg.stream, key),
            },
            (Some(key), None) => chunk.verify(&self.cfg.stream, key),
            (None, _) => Err(crate::media::chunk::Rejection::BadSignature),
        };
        if let Err(why) = verdict {
            self.stats.counters.chunks_forged += 1;
            match from {
                Some(addr) => {
                    self.events.push_back(Event::Warning(format!(
                        "banned {addr}: sent chunk seq {seq} with {why}"
                    )));
                    self.ban(addr);
                }
                None => self.events.push_back(Event::Warning(format!(
                    "dropped chunk seq {seq} from stdin: {why}"
                ))),
            }
            return;
        }
        if from.is_none() {
            self.stream_bytes += chunk.payload.len() as u64;
            self.stats
                .ingest_latency_us
                .record(now.saturating_sub(chunk.capture_us));
        }
        if let Some(Missing {
            asked: Some((asked, at)),
            ..
        }) = self.missing.remove(seq)
        {
            if from == Some(asked) {
                self.note_rtt(asked, now.saturating_sub(at));
            }
        }
        self.new_chunks += 1;
        let stripe = stripe_of(seq, self.stripes);
        if let Some(newest) = self.stripe_newest.get_mut(stripe as usize) {
            *newest = Some(newest.map_or(seq, |n| n.max(seq)));
        }
        if let Some(heard) = self.stripe_heard.get_mut(stripe as usize) {
            *heard = now;
        }
        // Earlier chunks of this stripe that are still absent were lost on the way.
        let soon = now + REPAIR_DELAY_US;
        let stripes = self.stripes;
        self.missing
            .bring_forward(seq, soon, |s| stripe_of(s, stripes) == stripe);
        self.repair_at = self
            .repair_at
            .min(self.missing.earliest().unwrap_or(u64::MAX));
        if chunk.is_keyframe() && self.latest_keyframe.is_none_or(|k| seq > k) {
            self.latest_keyframe = Some(seq);
        }
        if chunk.is_keyframe()
            && self.play_from.is_none()
            && self.await_keyframe_after.is_some_and(|after| seq > after)
        {
            self.await_keyframe_after = None;
            let last = self.highest.map_or(seq, |h| h.max(seq));
            self.set_play_from(now, seq, last);
        }
        if from.is_some() && self.cfg.role == Role::Peer {
            self.first_chunk_at.get_or_insert(now);
            if self.play_from.is_some() {
                self.note_known_seq(now, seq.saturating_sub(1));
            }
        }
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        // Forward first (latency), then keep and play.
        if self.children_stale {
            self.children_stale = false;
            let mut by_stripe = vec![Vec::new(); self.stripes as usize];
            for (addr, n) in self.neighbours.iter() {
                for (s, list) in by_stripe.iter_mut().enumerate() {
                    if n.children & (1u64 << (s % 64)) != 0 {
                        list.push(*addr);
                    }
                }
            }
            self.children_of = by_stripe;
        }
        // Borrowed out of `self` while sending (no list per chunk), put back below.
        let children = self
            .children_of
            .get_mut(stripe as usize)
            .map(std::mem::take)
            .unwrap_or_default();
        let pushes = children.iter().filter(|a| Some(**a) != from).count();
        if pushes == 0 && from.is_none() {
            // Nobody got this chunk from the seed: its first copy, asked for by an early
            // joiner, is owed whatever the repair budget says.
            self.unpushed_credit = (self.unpushed_credit + 1.0).min(UNPUSHED_CREDIT_MAX);
        }
        if pushes > 0 {
            // One size for every child: the per-chunk path encodes nothing twice.
            let message = Message::Chunk(chunk.clone());
            let len = wire::encoded_len(&message);
            for &to in children.iter().filter(|a| Some(**a) != from) {
                self.send_sized(to, message.clone(), len);
            }
        }
        if let Some(slot) = self.children_of.get_mut(stripe as usize) {
            *slot = children;
        }
        if let Some(j) = self.joiner.as_mut() {
            if self.play_from.is_some_and(|p| seq >= p) {
                j.handle_chunk(now, 0, chunk.clone());
            }
        }
        self.history.insert(chunk);
        self.drain_joiner(now);
        self.check_end_complete(now);
    }

    fn drain_joiner(&mut self, now: u64) {
        let Some(j) = self.joiner.as_mut() else {
            return;
        };
        while let Some(event) = j.poll_event() {
            match event {
                JoinEvent::Play(chunk) => {
                    self.first_play_at.get_or_insert(now);
                    self.stats.counters.chunks_played += 1;
                    self.stats
                        .latency_us
                        .record(now.saturating_sub(chunk.capture_us));
                    self.stream_bytes += chunk.payload.len() as u64;
                    self.events.push_back(Event::Play(chunk));
                }
                JoinEvent::Skipped { first, last } => {
                    self.stats.counters.chunks_skipped += last - first + 1;
                    for seq in first..=last {
                        self.missing.remove(seq);
                    }
                    self.events.push_back(Event::Warning(format!(
                        "skipped chunks {first}..={last}: not received in time"
                    )));
                }
                JoinEvent::Replayed { .. } | JoinEvent::Late { .. } => {}
            }
        }
        if self.end.is_some() && self.finish_at.is_none() && j.is_finished() {
            self.finish_at = Some(now + self.cfg.linger_us);
        }
        // What playout passed a whole history ago (played, skipped, or before its first
        // keyframe, which it skips without a word) is no longer worth asking for. Without
        // this a peer that joined before the stream began asked for a chunk 0 it never got
        // for as long as it ran, and its missing set spanned the whole stream (bl-sim: 2,139
        // seqs for 12 entries at 10 s). Dropping everything playout passed at once bounded
        // the set just as well but left 6 of 20 loopback peers forwarding nothing (tests/
        // swarm.rs), for a reason not yet understood; a history later changes nothing near
        // playout.
        if let Some(next) = j.next_seq() {
            self.missing
                .remove_below(next.saturating_sub(self.cfg.history as u64));
        }
    }

    /// Peer: playout starts at the newest keyframe the seed knows; what lies between it and
    /// the newest chunk is fetched from neighbours as repairs.
    fn start_playout(&mut self, now: u64, latest_keyframe: Option<u64>, latest_seq: Option<u64>) {
        // Without a keyframe yet, the seed's first Have names the stream's first chunk.
        if let Some(start) = latest_keyframe {
            let last = latest_seq.unwrap_or(start);
            if last.saturating_sub(start) <= CATCH_UP_MAX_CHUNKS {
                self.set_play_from(now, start, last);
            } else {
                self.await_keyframe_after = Some(last);
            }
        }
    }

    fn set_play_from(&mut self, now: u64, start: u64, last: u64) {
        self.play_from = Some(start);
        if let Some(j) = self.joiner.as_mut() {
            j.start_at(start);
            for chunk in self.history.from(start) {
                j.handle_chunk(now, 0, chunk.clone());
            }
        }
        let last = last.max(self.highest.unwrap_or(0));
        for seq in start..=last.min(start.saturating_add(self.cfg.history as u64)) {
            if !self.history.contains(seq) {
                self.missing.note(seq, now, false);
                self.repair_at = now;
            }
        }
        self.drain_joiner(now);
    }

    /// Everything up to `seq` exists somewhere: note what we lack as missing.
    fn note_known_seq(&mut self, now: u64, seq: u64) {
        // Before playout has a start point nothing is missing yet (set_play_from marks the
        // gaps from the start on); counting earlier gaps grew without bound (bl-sim, 10k).
        let Some(play_from) = self.play_from else {
            return;
        };
        // Histories are windows of the newest seqs, so nobody holds a seq a whole history
        // behind the newest one known to exist: asking for it is futile. This also bounds the
        // set's span by a history however far playout lags (bl-sim, 100,000 peers, 10 s: a peer
        // held 750 entries over 2,070 seqs, so its playout was at least 4.7 s behind the newest).
        let held_somewhere = (seq + 1).saturating_sub(self.cfg.history as u64);
        self.missing.remove_below(held_somewhere);
        let from = self.highest.map_or(play_from, |h| h + 1);
        let from = from.max(play_from).max(held_somewhere);
        if seq < from || self.missing.len() >= self.cfg.history {
            return;
        }
        let until = seq.min(from + 1024);
        for s in from..=until {
            if !self.history.contains(s) {
                let stripe = stripe_of(s, self.stripes) as usize;
                // A parent still sending this stripe may bring it; one gone quiet will not.
                let parent_may_bring_it = self.stripe_flowing(now, stripe)
                    && self
                        .stripe_newest
                        .get(stripe)
                        .copied()
                        .flatten()
                        .is_none_or(|newest| newest < s);
                let wait = if parent_may_bring_it {
                    // Not longer than playout would wait for it.
                    IN_FLIGHT_WAIT_US.min(self.cfg.latency_us / 2)
                } else {
                    REPAIR_DELAY_US
                };
                self.missing.note(s, now + wait, parent_may_bring_it);
                self.repair_at = self.repair_at.min(now + wait);
            }
        }
    }

    fn learn_end(&mut self, now: u64, last_seq: u64) {
        if self.end.is_some() {
            return;
        }
        self.end = Some(last_seq);
        let addrs: Vec<SocketAddr> = self.neighbours.keys().copied().collect();
        for addr in addrs {
            self.send(addr, &Message::End { last_seq });
        }
        match self.cfg.role {
            Role::Seed => self.finish_at = Some(now + self.cfg.latency_us + self.cfg.linger_us),
            Role::Peer => {
                self.note_known_seq(now, last_seq);
                // Nothing more is coming by push: whatever is absent now is lost.
                let soon = now + REPAIR_DELAY_US;
                self.missing.bring_all_forward(soon);
                self.repair_at = self.repair_at.min(soon);
                self.end_deadline = Some(now + self.cfg.latency_us);
                self.check_end_complete(now);
            }
        }
    }

    fn check_end_complete(&mut self, now: u64) {
        let Some(last) = self.end else {
            return;
        };
        if self.cfg.role == Role::Peer
            && self.end_deadline.is_some()
            && self.missing.is_empty()
            && self.highest >= Some(last)
        {
            self.end_deadline = None;
            if let Some(j) = self.joiner.as_mut() {
                j.handle_end(now, 0);
            }
            self.drain_joiner(now);
        }
    }

    fn ban(&mut self, addr: SocketAddr) {
        self.banned.insert(addr);
        self.stats.counters.peers_banned += 1;
        self.drop_neighbour(addr);
    }

    fn drop_neighbour(&mut self, addr: SocketAddr) {
        self.children_stale = true;
        // Gone (or banned): not a peer to hand out any more.
        self.tracker_sample.retain(|p| p.addr != addr);
        self.neighbours.remove(&addr);
        self.hellos.remove(&addr);
        for parent in self.parents.iter_mut() {
            if *parent == Some(addr) {
                *parent = None;
            }
        }
        for pending in self.pending_subscribe.iter_mut() {
            if pending.is_some_and(|(a, _)| a == addr) {
                *pending = None;
            }
        }
    }

    fn set_stripes(&mut self, stripes: u8) {
        let k = stripes.max(1);
        if k == self.stripes {
            return;
        }
        self.stripes = k;
        self.parents = vec![None; k as usize];
        self.subscribed_at = vec![0; k as usize];
        self.pending_subscribe = vec![None; k as usize];
        self.stripe_newest = vec![None; k as usize];
        self.stripe_heard = vec![0; k as usize];
    }

    // ---- tree ----------------------------------------------------------------------------

    /// The seed's order for its few stripe slots, best first. A child that has passed nothing
    /// on for [`BARREN_AFTER_US`] goes last: a forger (every child banned it) or a free rider
    /// in a root slot would starve its whole stripe (bl-sim: continuity 83 % with 3 forgers
    /// among 300 peers). Then members before leaves, lower indices (older) first.
    fn child_rank(&self, n: &Neighbour, stripe: u8, now: u64) -> (bool, bool, u64) {
        let barren = n.children != 0 && now >= n.fed_since + BARREN_AFTER_US && n.feeding == 0;
        (barren, n.member != Some(stripe), n.index)
    }

    fn on_subscribe(&mut self, now: u64, from: SocketAddr, stripe: u8) {
        if stripe >= self.stripes {
            return;
        }
        let bit = 1u64 << (stripe % 64);
        let Some(requester) = self.neighbours.get(&from) else {
            return;
        };
        let requester_rank = self.child_rank(requester, stripe, now);
        let accepted = match self.cfg.role {
            Role::Seed => {
                // Budget: max_upload × K stripe subscriptions in all, and always at least one
                // per stripe. Small swarms (stripes without members) use the spare budget;
                // large ones end with one member per stripe at the seed.
                let budget = (self.cfg.max_upload * f64::from(self.stripes)).floor() as usize;
                let total = self.children_count() as usize;
                let children: Vec<(SocketAddr, (bool, bool, u64))> = self
                    .neighbours
                    .iter()
                    .filter(|(addr, n)| n.children & bit != 0 && **addr != from)
                    .map(|(addr, n)| (*addr, self.child_rank(n, stripe, now)))
                    .collect();
                if self.barred.get(&from).is_some_and(|until| now < *until) {
                    false
                } else if children.is_empty() || total < budget {
                    true
                } else if let Some((worst, rank)) = children.iter().max_by_key(|(_, r)| *r) {
                    // Lower-index members belong nearest the root: they displace others, and
                    // anyone displaces a barren child.
                    if requester_rank < *rank {
                        let worst = *worst;
                        if rank.0 {
                            self.barred.insert(worst, now + BARRED_US);
                        }
                        if let Some(n) = self.neighbours.get_mut(&worst) {
                            n.children &= !bit;
                            self.children_stale = true;
                        }
                        self.send(worst, &Message::Unsubscribe { stripe });
                        true
                    } else {
                        false
                    }
                } else {
                    false
                }
            }
            Role::Peer => {
                let slots = (self.cfg.max_upload * f64::from(self.stripes)).floor() as usize;
                let used = self
                    .neighbours
                    .values()
                    .filter(|n| n.children & bit != 0)
                    .count();
                let interior = requester.member == Some(stripe);
                let orderly = !interior || requester.index > self.index;
                let eligible = self.member == Some(stripe)
                    && orderly
                    && self.parents[stripe as usize] != Some(from);
                if !eligible || slots == 0 {
                    false
                } else if used < slots {
                    true
                } else if interior {
                    // Full, but a member of the stripe must find a place in its interior or
                    // the stripe's tree falls apart: it displaces a leaf, which finds another.
                    let leaf = self
                        .neighbours
                        .iter()
                        .filter(|(_, n)| n.children & bit != 0 && n.member != Some(stripe))
                        .map(|(a, n)| (n.index, *a))
                        .max();
                    match leaf {
                        Some((_, leaf)) => {
                            if let Some(n) = self.neighbours.get_mut(&leaf) {
                                n.children &= !bit;
                            }
                            self.children_stale = true;
                            self.send(leaf, &Message::Unsubscribe { stripe });
                            true
                        }
                        None => false,
                    }
                } else {
                    false
                }
            }
        };
        if accepted {
            if let Some(n) = self.neighbours.get_mut(&from) {
                if n.children == 0 {
                    n.fed_since = now;
                }
                n.children |= bit;
                self.children_stale = true;
            }
        }
        self.send(from, &Message::SubscribeReply { stripe, accepted });
    }

    fn choose_parent(&mut self, now: u64, stripe: u8) -> Option<SocketAddr> {
        let my_member = self.member;
        let my_index = self.index;
        let mut members: Vec<((bool, u8, u8), SocketAddr)> = self
            .neighbours
            .iter()
            .filter(|(addr, n)| {
                n.role == Role::Peer
                    && n.member == Some(stripe)
                    && (my_member != Some(stripe) || n.index < my_index)
                    && self
                        .refused
                        .get(&(**addr, stripe))
                        .is_none_or(|until| now >= *until)
            })
            .map(|(addr, n)| ((n.spare == 0, n.depth, u8::MAX - n.spare), *addr))
            .collect();
        // Members with room first (a full one refuses, and is not asked again for a while;
        // asking the least loaded instead sent children to small uplinks already full), the
        // shallowest of those (every hop adds delay: at 3,000 peers trees were 8 deep), the
        // roomiest, then at random.
        if let Some(least) = members.iter().map(|(rank, _)| *rank).min() {
            members.retain(|(rank, _)| *rank == least);
            members.sort();
            return Some(members[self.rng.below(members.len())].1);
        }
        self.neighbours
            .iter()
            .find(|(addr, n)| {
                n.role == Role::Seed
                    && self
                        .refused
                        .get(&(**addr, stripe))
                        .is_none_or(|until| now >= *until)
            })
            .map(|(addr, _)| *addr)
    }

    fn maintain_parents(&mut self, now: u64) {
        if self.cfg.role != Role::Peer || self.index == 0 {
            return;
        }
        let heard_overall = self.stripe_heard.iter().max().copied().unwrap_or(0);
        for stripe in 0..self.stripes {
            let s = stripe as usize;
            if let Some((_, sent)) = self.pending_subscribe[s] {
                if now < sent + 4 * TICK_US {
                    continue;
                }
                self.pending_subscribe[s] = None;
            }
            // A parent whose stripe lags far behind the others has gone quiet: replace it.
            if let Some(parent) = self.parents[s] {
                let quiet = now.saturating_sub(self.stripe_heard[s].max(self.subscribed_at[s]));
                if quiet > STALL_US && now < heard_overall + STALL_US / 2 {
                    self.send(parent, &Message::Unsubscribe { stripe });
                    self.refused
                        .insert((parent, stripe), now + REFUSAL_BACKOFF_US);
                    self.parents[s] = None;
                }
            }
            if self.parents[s].is_none() {
                if let Some(candidate) = self.choose_parent(now, stripe) {
                    self.pending_subscribe[s] = Some((candidate, now));
                    self.send(candidate, &Message::Subscribe { stripe });
                }
            }
        }
    }

    // ---- periodic ------------------------------------------------------------------------

    fn have(&self) -> Option<Message> {
        let highest = self.highest?;
        let first = self.history.first().unwrap_or(highest);
        let mut recent = 0u128;
        for seq in self
            .history
            .seqs_between(highest.saturating_sub(127), highest)
        {
            recent |= 1u128 << (highest - seq);
        }
        Some(Message::Have {
            first,
            highest,
            recent,
            children: self.children_count(),
            spare: self.spare_slots(),
            depth: self.depth(),
        })
    }

    /// Hops from the seed in this peer's member stripe (255: not attached).
    pub fn tree_depth(&self) -> u8 {
        self.depth()
    }

    /// Hops from the seed in our member stripe: the parent's depth + 1 (the seed is 0).
    fn depth(&self) -> u8 {
        if self.cfg.role == Role::Seed {
            return 0;
        }
        let parent = self
            .member
            .and_then(|m| self.parents.get(m as usize).copied().flatten())
            .and_then(|p| self.neighbours.get(&p));
        match parent {
            Some(p) if p.role == Role::Seed => 1,
            Some(p) => p.depth.saturating_add(1),
            None => u8::MAX,
        }
    }

    fn note_rtt(&mut self, addr: SocketAddr, sample: u64) {
        if let Some(n) = self.neighbours.get_mut(&addr) {
            // TCP's smoothing (RFC 6298): 7/8 old, 1/8 new.
            n.rtt_us = Some(n.rtt_us.map_or(sample, |rtt| (7 * rtt + sample) / 8));
        }
    }

    /// How long an answer from `addr` may take: twice its RTT and a little, within bounds.
    fn answer_wait(&self, addr: SocketAddr) -> u64 {
        let rtt = self
            .neighbours
            .get(&addr)
            .and_then(|n| n.rtt_us)
            .unwrap_or(DEFAULT_RTT_US);
        (2 * rtt + 10_000).clamp(REPAIR_RETRY_MIN_US, REPAIR_RETRY_MAX_US)
    }

    /// Whether `stripe` has a parent that sent a chunk of it in the last [`PARENT_QUIET_US`]:
    /// chunks of it not yet seen may still come by push.
    fn stripe_flowing(&self, now: u64, stripe: usize) -> bool {
        self.parents.get(stripe).is_some_and(Option::is_some)
            && self
                .stripe_heard
                .get(stripe)
                .is_some_and(|heard| now < heard + PARENT_QUIET_US)
    }

    /// Seed: ask every stripe child for a chunk of its stripe it received a second ago. The
    /// answer must equal what the seed sent; a child that forges what it forwards is banned
    /// (on_chunk) and its root slot freed. Every subtree below a forger bans it, but only the
    /// seed can take its slot away. A forger that answers the seed honestly is not caught.
    fn audit_children(&mut self) {
        let Some(highest) = self.highest else {
            return;
        };
        let stripes = u64::from(self.stripes);
        let base = highest.saturating_sub(AUDIT_AGE_CHUNKS);
        let audits: Vec<(SocketAddr, u64)> = self
            .neighbours
            .iter()
            .flat_map(|(addr, n)| {
                (0..stripes)
                    .filter(move |s| n.children & (1u64 << (s % 64)) != 0)
                    .map(move |s| (*addr, base + (s + stripes - base % stripes) % stripes))
            })
            .filter(|(_, seq)| self.history.contains(*seq))
            .collect();
        for (addr, seq) in audits {
            self.send(addr, &Message::Request { seqs: vec![seq] });
        }
    }

    /// Stripes (bit s) this peer has no parent in, once it has a place in the swarm.
    fn orphan_stripes(&self) -> u64 {
        if self.cfg.role != Role::Peer || self.index == 0 {
            return 0;
        }
        self.parents
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_none())
            .fold(0, |mask, (s, _)| mask | 1u64 << (s % 64))
    }

    /// Stripe subscriptions this node would still accept (a member of the stripe may also
    /// take one more member by displacing a leaf).
    fn spare_slots(&self) -> u8 {
        let slots = (self.cfg.max_upload * f64::from(self.stripes)).floor();
        let slots = if self.cfg.role == Role::Seed {
            slots.max(f64::from(self.stripes))
        } else {
            slots
        };
        (slots as u64)
            .saturating_sub(u64::from(self.children_count()))
            .min(255) as u8
    }

    fn children_count(&self) -> u8 {
        let total: u32 = self
            .neighbours
            .values()
            .map(|n| n.children.count_ones())
            .sum();
        total.min(255) as u8
    }

    fn send_have_to(&mut self, to: SocketAddr) {
        if let Some(have) = self.have() {
            self.send(to, &have);
        }
    }

    fn tick(&mut self, now: u64) {
        // Neighbours that went silent are gone.
        let silent: Vec<SocketAddr> = self
            .neighbours
            .iter()
            .filter(|(_, n)| {
                let timeout = match n.role {
                    Role::Seed => SEED_TIMEOUT_US,
                    Role::Peer => NEIGHBOUR_TIMEOUT_US,
                };
                now > n.last_heard + timeout
            })
            .map(|(a, _)| *a)
            .collect();
        for addr in silent {
            self.drop_neighbour(addr);
        }
        // Hello retries.
        // Backing off exponentially: a flash crowd at a full seed must not turn its retries
        // into a flood that crowds out the stream (bl-sim, 100,000 joiners in 5 s).
        let retry: Vec<(SocketAddr, u32)> = self
            .hellos
            .iter()
            .filter(|(_, (_, last, n))| {
                now >= last + (HELLO_RETRY_US << n.saturating_sub(1).min(3))
            })
            .map(|(a, (_, _, n))| (*a, *n))
            .collect();
        for (addr, attempts) in retry {
            if attempts >= HELLO_ATTEMPTS && !self.cfg.bootstrap.contains(&addr) {
                self.hellos.remove(&addr);
            } else {
                self.send_hello(now, addr);
            }
        }
        // Confirms not yet answered by anything: sent again, at most HELLO_ATTEMPTS times.
        let unanswered: Vec<SocketAddr> = self
            .neighbours
            .iter()
            .filter(|(_, n)| {
                n.unconfirmed.is_some_and(|sent| {
                    sent < HELLO_ATTEMPTS as u8
                        && now >= n.last_heard + HELLO_RETRY_US * u64::from(sent)
                })
            })
            .map(|(a, _)| *a)
            .collect();
        for addr in unanswered {
            if let Some(&token) = self.tokens.get(&addr) {
                self.send(addr, &self.confirm(token));
            }
            if let Some(n) = self.neighbours.get_mut(&addr) {
                n.unconfirmed = n.unconfirmed.map(|sent| sent + 1);
            }
        }
        // Back to the bootstrap nodes when short of neighbours (every neighbour left, the
        // seed restarted); a seed that is full still answers GetPeers with our token.
        if self.cfg.role == Role::Peer
            && self.neighbours.len() < self.cfg.target_neighbours / 2
            && self.hellos.is_empty()
            && !self.finished
            && now >= self.last_bootstrap + BOOTSTRAP_RETRY_US
        {
            self.last_bootstrap = now;
            let bootstrap = self.cfg.bootstrap.clone();
            for addr in bootstrap {
                match self.tokens.get(&addr) {
                    Some(&token) if !self.neighbours.is_empty() => {
                        self.send(addr, &Message::GetPeers { token })
                    }
                    _ => self.send_hello(now, addr),
                }
            }
        }
        // Refill the repair budget from the stream rate seen in the last tick.
        // Repairs are charged to --max-upload: what the pushes leave of it, at least a floor
        // (orphans after a parent died need a burst of repairs from busy members). The seed's
        // budget is a fixed share: everything it sends counts against source amplification.
        let share = match self.cfg.role {
            Role::Seed => self.cfg.max_upload * REPAIR_SHARE_SEED,
            Role::Peer => {
                let pushing = f64::from(self.children_count()) / f64::from(self.stripes);
                (self.cfg.max_upload - pushing).max(REPAIR_SHARE_MIN * self.cfg.max_upload)
            }
        };
        let refill = self.new_chunks as f64 * share + 2.0;
        // Unused budget keeps a little while: a joiner's catch-up comes as one burst.
        self.repair_credit = (self.repair_credit + refill).min(4.0 * refill);
        self.new_chunks = 0;
        self.ticks += 1;
        // Haves double as keepalives: often to the tree around us, less often to the rest.
        let (tree_ticks, idle_ticks) = match self.cfg.role {
            Role::Seed => (1, IDLE_HAVE_TICKS_SEED),
            Role::Peer => (TREE_HAVE_TICKS_PEER, IDLE_HAVE_TICKS_PEER),
        };
        let everyone = self.ticks % idle_ticks == 0;
        let tree_due = self.ticks % tree_ticks == 0;
        let parents = &self.parents;
        let have = self.have().unwrap_or(Message::Have {
            first: 0,
            highest: 0,
            recent: 0,
            children: self.children_count(),
            spare: self.spare_slots(),
            depth: self.depth(),
        });
        let addrs: Vec<SocketAddr> = self
            .neighbours
            .iter()
            .filter(|(a, n)| {
                everyone || tree_due && (n.children != 0 || parents.contains(&Some(**a)))
            })
            .map(|(a, _)| *a)
            .collect();
        for addr in addrs {
            self.send(addr, &have);
        }
        // Peer exchange while below target.
        if self.cfg.role == Role::Peer
            && now >= self.next_peer_exchange
            && !self.neighbours.is_empty()
        {
            self.next_peer_exchange = now + PEER_EXCHANGE_US;
            if self.neighbours.len() < self.cfg.target_neighbours || self.orphan_stripes() != 0 {
                // Other peers first: the seed's upload is the scarce resource, and at 100,000
                // peers its tracker answers alone would outweigh the stream.
                let peers: Vec<SocketAddr> = self
                    .neighbours
                    .iter()
                    .filter(|(_, n)| n.role == Role::Peer)
                    .map(|(a, _)| *a)
                    .collect();
                let addrs: Vec<SocketAddr> = if peers.is_empty() {
                    self.neighbours.keys().copied().collect()
                } else {
                    peers
                };
                let pick = addrs[self.rng.below(addrs.len())];
                let token = self.tokens.get(&pick).copied().unwrap_or(0);
                self.send(pick, &Message::GetPeers { token });
            }
        }
        self.refused.retain(|_, until| *until > now);
        if self.cfg.role == Role::Seed && self.ticks % AUDIT_TICKS == 0 {
            self.audit_children();
        }
        self.barred.retain(|_, until| *until > now);
        // Chunks put off for a parent that has since gone quiet in their stripe (or is gone)
        // will not come by push: ask for them now.
        if self.cfg.role == Role::Peer && !self.missing.is_empty() {
            let stripes = self.stripes;
            for stripe in 0..stripes {
                if !self.stripe_flowing(now, stripe as usize) {
                    self.missing
                        .bring_forward(u64::MAX, now, |seq| stripe_of(seq, stripes) == stripe);
                }
            }
            self.repair_at = self
                .repair_at
                .min(self.missing.earliest().unwrap_or(u64::MAX));
        }
        self.maintain_parents(now);
        // Joined before the stream began: once chunks have flowed for a moment, the oldest
        // chunk anyone around holds is the start (whichever stripe arrived first is not).
        if self.cfg.role == Role::Peer
            && self.play_from.is_none()
            && self.await_keyframe_after.is_none()
            && self
                .first_chunk_at
                .is_some_and(|t| now >= t + EARLY_START_WAIT_US)
        {
            let announced = self
                .neighbours
                .values()
                .filter_map(|n| n.have)
                .filter(|h| h.2 != 0)
                .map(|h| h.0);
            let oldest = announced.chain(self.history.first()).min();
            if let (Some(first), Some(last)) = (oldest, self.highest) {
                self.set_play_from(now, first, last);
            }
        }
    }

    fn repair(&mut self, now: u64) {
        if self.missing.is_empty() || now < self.repair_at {
            return;
        }
        let play_floor = self.play_from.unwrap_or(0);
        let mut batches: BTreeMap<SocketAddr, Vec<u64>> = BTreeMap::new();
        let due = self.missing.due(now, play_floor, 256);
        // Only parents heard from lately are asked: a dead one would cost a round of waiting.
        let live_parents: Vec<Option<SocketAddr>> = self
            .parents
            .iter()
            .map(|p| {
                p.filter(|p| {
                    self.neighbours
                        .get(p)
                        .is_some_and(|n| now < n.last_heard + PARENT_QUIET_US)
                })
            })
            .collect();
        let seed = self
            .neighbours
            .iter()
            .find(|(_, n)| n.role == Role::Seed)
            .map(|(a, _)| *a);
        for seq in due {
            // Peers that announced it, in address order (no list: this runs for every
            // missing chunk). Peers first: the seed's upload is the scarce resource.
            let peer_holders = || {
                self.neighbours
                    .iter()
                    .filter(move |(_, n)| n.role != Role::Seed && n.holds(seq))
                    .map(|(a, _)| *a)
            };
            let peer_count = peer_holders().count();
            let stripe_parent = live_parents
                .get(stripe_of(seq, self.stripes) as usize)
                .copied()
                .flatten();
            let tries = self.missing.get(seq).map_or(0, |m| m.tries);
            // First the stripe's parent: it lost the chunk on our link (it answers at once) or
            // upstream (it is repairing it and pushes it down to us anyway), so a subtree does
            // not storm its neighbours for one chunk lost near the root. Then any peer that
            // announced it; the seed only when no peer has it after two tries.
            let parent_lacks_it = stripe_parent
                .and_then(|p| self.neighbours.get(&p))
                .is_some_and(|n| n.have.is_some_and(|(_, h, _)| h >= seq) && !n.holds(seq));
            let (target, wait) = match stripe_parent {
                Some(parent) if tries == 0 => {
                    let extra = if parent_lacks_it {
                        PARENT_REPAIR_EXTRA_US
                    } else {
                        0
                    };
                    (Some(parent), self.answer_wait(parent) + extra)
                }
                _ if peer_count > 0 => {
                    let pick = self.rng.below(peer_count);
                    match peer_holders().nth(pick) {
                        Some(to) => (Some(to), self.answer_wait(to)),
                        None => (None, DEFAULT_RTT_US),
                    }
                }
                _ if tries >= 2 => match seed {
                    Some(seed) => (Some(seed), self.answer_wait(seed)),
                    None => (None, DEFAULT_RTT_US),
                },
                // Nobody announced it yet (Haves are 200–300 ms apart): wait for them.
                _ => (None, DEFAULT_RTT_US),
            };
            if !self.missing.contains(seq) {
                continue;
            }
            let mut next_try = now + wait;
            if let Some(to) = target {
                let batch = batches.entry(to).or_default();
                if batch.len() < MAX_REQUEST_SEQS {
                    batch.push(seq);
                } else {
                    next_try = now;
                }
            }
            // A round with nobody to ask counts as a try too: it leads to the seed.
            self.missing
                .tried(seq, next_try, target.map(|to| (to, now)));
        }
        let mut batches: Vec<(SocketAddr, Vec<u64>)> = batches.into_iter().collect();
        batches.sort();
        for (to, seqs) in batches {
            self.send(to, &Message::Request { seqs });
        }
        // Anything below what playout still wants is no longer worth asking for.
        if let Some(p) = self.play_from {
            self.missing.remove_below(p);
        }
        self.repair_at = self.missing.earliest().unwrap_or(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    //! Two and three cores wired together in virtual time, no sockets: every datagram is
    //! delivered 1 ms after it is sent (or dropped by a test-chosen filter).

    use super::*;
    use crate::media::chunk::FLAG_KEYFRAME;
    use crate::media::identity::StreamKey;

    /// Decides per datagram (from, to, bytes) whether it is delivered.
    type LinkFilter = Box<dyn Fn(SocketAddr, SocketAddr, &[u8]) -> bool>;

    struct Net {
        nodes: Vec<(SocketAddr, Node)>,
        in_flight: Vec<(u64, SocketAddr, SocketAddr, Vec<u8>)>,
        played: BTreeMap<SocketAddr, Vec<u64>>,
        now: u64,
        /// Drops datagrams for which it returns false.
        filter: LinkFilter,
    }

    const T0: u64 = 1_700_000_000_000_000;

    #[test]
    fn a_welcome_naming_seqs_at_the_end_of_u64_does_not_overflow() {
        // A hostile neighbour's Welcome names the keyframe and newest chunk to start from.
        let key = StreamKey::from_seed([3; 32]);
        let mut peer = Node::new(Config::new(Role::Peer, key.id()), T0);
        peer.start_playout(T0, Some(u64::MAX - 2), Some(u64::MAX));
        assert_eq!(peer.play_from, Some(u64::MAX - 2));
        assert_eq!(peer.missing.len(), 3);
    }

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7000 + i))
    }

    impl Net {
        fn new(key: &StreamKey, peers: u16) -> Net {
            let mut seed_cfg = Config::new(Role::Seed, key.id());
            seed_cfg.rng_seed = 1;
            let mut nodes = vec![(addr(0), Node::new(seed_cfg, T0))];
            for i in 1..=peers {
                let mut cfg = Config::new(Role::Peer, key.id());
                cfg.bootstrap = vec![addr(0)];
                cfg.rng_seed = u64::from(i) + 1;
                cfg.latency_us = 500_000;
                nodes.push((addr(i), Node::new(cfg, T0)));
            }
            for (a, n) in nodes.iter_mut() {
                n.set_local_addr(*a);
            }
            Net {
                nodes,
                in_flight: Vec::new(),
                played: BTreeMap::new(),
                now: T0,
                filter: Box::new(|_, _, _| true),
            }
        }

        fn collect(&mut self) {
            for (from, node) in self.nodes.iter_mut() {
                while let Some(t) = node.poll_transmit() {
                    // Through the real encoding, as a driver would.
                    let bytes = wire::encode(&t.message).unwrap();
                    assert_eq!(bytes.len(), t.len);
                    if (self.filter)(*from, t.to, &bytes) {
                        self.in_flight.push((self.now + 1_000, *from, t.to, bytes));
                    }
                }
                while let Some(e) = node.poll_event() {
                    if let Event::Play(c) = e {
                        self.played.entry(*from).or_default().push(c.seq);
                    }
                }
            }
        }

        /// Runs until `until`, in 1 ms steps.
        fn run_until(&mut self, until: u64) {
            while self.now < until {
                self.now += 1_000;
                let now = self.now;
                let (due, later): (Vec<_>, Vec<_>) =
                    self.in_flight.drain(..).partition(|(t, ..)| *t <= now);
                self.in_flight = later;
                for (_, from, to, bytes) in due {
                    if let Some((_, node)) = self.nodes.iter_mut().find(|(a, _)| *a == to) {
                        node.handle_datagram(now, from, &bytes);
                    }
                }
                for (_, node) in self.nodes.iter_mut() {
                    if node.poll_timeout() <= now {
                        node.handle_timeout(now);
                    }
                }
                self.collect();
            }
        }

        fn seed(&mut self) -> &mut Node {
            &mut self.nodes[0].1
        }
    }

    fn chunk(key: &StreamKey, seq: u64, now: u64) -> Chunk {
        let mut payload = vec![seq as u8; 188 * 6];
        for p in payload.chunks_exact_mut(188) {
            p[0] = 0x47;
        }
        Chunk::sign(
            key,
            seq,
            now,
            if seq % 50 == 0 { FLAG_KEYFRAME } else { 0 },
            payload,
        )
    }

    /// Feeds `count` chunks from the seed, one every 5 ms.
    fn stream(net: &mut Net, key: &StreamKey, seqs: std::ops::Range<u64>) {
        for seq in seqs {
            let now = net.now;
            let c = chunk(key, seq, now);
            net.seed().handle_chunk(now, c);
            net.collect();
            net.run_until(now + 5_000);
        }
    }

    #[test]
    fn two_peers_play_every_chunk_in_order() {
        let key = StreamKey::from_seed([1; 32]);
        let mut net = Net::new(&key, 2);
        net.run_until(T0 + 300_000); // handshakes, peer exchange, subscriptions
        stream(&mut net, &key, 0..200);
        let now = net.now;
        net.seed().handle_input_end(now);
        net.run_until(now + 5_000_000);
        for i in 1..=2 {
            let played = &net.played[&addr(i)];
            assert_eq!(played, &(0..200).collect::<Vec<_>>(), "peer {i}");
            assert!(
                net.nodes[i as usize].1.is_finished(),
                "peer {i} must finish after the end"
            );
        }
        // Peers forward to each other: the seed did not send every copy.
        let seed_chunks = net.nodes[0].1.stats().sent.get("chunk").datagrams;
        assert!(
            seed_chunks < 2 * 200,
            "seed sent {seed_chunks} chunk datagrams for 2 peers"
        );
    }

    #[test]
    fn a_chunk_playout_gave_up_on_is_no_longer_asked_for() {
        let key = StreamKey::from_seed([1; 32]);
        let mut net = Net::new(&key, 1);
        // Chunk 0 never reaches the peer, however often it asks.
        let peer = addr(1);
        let asked_late = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let (asked, clock) = (
            asked_late.clone(),
            std::rc::Rc::new(std::cell::Cell::new(0)),
        );
        let now_seen = clock.clone();
        net.filter = Box::new(move |from, to, bytes| match wire::decode(bytes) {
            Ok(Message::Chunk(c)) => !(to == peer && c.seq == 0),
            Ok(Message::Request { seqs }) if from == peer && seqs.contains(&0) => {
                if now_seen.get() > 0 {
                    asked.set(asked.get() + 1);
                }
                true
            }
            _ => true,
        });
        // It joins before the stream begins, so its playout starts at chunk 0.
        net.run_until(T0 + 300_000);
        let history = net.nodes[1].1.cfg.history as u64;
        stream(&mut net, &key, 0..history + 200);
        // Playout gave up on chunk 0 (latency 0.5 s), started at keyframe 50 and has since
        // moved a whole history past it.
        clock.set(1);
        stream(&mut net, &key, history + 200..history + 300);
        let node = &net.nodes[1].1;
        assert_eq!(net.played[&peer].first(), Some(&50));
        assert!(!node.missing.contains(0), "chunk 0 is still noted missing");
        let span = node.missing.span() as u64;
        assert!(span <= history + 100, "missing set spans {span} seqs");
        assert_eq!(
            asked_late.get(),
            0,
            "requests for chunk 0 after playout passed it"
        );
    }

    #[test]
    fn a_chunk_nobody_holds_any_longer_is_not_asked_for() {
        let key = StreamKey::from_seed([1; 32]);
        let mut net = Net::new(&key, 1);
        // From chunk 200 on nothing reaches the peer: its playout stops at 200 for good
        // while the seed's Haves tell it how far the stream has gone.
        let peer = addr(1);
        let lowest_asked = std::rc::Rc::new(std::cell::Cell::new(u64::MAX));
        let (lowest, counting) = (
            lowest_asked.clone(),
            std::rc::Rc::new(std::cell::Cell::new(false)),
        );
        let count_now = counting.clone();
        net.filter = Box::new(move |from, to, bytes| match wire::decode(bytes) {
            Ok(Message::Chunk(c)) => !(to == peer && c.seq >= 200),
            Ok(Message::Request { seqs }) if from == peer && count_now.get() => {
                let least = seqs.iter().copied().min().unwrap_or(u64::MAX);
                lowest.set(lowest.get().min(least));
                true
            }
            _ => true,
        });
        net.run_until(T0 + 300_000);
        let history = net.nodes[1].1.cfg.history as u64;
        stream(&mut net, &key, 0..200 + history + 500);
        assert!(
            !net.nodes[1].1.missing.is_empty(),
            "the peer must be missing chunks"
        );
        // Every seed and peer has by now forgotten chunk 200 and the next 500.
        counting.set(true);
        stream(&mut net, &key, 200 + history + 500..200 + history + 800);
        let node = &net.nodes[1].1;
        assert_eq!(net.played[&peer].last(), Some(&199));
        assert!(
            !node.missing.contains(200),
            "chunk 200 is still noted missing"
        );
        let span = node.missing.span() as u64;
        assert!(span <= history, "missing set spans {span} seqs");
        assert!(
            lowest_asked.get() < u64::MAX,
            "the peer must still ask for what it lacks"
        );
        // Seqs from 701 on are still held; the peer learns the newest seq from Haves sent
        // every few hundred ms (tens of chunks here), so it may ask a little below that.
        assert!(
            lowest_asked.get() > 600,
            "asked for chunk {} after every history had dropped it",
            lowest_asked.get()
        );
    }

    #[test]
    fn lost_datagrams_are_repaired_by_pull() {
        let key = StreamKey::from_seed([1; 32]);
        let mut net = Net::new(&key, 3);
        // Lose every 7th chunk datagram on every link; Requests recover them.
        let counter = std::cell::Cell::new(0u32);
        net.filter = Box::new(move |_, _, bytes| {
            if matches!(wire::decode(bytes), Ok(Message::Chunk(_))) {
                counter.set(counter.get() + 1);
                return counter.get() % 7 != 0;
            }
            true
        });
        net.run_until(T0 + 300_000);
        stream(&mut net, &key, 0..300);
        net.run_until(net.now + 2_000_000);
        for i in 1..=3u16 {
            let played = &net.played[&addr(i)];
            assert_eq!(
                played,
                &(0..300).collect::<Vec<_>>(),
                "peer {i} must play all despite loss"
            );
            let stats = net.nodes[i as usize].1.stats();
            assert_eq!(stats.counters.chunks_skipped, 0);
        }
    }

    #[test]
    fn a_child_asking_again_for_a_lost_push_is_served_when_catch_ups_spent_the_budget() {
        let key = StreamKey::from_seed([1; 32]);
        let mut net = Net::new(&key, 2);
        net.run_until(T0 + 300_000);
        stream(&mut net, &key, 0..200);
        let seed_addr = addr(0);
        let child_of_seed = |net: &Net, peer: usize, stripe: usize| {
            net.nodes[peer].1.parents()[stripe] == Some(seed_addr)
        };
        // A stripe in which peer 1 is the seed's child and peer 2 is not.
        let stripe = (0..4)
            .find(|&s| child_of_seed(&net, 1, s) && !child_of_seed(&net, 2, s))
            .expect("the seed splits its slots between the two peers") as u64;
        let in_stripe = |from: u64| (from..200).filter(|q| q % 4 == stripe);
        // Peer 2 asks the seed for a catch-up in that stripe, again and again.
        let now = net.now;
        for _ in 0..4 {
            let catch_up = wire::encode(&Message::Request {
                seqs: in_stripe(100).take(MAX_REQUEST_SEQS).collect(),
            })
            .unwrap();
            net.seed().handle_datagram(now, addr(2), &catch_up);
        }
        let spent = net.seed().stats().counters;
        assert!(spent.repairs_refused > 0, "the budget is spent");
        // Peer 1 lost its push of the stripe's newest chunk: the seed sends it again.
        let lost = in_stripe(190).next_back().unwrap();
        let again = wire::encode(&Message::Request { seqs: vec![lost] }).unwrap();
        net.seed().handle_datagram(now, addr(1), &again);
        let after = net.seed().stats().counters;
        assert_eq!(
            (after.repairs_served, after.repairs_refused),
            (spent.repairs_served + 1, spent.repairs_refused)
        );
        // ... while peer 2's next catch-up request is still refused.
        let one = wire::encode(&Message::Request { seqs: vec![lost] }).unwrap();
        net.seed().handle_datagram(now, addr(2), &one);
        let last = net.seed().stats().counters;
        assert_eq!(
            (last.repairs_served, last.repairs_refused),
            (after.repairs_served, after.repairs_refused + 1)
        );
    }

    #[test]
    fn chunks_the_seed_pushed_to_nobody_reach_early_joiners_beyond_its_repair_budget() {
        let key = StreamKey::from_seed([1; 32]);
        let mut net = Net::new(&key, 3);
        // The seed reads a burst of 50 chunks before the joiners' Hellos arrive (an
        // encoder's first GOP): it has no children for them, so the joiners fetch all 50
        // by request before its repair budget has refilled.
        let now = net.now;
        for seq in 0..50 {
            net.seed().handle_chunk(now, chunk(&key, seq, now));
        }
        net.run_until(now + 20_000);
        // Then a slow stream (one chunk per 20 ms): its refills are small.
        for seq in 50..100 {
            let now = net.now;
            net.seed().handle_chunk(now, chunk(&key, seq, now));
            net.collect();
            net.run_until(now + 20_000);
        }
        net.run_until(net.now + 2_000_000);
        for i in 1..=3u16 {
            let played = &net.played[&addr(i)];
            assert_eq!(
                played.first(),
                Some(&0),
                "peer {i} starts at the first keyframe"
            );
            let stats = net.nodes[i as usize].1.stats();
            assert_eq!(stats.counters.chunks_skipped, 0, "peer {i}");
        }
    }

    #[test]
    fn forged_chunk_gets_the_sender_banned_and_is_not_played() {
        let key = StreamKey::from_seed([1; 32]);
        let forger = StreamKey::from_seed([2; 32]);
        let mut net = Net::new(&key, 2);
        net.run_until(T0 + 300_000);
        stream(&mut net, &key, 0..20);
        // Peer 2 turns rogue: it sends peer 1 a chunk signed by another key.
        let bad = wire::encode(&Message::Chunk(chunk(&forger, 20, net.now).into())).unwrap();
        let now = net.now;
        net.nodes[1].1.handle_datagram(now, addr(2), &bad);
        let stats = net.nodes[1].1.stats();
        assert_eq!(
            (stats.counters.chunks_forged, stats.counters.peers_banned),
            (1, 1)
        );
        stream(&mut net, &key, 20..40);
        net.run_until(net.now + 1_000_000);
        let played = &net.played[&addr(1)];
        assert_eq!(
            played,
            &(0..40).collect::<Vec<_>>(),
            "the genuine seq 20 plays, the forged one never"
        );
        // Everything the rogue sends later is dropped.
        let before = net.nodes[1].1.stats().counters.datagrams_dropped;
        net.nodes[1].1.handle_datagram(net.now, addr(2), &bad);
        assert_eq!(
            net.nodes[1].1.stats().counters.datagrams_dropped,
            before + 1
        );
    }

    #[test]
    fn strangers_get_nothing_but_a_welcome_no_larger_than_their_hello() {
        let key = StreamKey::from_seed([1; 32]);
        let mut net = Net::new(&key, 0);
        let stranger = addr(99);
        // Unpadded hello: ignored. Any other message: ignored.
        let small = wire::encode(&Message::Hello(Box::new(wire::Hello {
            stream: key.id(),
            nonce: 1,
            role: Role::Peer,
            index: None,
            member: None,
            padding: vec![],
        })))
        .unwrap();
        let now = net.now;
        net.seed().handle_datagram(now, stranger, &small);
        net.seed().handle_datagram(
            now,
            stranger,
            &wire::encode(&Message::Request {
                seqs: vec![0, 1, 2],
            })
            .unwrap(),
        );
        net.seed().handle_datagram(
            now,
            stranger,
            &wire::encode(&Message::GetPeers { token: 0 }).unwrap(),
        );
        assert!(net.seed().poll_transmit().is_none());
        let hello = wire::encode(&wire::hello(key.id(), 1, Role::Peer, None, None)).unwrap();
        net.seed().handle_datagram(now, stranger, &hello);
        let reply = net.seed().poll_transmit().unwrap();
        assert!(reply.len <= hello.len());
        assert!(net.seed().poll_transmit().is_none());
        assert_eq!(net.seed().stats().counters.datagrams_dropped, 3);
    }

    #[test]
    fn a_joiner_that_knows_only_a_peer_numbers_itself_after_it_and_plays() {
        let key = StreamKey::from_seed([22; 32]);
        let mut net = Net::new(&key, 2);
        net.run_until(T0 + 300_000);
        stream(&mut net, &key, 0..120);
        // A tracker named peer 1 only: the seed never hears of the joiner.
        let mut cfg = Config::new(Role::Peer, key.id());
        cfg.bootstrap = vec![addr(1)];
        cfg.rng_seed = 9;
        cfg.latency_us = 500_000;
        let mut joiner = Node::new(cfg, net.now);
        joiner.set_local_addr(addr(3));
        net.nodes.push((addr(3), joiner));
        net.collect();
        stream(&mut net, &key, 120..300);
        let now = net.now;
        net.seed().handle_input_end(now);
        net.run_until(now + 5_000_000);
        let joiner = &net.nodes[3].1;
        let older = net.nodes[1].1.index().max(net.nodes[2].1.index());
        assert!(
            joiner.index() > older,
            "joined later, numbered {} after {older}",
            joiner.index()
        );
        assert!(joiner.member().is_some());
        assert!(!net.nodes[0].1.neighbours.contains_key(&addr(3)));
        let played = &net.played[&addr(3)];
        let first = played[0];
        assert!(
            first <= 150,
            "started at {first}: the newest keyframe peer 1 named"
        );
        assert_eq!(played, &(first..300).collect::<Vec<_>>());
    }

    #[test]
    fn a_lost_confirm_is_sent_again_so_the_link_is_not_half_open() {
        let key = StreamKey::from_seed([23; 32]);
        let mut net = Net::new(&key, 1);
        let lost = std::cell::Cell::new(false);
        net.filter = Box::new(move |from, _, bytes| {
            let confirm = matches!(wire::decode(bytes), Ok(Message::Confirm { .. }));
            if confirm && from == addr(1) && !lost.get() {
                lost.set(true);
                return false;
            }
            true
        });
        net.run_until(T0 + 2_000_000);
        assert!(net.nodes[1].1.neighbours.contains_key(&addr(0)));
        assert!(
            net.nodes[0].1.neighbours.contains_key(&addr(1)),
            "the peer counts the seed as a neighbour, the seed never heard of the peer"
        );
    }

    #[test]
    fn joiners_turned_away_by_a_full_seed_still_get_its_peers() {
        let key = StreamKey::from_seed([21; 32]);
        let mut net = Net::new(&key, 4);
        // A seed with room for one neighbour: the other joiners get its Goodbye, then the
        // answer to their GetPeers.
        let mut cfg = Config::new(Role::Seed, key.id());
        cfg.rng_seed = 1;
        cfg.max_neighbours = 1;
        let mut seed = Node::new(cfg, T0);
        seed.set_local_addr(addr(0));
        net.nodes[0].1 = seed;
        net.collect();
        net.run_until(T0 + 50_000);
        assert_eq!(net.seed().neighbour_count(), 1);
        for (a, node) in net.nodes.iter().skip(1) {
            assert!(node.neighbour_count() >= 1, "{a} has no neighbour");
            assert_eq!(node.stats().counters.datagrams_dropped, 0, "{a} dropped");
        }
    }
}
