//! bl-sim's engine: thousands of unchanged [`Node`] cores in virtual time over a seeded model
//! of the internet. Nothing here reads a clock, a socket or the OS RNG, so the same
//! [`SimConfig`] gives the same [`Outcome`], bit for bit.
//!
//! The model (docs/PERFORMANCE.md): every node sits at a random point of a unit square; a
//! datagram's one-way delay is both ends' access delay (1–10 ms each) plus 100 ms per unit of
//! distance, so RTTs run from ~5 ms to ~300 ms. Each sender has an upload cap (peers:
//! log-uniform between two bounds; the seed: its own) served first-come first-served, and a
//! datagram that would wait more than [`UPLOAD_QUEUE_US`] is dropped, as a full router queue
//! would. Each receiver's downlink loses datagrams with a Gilbert–Elliott model of the chosen
//! loss rate and mean burst length. Free riders never send a chunk; forgers send every chunk
//! with one byte changed. Churn removes peers (half leave politely, half vanish) and adds new
//! ones at a steady rate.
//!
//! Messages travel as the core's own [`Message`] values (sized by the wire encoding), and
//! chunks are shared, so 100,000 cores hold one copy of the stream per lane (two lanes, by
//! node id, for the two threads); a [`VerifiedChunks`] memo per lane checks each signature
//! once for all of its cores.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use serde::Serialize;

pub mod calendar;

use crate::core::node::{Config, Event, Node, Transmit};
use crate::core::stats::{Counters, Histogram, Traffic, TrafficByKind};
use crate::media::chunk::{Chunk, FLAG_KEYFRAME, MAX_PAYLOAD};
use crate::media::identity::StreamKey;
use crate::media::ts::PACKET_SIZE;
use crate::media::verified::VerifiedChunks;
use crate::proto::wire::{Message, Role};
use calendar::Calendar;

/// A datagram that would queue longer than this at its sender's uplink is dropped.
pub const UPLOAD_QUEUE_US: u64 = 250_000;
/// IPv4 + UDP headers, counted against upload caps (not in the byte figures).
const HEADER_BYTES: u64 = 28;
/// Event buckets are this wide: the simulation's time resolution (timers and deliveries happen
/// at bucket ends).
const BUCKET_US: u64 = 1_000;
/// Virtual time starts here (µs since the UNIX epoch, like the real drivers).
const EPOCH_US: u64 = 1_800_000_000_000_000;
/// The first peer joins 1 ms into the run.
const FIRST_JOIN_US: u64 = EPOCH_US + 1_000;

#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    pub peers: usize,
    pub bitrate_bps: u64,
    pub seconds: f64,
    pub stripes: u8,
    /// Fraction of datagrams lost on each downlink.
    pub loss: f64,
    /// Mean length of a loss burst, in datagrams (1 = independent losses).
    pub burst: f64,
    /// Peers leaving, and as many joining, per minute.
    pub churn_per_min: f64,
    /// Fraction of peers that never upload a chunk.
    pub free_riders: f64,
    pub forgers: usize,
    pub seed: u64,
    /// The initial peers join spread evenly over this many seconds.
    pub join_over_s: f64,
    pub seed_upload_bps: u64,
    pub peer_upload_min_bps: u64,
    pub peer_upload_max_bps: u64,
    /// Playout latency of every peer (bl-peer --latency).
    pub latency_ms: u64,
    /// Seconds between keyframes.
    pub gop_s: f64,
    /// Chunks each core keeps for repair.
    pub history: usize,
    /// Addresses the tracker hands each joiner: a uniform sample of the seed and the peers
    /// that have started playing. 0: every joiner bootstraps from the seed alone.
    pub tracker_peers: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            peers: 1000,
            bitrate_bps: 2_000_000,
            seconds: 30.0,
            stripes: 4,
            loss: 0.01,
            burst: 1.0,
            churn_per_min: 0.0,
            free_riders: 0.0,
            forgers: 0,
            seed: 1,
            join_over_s: 5.0,
            seed_upload_bps: 10_000_000,
            peer_upload_min_bps: 2_000_000,
            peer_upload_max_bps: 20_000_000,
            latency_ms: 1500,
            gop_s: 2.0,
            history: 1024,
            tracker_peers: 4,
        }
    }
}

/// p50/p99/max of a distribution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram) -> Self {
        let ms = |us: u64| (us as f64 / 1000.0 * 10.0).round() / 10.0;
        Percentiles {
            p50: ms(h.quantile(0.50)),
            p99: ms(h.quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// What a run measured: the brief's figures plus the model's own counts.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub config: SimConfig,
    pub chunks_produced: u64,
    pub stream_bytes: u64,
    /// Peers counted below: present at the end, neither forger nor departed.
    pub peers_measured: usize,
    /// Chunks played ÷ chunks produced since each measured peer's start point, over all.
    pub continuity: f64,
    pub continuity_worst_peer: f64,
    pub peers_below_999: usize,
    pub chunks_skipped: u64,
    /// Bytes the seed sent ÷ bytes of the stream.
    pub source_amplification: f64,
    /// All bytes sent by all nodes ÷ bytes the peers played − 1.
    pub overhead: f64,
    pub latency_ms: Percentiles,
    /// Join → first chunk played.
    pub startup_ms: Percentiles,
    pub peers_never_started: usize,
    pub joins: u64,
    pub departures: u64,
    /// Forgers banned, summed over the nodes that banned them.
    pub bans: u64,
    pub forged_chunks_sent: u64,
    pub forged_chunks_played: u64,
    pub datagrams_sent: u64,
    pub datagrams_lost: u64,
    pub datagrams_queue_dropped: u64,
    /// Time datagrams waited in their sender's uplink queue.
    pub uplink_queue_ms: Percentiles,
    pub chunks_withheld_by_free_riders: u64,
    pub signatures_checked: u64,
    pub signature_checks_saved: u64,
    pub events: u64,
    /// Peers' counters summed (duplicates, late chunks, repairs refused, …).
    pub peer_counters: Counters,
    /// Bytes and datagrams every node sent, by message kind.
    pub sent_by_kind: BTreeMap<&'static str, Traffic>,
    /// What the seed alone sent, by message kind.
    pub seed_sent_by_kind: BTreeMap<&'static str, Traffic>,
    /// Largest history / missing / playout buffer seen at any node.
    pub max_buffered: [usize; 3],
    /// Share of (peer, stripe) pairs without a parent, sampled every second once the joins
    /// are over: those stripes arrive by repair only.
    pub stripes_without_parent: f64,
    /// Hops from the seed in each peer's own stripe, over the same samples: latency grows
    /// with it.
    pub tree_depth: Depths,
}

/// Tree depth figures: percentiles over (peer, sample) pairs of attached members, and the
/// share not attached to their stripe's tree.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Depths {
    pub p50: u8,
    pub p99: u8,
    pub max: u8,
    pub detached: f64,
}

impl Depths {
    fn of(counts: &[u64; 256]) -> Self {
        let attached: u64 = counts[..255].iter().sum();
        let quantile = |q: f64| {
            let target = (attached as f64 * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (depth, n) in counts[..255].iter().enumerate() {
                seen += n;
                if seen >= target {
                    return depth as u8;
                }
            }
            0
        };
        let max = counts[..255].iter().rposition(|&n| n > 0).unwrap_or(0) as u8;
        let all = attached + counts[255];
        Depths {
            p50: quantile(0.5),
            p99: quantile(0.99),
            max,
            detached: (counts[255] as f64 / all.max(1) as f64 * 1e4).round() / 1e4,
        }
    }
}

/// An invariant that failed; `seed` reproduces it.
#[derive(Debug, Clone)]
pub struct Violation {
    pub at_s: f64,
    pub seed: u64,
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invariant failed at t={:.3}s with seed {}: {}",
            self.at_s, self.seed, self.what
        )
    }
}

/// How the run is going, sampled once a virtual second: for the CLI's progress line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pulse {
    /// Virtual seconds done.
    pub t_s: f64,
    pub events: u64,
    /// Chunks the live peers know exist but lack, summed: grows when the swarm starves.
    pub chunks_missing: usize,
    /// Share of (peer, stripe) pairs without a parent in the last sample.
    pub stripes_without_parent: f64,
}

pub type Progress<'a> = &'a mut dyn FnMut(&Pulse);

/// splitmix64: derives independent seeds and draws for the model.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn addr_of(id: u32) -> SocketAddr {
    let [_, a, b, c] = id.to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, a, b, c), 7000))
}

fn id_of(addr: SocketAddr) -> Option<u32> {
    match addr {
        SocketAddr::V4(v4) if v4.port() == 7000 && v4.ip().octets()[0] == 10 => {
            let [_, a, b, c] = v4.ip().octets();
            Some(u32::from_be_bytes([0, a, b, c]))
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Seed,
    Honest,
    FreeRider,
    Forger,
}

/// The nodes, by id, kept in two lanes by the parity of their id: a node never changes
/// lane, so each lane's cores touch only their own signature memo and copies of the chunks
/// (two threads bouncing one lock and one reference count per chunk between their caches:
/// lanes made 10,000 peers ~1.1x faster), routes what they send and queues it in their own
/// outboxes ([`Lane`]); the lanes stay balanced as peers join.
#[derive(Default)]
struct Nodes {
    lanes: [Vec<SimNode>; 2],
}

/// The lane of node `id`, and its place there.
fn lane_of(id: u32) -> (usize, usize) {
    ((id % 2) as usize, (id / 2) as usize)
}

impl Nodes {
    fn len(&self) -> usize {
        self.lanes[0].len() + self.lanes[1].len()
    }

    fn push(&mut self, node: SimNode) {
        let (lane, _) = lane_of(self.len() as u32);
        self.lanes[lane].push(node);
    }

    fn get(&self, id: usize) -> Option<&SimNode> {
        let (lane, at) = lane_of(u32::try_from(id).ok()?);
        self.lanes[lane].get(at)
    }

    fn get_mut(&mut self, id: usize) -> Option<&mut SimNode> {
        let (lane, at) = lane_of(u32::try_from(id).ok()?);
        self.lanes[lane].get_mut(at)
    }

    /// In id order.
    fn iter(&self) -> impl Iterator<Item = &SimNode> {
        (0..self.len()).filter_map(|id| self.get(id))
    }
}

impl std::ops::Index<usize> for Nodes {
    type Output = SimNode;
    fn index(&self, id: usize) -> &SimNode {
        let (lane, at) = lane_of(id as u32);
        &self.lanes[lane][at]
    }
}

impl std::ops::IndexMut<usize> for Nodes {
    fn index_mut(&mut self, id: usize) -> &mut SimNode {
        let (lane, at) = lane_of(id as u32);
        &mut self.lanes[lane][at]
    }
}

/// A node as the threads see it: its core, its own ends of the network model, and what it
/// played. Everything an event for this node touches is here (or read-only in [`World`]), so
/// the two threads never write the same memory.
struct SimNode {
    core: Node,
    /// The earliest Wake event queued for this node.
    wake_at: Option<u64>,
    alive: bool,
    finished: bool,
    /// When its uplink is next free (first-come first-served at `upload_bps`).
    uplink_free_at: u64,
    downlink: Downlink,
    playback: Playback,
}

/// What never changes about a node once it joined, read by both threads while cores run.
/// Dense (~32 bytes a node): routing reads the receiver's place for every datagram.
struct Place {
    kind: Kind,
    x: f32,
    y: f32,
    access_us: u64,
    upload_bps: u64,
}

/// A receiver's downlink loss: Gilbert–Elliott with mean loss `loss` and mean burst `burst`,
/// drawn from the receiver's own randomness as datagrams arrive, so each thread draws only
/// for its own nodes and the outcome does not depend on how the threads interleave.
struct Downlink {
    in_burst: bool,
    rng: Rng,
}

impl Downlink {
    fn lost(&mut self, loss: f64, burst: f64) -> bool {
        let loss = loss.clamp(0.0, 0.99);
        if loss == 0.0 {
            return false;
        }
        let leave_burst = 1.0 / burst.max(1.0);
        let enter_burst = loss * leave_burst / (1.0 - loss);
        let draw = self.rng.unit();
        self.in_burst = if self.in_burst {
            draw >= leave_burst
        } else {
            draw < enter_burst
        };
        self.in_burst
    }
}

/// What a node played, for the figures.
struct Playback {
    joined_at: u64,
    first_play_at: Option<u64>,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    played: u64,
    left: bool,
}

/// A datagram in flight. The seed's chunks travel by seq and the receiver takes its own
/// lane's copy: no reference count is shared between the threads.
enum Payload {
    Authentic(u64),
    Message(Message),
}

enum What {
    Deliver {
        to: u32,
        from: u32,
        payload: Payload,
        len: usize,
    },
    Wake {
        node: u32,
    },
    Produce,
    Join,
    Churn,
    Check,
}

struct Ev {
    at: u64,
    what: What,
}

/// The model as the threads read it while cores run.
struct World<'a> {
    now: u64,
    seed: u64,
    loss: f64,
    burst: f64,
    places: &'a [Place],
    /// The seed's chunks, one copy per lane.
    authentic: &'a [Vec<Arc<Chunk>>; 2],
}

impl<'a> World<'a> {
    fn new(
        cfg: &SimConfig,
        now: u64,
        places: &'a [Place],
        authentic: &'a [Vec<Arc<Chunk>>; 2],
    ) -> World<'a> {
        World {
            now,
            seed: cfg.seed,
            loss: cfg.loss,
            burst: cfg.burst,
            places,
            authentic,
        }
    }

    fn propagation_us(&self, a: u32, b: u32) -> u64 {
        match (self.places.get(a as usize), self.places.get(b as usize)) {
            (Some(na), Some(nb)) => {
                let dx = f64::from(na.x - nb.x);
                let dy = f64::from(na.y - nb.y);
                na.access_us + nb.access_us + ((dx * dx + dy * dy).sqrt() * 100_000.0) as u64
            }
            _ => 0,
        }
    }

    fn violation(&self, what: String) -> Violation {
        Violation {
            at_s: (self.now - EPOCH_US) as f64 / 1e6,
            seed: self.seed,
            what,
        }
    }
}

/// Counts one lane's nodes add to as they send and play; summed when the run is measured.
#[derive(Default)]
struct Tally {
    datagrams_sent: u64,
    datagrams_lost: u64,
    queue_dropped: u64,
    withheld: u64,
    forged_sent: u64,
    forged_played: u64,
    /// How long datagrams waited at their sender's uplink.
    queue_delay: Histogram,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.datagrams_sent += o.datagrams_sent;
        self.datagrams_lost += o.datagrams_lost;
        self.queue_dropped += o.queue_dropped;
        self.withheld += o.withheld;
        self.forged_sent += o.forged_sent;
        self.forged_played += o.forged_played;
        self.queue_delay.merge(&o.queue_delay);
    }
}

/// What one lane's cores made happen: the events they queued (in the lane's own outboxes,
/// one per lane they are for, so a thread writes only its own lane's) and the peers that
/// started playing, which [`Sim::apply`] hands the tracker lane by lane. Orders depend on
/// lanes, not threads, so one thread and two give the same run.
struct Lane {
    /// Events its cores queued, by the lane they are for.
    outbox: [Calendar<Ev>; 2],
    /// Peers that played their first chunk, with their startup delay.
    started: Vec<(u32, u64)>,
    violation: Option<Violation>,
    tally: Tally,
}

impl Lane {
    fn new() -> Lane {
        Lane {
            // 8 s of 1 ms buckets: every delivery and nearly every timer.
            outbox: [0, 1].map(|_| Calendar::new(8192, EPOCH_US / BUCKET_US)),
            started: Vec::new(),
            violation: None,
            tally: Tally::default(),
        }
    }

    fn queue(&mut self, ev: Ev, to: u32) {
        self.outbox[lane_of(to).0].push(ev.at.div_ceil(BUCKET_US), ev);
    }

    fn fail(&mut self, world: &World, what: String) {
        if self.violation.is_none() {
            self.violation = Some(world.violation(what));
        }
    }
}

/// A bucket's events for one node (deliveries and wake-ups) are handled in parallel when
/// there are at least this many between two model events: fewer are not worth a thread.
const PARALLEL_MIN_EVENTS: usize = 512;

/// Handling a delivery or wake-up: the datagram may be lost on the receiver's downlink,
/// the core runs, and what it sends is routed. It touches nothing but `node` and its `lane`,
/// so the events of different lanes can run on different threads.
fn step(node: &mut SimNode, id: u32, ev: Ev, world: &World, lane: &mut Lane) {
    if !node.alive {
        return;
    }
    match ev.what {
        What::Deliver {
            from, payload, len, ..
        } => {
            if node.downlink.lost(world.loss, world.burst) {
                lane.tally.datagrams_lost += 1;
                return;
            }
            let message = match payload {
                Payload::Message(message) => message,
                Payload::Authentic(seq) => match world.authentic[lane_of(id).0].get(seq as usize) {
                    Some(chunk) => Message::Chunk(chunk.clone()),
                    None => return,
                },
            };
            node.core
                .handle_message(world.now, addr_of(from), message, len)
        }
        What::Wake { .. } => {
            if node.wake_at != Some(ev.at) {
                return;
            }
            node.wake_at = None;
            if node.core.poll_timeout() <= world.now {
                node.core.handle_timeout(world.now);
            }
        }
        What::Produce | What::Join | What::Churn | What::Check => return,
    }
    collect(node, id, world, lane);
}

/// Routes a core's transmits, acts on its events and queues its next wake-up.
fn collect(node: &mut SimNode, id: u32, world: &World, lane: &mut Lane) {
    while let Some(t) = node.core.poll_transmit() {
        route(node, id, t, world, lane);
    }
    while let Some(event) = node.core.poll_event() {
        match event {
            Event::Play(chunk) => play(node, id, &chunk, world, lane),
            Event::Warning(_) => {}
            Event::Finished => node.finished = true,
        }
    }
    if node.alive && !node.finished {
        let due = node.core.poll_timeout().max(world.now + 1);
        if node.wake_at.is_none_or(|w| due < w) {
            let at = due.div_ceil(BUCKET_US) * BUCKET_US;
            node.wake_at = Some(at);
            lane.queue(
                Ev {
                    at,
                    what: What::Wake { node: id },
                },
                id,
            );
        }
    }
}

/// A datagram from `sender` (node `from`) onto the network: through its uplink queue (or
/// dropped there), delayed by the distance, delivered as an event. Loss is drawn on arrival.
fn route(sender: &mut SimNode, from: u32, t: Transmit, world: &World, lane: &mut Lane) {
    lane.tally.datagrams_sent += 1;
    let Some(to) = id_of(t.to).filter(|&to| (to as usize) < world.places.len()) else {
        return;
    };
    let (mut payload, len) = (Payload::Message(t.message), t.len);
    let Some(place) = world.places.get(from as usize) else {
        return;
    };
    if let Payload::Message(Message::Chunk(chunk)) = &payload {
        match place.kind {
            Kind::FreeRider => {
                lane.tally.withheld += 1;
                return;
            }
            Kind::Forger => {
                let mut forged = (**chunk).clone();
                if let Some(b) = forged.payload.get_mut(PACKET_SIZE / 2) {
                    *b ^= 0x5a;
                }
                payload = Payload::Message(Message::Chunk(Arc::new(forged)));
                lane.tally.forged_sent += 1;
            }
            Kind::Seed | Kind::Honest => {
                let seq = chunk.seq;
                if world.authentic[lane_of(from).0]
                    .get(seq as usize)
                    .is_some_and(|c| Arc::ptr_eq(c, chunk))
                {
                    payload = Payload::Authentic(seq);
                }
            }
        }
    }
    let now = world.now;
    let wire_bits = (len as u64 + HEADER_BYTES) * 8;
    let start = sender.uplink_free_at.max(now);
    let departs = start + wire_bits * 1_000_000 / place.upload_bps.max(1);
    if departs - now > UPLOAD_QUEUE_US {
        lane.tally.queue_dropped += 1;
        return;
    }
    sender.uplink_free_at = departs;
    lane.tally.queue_delay.record(start - now);
    lane.queue(
        Ev {
            at: departs + world.propagation_us(from, to),
            what: What::Deliver {
                to,
                from,
                payload,
                len,
            },
        },
        to,
    );
}

/// Node `id` played `chunk`: it must be the seed's, and come after what it played before.
fn play(node: &mut SimNode, id: u32, chunk: &Arc<Chunk>, world: &World, lane: &mut Lane) {
    let seq = chunk.seq;
    let authentic = world.authentic[lane_of(id).0]
        .get(seq as usize)
        .is_some_and(|a| Arc::ptr_eq(a, chunk) || **a == **chunk);
    if !authentic {
        lane.tally.forged_played += 1;
        lane.fail(
            world,
            format!(
                "{} played chunk {seq}, which the seed did not produce",
                addr_of(id)
            ),
        );
    }
    let p = &mut node.playback;
    if let Some(last) = p.last_seq.filter(|&last| seq <= last) {
        lane.fail(
            world,
            format!(
                "{} played chunk {seq} after chunk {last}: output out of order",
                addr_of(id)
            ),
        );
        return;
    }
    p.last_seq = Some(seq);
    p.first_seq.get_or_insert(seq);
    p.played += 1;
    if p.first_play_at.is_none() {
        p.first_play_at = Some(world.now);
        lane.started.push((id, world.now - p.joined_at));
    }
}

/// The node a delivery or wake-up is for; `None` for the model's own events.
fn target(ev: &Ev) -> Option<u32> {
    match ev.what {
        What::Deliver { to, .. } => Some(to),
        What::Wake { node } => Some(node),
        What::Produce | What::Join | What::Churn | What::Check => None,
    }
}

pub struct Sim {
    cfg: SimConfig,
    rng: Rng,
    key: StreamKey,
    /// One signature memo per lane.
    memos: [Arc<Mutex<VerifiedChunks>>; 2],
    nodes: Nodes,
    /// By node id.
    places: Vec<Place>,
    /// The model's own events (node events are queued in the lanes).
    model_queue: Calendar<Ev>,
    now: u64,
    /// The chunks the seed produced, by seq: one copy per lane ([`Nodes`]).
    authentic: [Vec<Arc<Chunk>>; 2],
    chunk_interval_us: f64,
    chunks_total: u64,
    stream_end_at: u64,
    joins_pending: usize,
    /// What the tracker knows: the seed and every peer that started playing (the departed
    /// are struck off when drawn).
    tracker: Vec<u32>,
    // counts (and those in the lanes' tallies)
    events: u64,
    departures: u64,
    joins: u64,
    forgers_added: usize,
    max_buffered: [usize; 3],
    /// (pairs without a parent, pairs) over the samples.
    orphan_samples: (u64, u64),
    /// Peers sampled at each tree depth (255: detached).
    depth_samples: [u64; 256],
    latency: Histogram,
    startup: Histogram,
    violation: Option<Violation>,
    pulse: Pulse,
    /// Threads that run cores (1 or 2), and the fewest events worth splitting.
    threads: usize,
    parallel_min: usize,
    lanes: [Lane; 2],
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let mut rng = Rng(cfg.seed);
        let mut key_seed = [0u8; 32];
        for b in key_seed.chunks_mut(8) {
            b.copy_from_slice(&rng.next().to_le_bytes());
        }
        let key = StreamKey::from_seed(key_seed);
        let chunk_bytes = (MAX_PAYLOAD * 8) as f64;
        let chunk_interval_us = chunk_bytes / cfg.bitrate_bps.max(1) as f64 * 1e6;
        let chunks_total = (cfg.seconds * 1e6 / chunk_interval_us).floor().max(1.0) as u64;
        let mut sim = Sim {
            memos: [0, 1]
                .map(|_| Arc::new(Mutex::new(VerifiedChunks::new(4 * cfg.history.max(64))))),
            key,
            nodes: Nodes::default(),
            places: Vec::new(),
            model_queue: Calendar::new(8192, EPOCH_US / BUCKET_US),
            now: EPOCH_US,
            authentic: [Vec::new(), Vec::new()],
            chunk_interval_us,
            chunks_total,
            stream_end_at: EPOCH_US + (cfg.seconds * 1e6) as u64,
            joins_pending: cfg.peers,
            tracker: vec![0],
            events: 0,
            departures: 0,
            joins: 0,
            forgers_added: 0,
            max_buffered: [0; 3],
            orphan_samples: (0, 0),
            depth_samples: [0; 256],
            latency: Histogram::default(),
            startup: Histogram::default(),
            violation: None,
            pulse: Pulse::default(),
            threads: 1,
            parallel_min: PARALLEL_MIN_EVENTS,
            lanes: [Lane::new(), Lane::new()],
            rng,
            cfg,
        };
        sim.add_node(Kind::Seed);
        sim.push(EPOCH_US + 200_000, What::Produce);
        if sim.cfg.peers > 0 {
            sim.push(FIRST_JOIN_US, What::Join);
        }
        if sim.cfg.churn_per_min > 0.0 {
            let first = EPOCH_US + (sim.cfg.join_over_s * 1e6) as u64 + 1_000_000;
            sim.push(first, What::Churn);
        }
        sim.push(EPOCH_US + 1_000_000, What::Check);
        sim
    }

    /// Runs cores on up to two threads. The outcome is the same bit for bit: only the
    /// wall time changes.
    pub fn with_threads(mut self, threads: usize) -> Sim {
        self.threads = threads.clamp(1, 2);
        self
    }

    fn push(&mut self, at: u64, what: What) {
        self.model_queue
            .push(at.div_ceil(BUCKET_US), Ev { at, what });
    }

    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                at_s: (self.now - EPOCH_US) as f64 / 1e6,
                seed: self.cfg.seed,
                what,
            });
        }
    }

    fn add_node(&mut self, kind: Kind) -> u32 {
        let id = self.nodes.len() as u32;
        let role = if kind == Kind::Seed {
            Role::Seed
        } else {
            Role::Peer
        };
        let upload_bps = if kind == Kind::Seed {
            self.cfg.seed_upload_bps
        } else {
            // Log-uniform: many modest uplinks, a few fat ones.
            let lo = (self.cfg.peer_upload_min_bps.max(1) as f64).ln();
            let hi = (self.cfg.peer_upload_max_bps.max(1) as f64).ln().max(lo);
            (lo + (hi - lo) * self.rng.unit()).exp() as u64
        };
        let mut cfg = Config::new(role, self.key.id());
        cfg.stripes = self.cfg.stripes;
        cfg.rng_seed = self.rng.next();
        cfg.latency_us = self.cfg.latency_ms * 1000;
        cfg.history = self.cfg.history;
        cfg.verified = Some(self.memos[lane_of(id).0].clone());
        let stream_bps = self.cfg.bitrate_bps.max(1) as f64;
        match kind {
            Kind::Seed => {
                cfg.max_upload = ((upload_bps as f64 / stream_bps) * 0.8).clamp(1.0, 1.25);
            }
            // A peer offers 60 % of its uplink (bl-peer --max-upload), at most 2 copies: the
            // rest is headroom for repairs, Haves and the user's other traffic.
            Kind::Honest | Kind::Forger => {
                cfg.max_upload = ((upload_bps as f64 / stream_bps) * 0.6).min(4.0);
                cfg.bootstrap = self.tracker_answer();
            }
            Kind::FreeRider => {
                cfg.max_upload = 0.0;
                cfg.bootstrap = self.tracker_answer();
            }
        }
        let mut core = Node::new(cfg, self.now);
        core.set_local_addr(addr_of(id));
        self.places.push(Place {
            kind,
            x: self.rng.unit() as f32,
            y: self.rng.unit() as f32,
            access_us: 1_000 + self.rng.below(9_000) as u64,
            upload_bps,
        });
        let node = SimNode {
            core,
            wake_at: None,
            alive: true,
            finished: false,
            uplink_free_at: 0,
            downlink: Downlink {
                in_burst: false,
                rng: Rng(self.rng.next()),
            },
            playback: Playback {
                joined_at: self.now,
                first_play_at: None,
                first_seq: None,
                last_seq: None,
                played: 0,
                left: false,
            },
        };
        self.nodes.push(node);
        self.drain(id);
        id
    }

    /// A joiner's bootstrap addresses, as a BitTorrent tracker would answer its announce: up
    /// to `tracker_peers` distinct nodes drawn uniformly from those it knows, the seed among
    /// them (so the seed greets only a few in a large swarm).
    fn tracker_answer(&mut self) -> Vec<SocketAddr> {
        if self.cfg.tracker_peers == 0 {
            return vec![addr_of(0)];
        }
        let mut picked: Vec<u32> = Vec::new();
        // Draws are bounded: the departed are struck off, and a repeat is simply not added.
        for _ in 0..4 * self.cfg.tracker_peers {
            if picked.len() >= self.cfg.tracker_peers || self.tracker.is_empty() {
                break;
            }
            let slot = self.rng.below(self.tracker.len());
            let id = self.tracker[slot];
            if !self.nodes[id as usize].alive {
                self.tracker.swap_remove(slot);
            } else if !picked.contains(&id) {
                picked.push(id);
            }
        }
        if picked.is_empty() {
            picked.push(0);
        }
        picked.into_iter().map(addr_of).collect()
    }

    /// Routes what core `id` wants done after the model called it (outside any run of
    /// events), and acts on it.
    fn drain(&mut self, id: u32) {
        let world = World::new(&self.cfg, self.now, &self.places, &self.authentic);
        let lane = &mut self.lanes[lane_of(id).0];
        if let Some(node) = self.nodes.get_mut(id as usize) {
            collect(node, id, &world, lane);
        }
        self.apply();
    }

    /// Acts on what the lanes gathered, lane by lane in the order made: hands the tracker
    /// the peers that started playing, and keeps the first violation.
    fn apply(&mut self) {
        for l in 0..2 {
            let lane = &mut self.lanes[l];
            for (id, startup) in lane.started.drain(..) {
                self.tracker.push(id);
                self.startup.record(startup);
            }
            if self.violation.is_none() {
                self.violation = lane.violation.take();
            }
        }
    }

    fn join(&mut self) {
        let n = self.joins;
        self.joins += 1;
        // Forgers are spread evenly through the initial joins.
        let every = (self.cfg.peers / self.cfg.forgers.max(1)).max(1);
        let forger = self.forgers_added < self.cfg.forgers
            && (n as usize) < self.cfg.peers
            && (n as usize) % every == 1 % every;
        if forger {
            self.forgers_added += 1;
        }
        let kind = if forger {
            Kind::Forger
        } else if self.rng.unit() < self.cfg.free_riders {
            Kind::FreeRider
        } else {
            Kind::Honest
        };
        self.add_node(kind);
    }

    fn churn(&mut self) {
        let alive: Vec<u32> = (1..self.nodes.len() as u32)
            .filter(|&i| self.nodes[i as usize].alive)
            .collect();
        if !alive.is_empty() {
            let victim = alive[self.rng.below(alive.len())];
            let polite = self.rng.unit() < 0.5;
            let node = &mut self.nodes[victim as usize];
            if polite {
                node.core.leave();
            }
            self.drain(victim);
            let node = &mut self.nodes[victim as usize];
            node.alive = false;
            node.playback.left = true;
            self.departures += 1;
        }
        self.join();
    }

    fn check_buffers(&mut self) {
        // Tree figures only while the stream runs: after its end peers finish and leave.
        let joins_over = self.joins_pending == 0 && self.now < self.stream_end_at;
        let mut missing = 0;
        let mut orphans = (0u64, 0u64);
        for id in 0..self.nodes.len() {
            let node = &self.nodes[id];
            if !node.alive {
                continue;
            }
            if joins_over && id > 0 && self.places[id].kind == Kind::Honest && !node.finished {
                let parents = node.core.parents();
                orphans.0 += parents.iter().filter(|p| p.is_none()).count() as u64;
                orphans.1 += parents.len() as u64;
                self.depth_samples[node.core.tree_depth() as usize] += 1;
            }
            let b = node.core.buffered();
            missing += b.missing;
            let cfg = node.core.config();
            self.max_buffered[0] = self.max_buffered[0].max(b.history);
            self.max_buffered[1] = self.max_buffered[1].max(b.missing);
            self.max_buffered[2] = self.max_buffered[2].max(b.playout);
            let bad = if b.history > cfg.history {
                Some(format!("history of {} chunks", b.history))
            } else if b.missing > 2 * cfg.history {
                Some(format!("{} chunks marked missing", b.missing))
            } else if b.missing_span > 2 * cfg.history {
                Some(format!(
                    "a missing set spanning {} seqs ({} entries)",
                    b.missing_span, b.missing
                ))
            } else if b.playout > cfg.history {
                Some(format!("{} chunks waiting in playout", b.playout))
            } else if b.neighbours > cfg.max_neighbours {
                Some(format!("{} neighbours", b.neighbours))
            } else if b.queued > 0 {
                Some(format!("{} undrained transmits/events", b.queued))
            } else {
                None
            };
            if let Some(what) = bad {
                self.fail(format!(
                    "{} holds {what}: unbounded buffer",
                    addr_of(id as u32)
                ));
                return;
            }
        }
        self.orphan_samples.0 += orphans.0;
        self.orphan_samples.1 += orphans.1;
        self.pulse.chunks_missing = missing;
        self.pulse.stripes_without_parent = orphans.0 as f64 / orphans.1.max(1) as f64;
    }

    /// A model event (not a node's delivery or wake-up).
    fn handle(&mut self, ev: Ev) {
        self.events += 1;
        self.now = self.now.max(ev.at);
        let now = self.now;
        match ev.what {
            // Node events go through `run_segment`.
            What::Deliver { .. } | What::Wake { .. } => {}
            What::Produce => {
                let seq = self.authentic[0].len() as u64;
                let gop = (self.cfg.gop_s * 1e6 / self.chunk_interval_us)
                    .round()
                    .max(1.0) as u64;
                let flags = if seq % gop == 0 { FLAG_KEYFRAME } else { 0 };
                let mut payload = vec![0xffu8; MAX_PAYLOAD];
                for (i, packet) in payload.chunks_exact_mut(PACKET_SIZE).enumerate() {
                    packet[0] = 0x47;
                    packet[1..9].copy_from_slice(&(seq * 6 + i as u64).to_le_bytes());
                }
                let chunk = Arc::new(Chunk::sign(&self.key, seq, now, flags, payload));
                self.authentic[0].push(chunk.clone());
                self.authentic[1].push(Arc::new((*chunk).clone()));
                self.nodes[0].core.handle_chunk(now, chunk);
                self.drain(0);
                if seq + 1 < self.chunks_total {
                    let next =
                        EPOCH_US + 200_000 + ((seq + 1) as f64 * self.chunk_interval_us) as u64;
                    self.push(next, What::Produce);
                } else {
                    self.nodes[0].core.handle_input_end(now);
                    self.drain(0);
                }
            }
            What::Join => {
                // Every join due by now, not one per event: at 100,000 peers over 5 s they
                // are 50 µs apart, closer than the 1 ms buckets.
                let spacing = self.cfg.join_over_s * 1e6 / self.cfg.peers.max(1) as f64;
                let due_at = |n: usize| FIRST_JOIN_US + (n as f64 * spacing) as u64;
                loop {
                    self.join();
                    self.joins_pending = self.joins_pending.saturating_sub(1);
                    let joined = self.cfg.peers - self.joins_pending;
                    if self.joins_pending == 0 || due_at(joined) > now {
                        break;
                    }
                }
                if self.joins_pending > 0 {
                    let joined = self.cfg.peers - self.joins_pending;
                    self.push(due_at(joined).max(now + 1), What::Join);
                }
            }
            What::Churn => {
                self.churn();
                let every = (60e6 / self.cfg.churn_per_min) as u64;
                if now + every < self.stream_end_at {
                    self.push(now + every.max(1), What::Churn);
                }
            }
            What::Check => {
                self.check_buffers();
                self.push(now + 1_000_000, What::Check);
            }
        }
    }

    /// The node events of the current bucket: each lane's cores run their own events
    /// (events queued by lane 0 first, then lane 1's), on two threads when there are many.
    /// Each lane queues what its cores send in its own outboxes, so the threads share nothing
    /// they write, and one thread or two give the same run.
    fn run_bucket(&mut self, bucket: u64) -> Result<(), Violation> {
        let mut inbox: [[Vec<Ev>; 2]; 2] = [[0, 1], [0, 1]].map(|froms| froms.map(|_| Vec::new()));
        for (to, lane_inbox) in inbox.iter_mut().enumerate() {
            for (from, events) in lane_inbox.iter_mut().enumerate() {
                *events = self.lanes[from].outbox[to].take(bucket);
            }
        }
        let count: usize = inbox.iter().flatten().map(Vec::len).sum();
        if count > 0 {
            self.events += count as u64;
            let world = World::new(&self.cfg, self.now, &self.places, &self.authentic);
            let [even, odd] = &mut self.nodes.lanes;
            let [even_lane, odd_lane] = &mut self.lanes;
            let [even_inbox, odd_inbox] = &mut inbox;
            let run = |nodes: &mut Vec<SimNode>, lane: &mut Lane, inbox: &mut [Vec<Ev>; 2]| {
                for ev in inbox.iter_mut().flat_map(|events| events.drain(..)) {
                    let Some(id) = target(&ev) else {
                        continue;
                    };
                    if let Some(node) = nodes.get_mut(lane_of(id).1) {
                        step(node, id, ev, &world, lane);
                    }
                }
            };
            if self.threads < 2 || count < self.parallel_min {
                run(even, even_lane, even_inbox);
                run(odd, odd_lane, odd_inbox);
            } else {
                std::thread::scope(|scope| {
                    scope.spawn(|| run(odd, odd_lane, odd_inbox));
                    run(even, even_lane, even_inbox);
                });
            }
        }
        for (to, lane_inbox) in inbox.into_iter().enumerate() {
            for (from, events) in lane_inbox.into_iter().enumerate() {
                self.lanes[from].outbox[to].recycle(events);
            }
        }
        self.apply();
        match self.violation.take() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    /// Node events still queued, and the model's.
    fn queued(&self) -> usize {
        self.model_queue.len()
            + self
                .lanes
                .iter()
                .flat_map(|lane| lane.outbox.iter())
                .map(Calendar::len)
                .sum::<usize>()
    }

    /// The first bucket that holds anything.
    fn next_bucket(&self) -> Option<u64> {
        self.lanes
            .iter()
            .flat_map(|lane| lane.outbox.iter())
            .chain([&self.model_queue])
            .filter_map(Calendar::next_bucket)
            .min()
    }

    /// Runs the stream to its end, plus the playout latency and a little, and measures.
    pub fn run(mut self, progress: Progress) -> Result<Outcome, Violation> {
        let until = self.stream_end_at + self.cfg.latency_ms * 1000 + 3_000_000;
        let mut next_report = EPOCH_US + 1_000_000;
        while self.queued() > 0 {
            // Everything in a bucket happens at its end: 1 ms resolution, no sorting. The
            // model's events come first, then the nodes' in the order their lanes queued
            // them: the same order for the same seed.
            let Some(bucket) = self.next_bucket() else {
                break;
            };
            let bucket_time = bucket * BUCKET_US;
            if bucket_time > until {
                break;
            }
            self.now = self.now.max(bucket_time);
            let mut model = self.model_queue.take(bucket);
            for ev in model.drain(..) {
                self.handle(ev);
                if let Some(v) = self.violation.take() {
                    return Err(v);
                }
            }
            self.model_queue.recycle(model);
            self.run_bucket(bucket)?;
            if self.now >= next_report {
                self.pulse.t_s = (self.now - EPOCH_US) as f64 / 1e6;
                self.pulse.events = self.events;
                progress(&self.pulse);
                next_report += 1_000_000;
            }
        }
        self.check_buffers();
        if let Some(v) = self.violation.take() {
            return Err(v);
        }
        Ok(self.measure())
    }

    fn measure(mut self) -> Outcome {
        let produced = self.authentic[0].len() as u64;
        let stream_bytes: u64 = self.authentic[0]
            .iter()
            .map(|c| c.payload.len() as u64)
            .sum();
        let last = produced.saturating_sub(1);
        let mut played_sum = 0u64;
        let mut expected_sum = 0u64;
        let mut worst = 1.0f64;
        let mut below = 0;
        let mut measured = 0;
        let mut never_started = 0;
        let mut skipped = 0;
        let mut bans = 0;
        let mut total_sent = 0;
        let mut played_bytes = 0u64;
        let mut seed_sent = 0;
        let mut peer_counters = Counters::default();
        let mut sent_by_kind = TrafficByKind::default();
        let mut seed_sent_by_kind = TrafficByKind::default();
        let mut tally = Tally::default();
        for lane in &self.lanes {
            tally.add(&lane.tally);
        }
        for (id, (node, place)) in self.nodes.iter().zip(&self.places).enumerate() {
            let playback = &node.playback;
            let stats = node.core.stats();
            total_sent += stats.bytes_sent();
            bans += stats.counters.peers_banned;
            sent_by_kind.add(&stats.sent);
            if id == 0 {
                seed_sent = stats.bytes_sent();
                seed_sent_by_kind = stats.sent;
                continue;
            }
            peer_counters.add(&stats.counters);
            if place.kind != Kind::Forger {
                self.latency.merge(&stats.latency_us);
                played_bytes += playback.played * MAX_PAYLOAD as u64;
            }
            if playback.left || place.kind == Kind::Forger {
                continue;
            }
            measured += 1;
            skipped += stats.counters.chunks_skipped;
            let start = match playback.first_seq {
                Some(s) => s,
                None => {
                    never_started += 1;
                    let since = playback.joined_at.saturating_sub(EPOCH_US + 200_000);
                    ((since as f64 / self.chunk_interval_us) as u64).min(last)
                }
            };
            let expected = last.saturating_sub(start) + 1;
            played_sum += playback.played;
            expected_sum += expected;
            let c = playback.played as f64 / expected as f64;
            worst = worst.min(c);
            if c < 0.999 {
                below += 1;
            }
        }
        let (checked, remembered) = self
            .memos
            .iter()
            .filter_map(|memo| memo.lock().ok().map(|m| (m.checked, m.remembered)))
            .fold((0, 0), |(c, r), (mc, mr)| (c + mc, r + mr));
        let round = |x: f64, places: i32| {
            let f = 10f64.powi(places);
            (x * f).round() / f
        };
        Outcome {
            chunks_produced: produced,
            stream_bytes,
            peers_measured: measured,
            continuity: round(played_sum as f64 / expected_sum.max(1) as f64, 6),
            continuity_worst_peer: round(worst, 6),
            peers_below_999: below,
            chunks_skipped: skipped,
            source_amplification: round(seed_sent as f64 / stream_bytes.max(1) as f64, 4),
            overhead: round(total_sent as f64 / played_bytes.max(1) as f64 - 1.0, 4),
            latency_ms: Percentiles::of(&self.latency),
            startup_ms: Percentiles::of(&self.startup),
            tree_depth: Depths::of(&self.depth_samples),
            peers_never_started: never_started,
            joins: self.joins,
            departures: self.departures,
            bans,
            forged_chunks_sent: tally.forged_sent,
            forged_chunks_played: tally.forged_played,
            datagrams_sent: tally.datagrams_sent,
            datagrams_lost: tally.datagrams_lost,
            datagrams_queue_dropped: tally.queue_dropped,
            uplink_queue_ms: Percentiles::of(&tally.queue_delay),
            chunks_withheld_by_free_riders: tally.withheld,
            signatures_checked: checked,
            signature_checks_saved: remembered,
            events: self.events,
            peer_counters,
            sent_by_kind: sent_by_kind.to_map(),
            seed_sent_by_kind: seed_sent_by_kind.to_map(),
            max_buffered: self.max_buffered,
            stripes_without_parent: round(
                self.orphan_samples.0 as f64 / self.orphan_samples.1.max(1) as f64,
                4,
            ),
            config: self.cfg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for id in [0u32, 1, 255, 256, 65_535, 100_000, 0x00ff_ffff] {
            assert_eq!(id_of(addr_of(id)), Some(id));
        }
        assert_eq!(id_of("127.0.0.1:7000".parse().unwrap()), None);
    }

    #[test]
    fn two_threads_give_the_same_run_as_one() {
        let cfg = SimConfig {
            peers: 150,
            seconds: 4.0,
            join_over_s: 1.0,
            churn_per_min: 60.0,
            forgers: 2,
            free_riders: 0.1,
            seed: 9,
            ..SimConfig::default()
        };
        let json = |threads: usize| {
            let mut sim = Sim::new(cfg.clone()).with_threads(threads);
            // Split every run of node events, however short, between the threads.
            sim.parallel_min = 1;
            let outcome = sim.run(&mut |_| {}).map_err(|v| v.to_string());
            serde_json::to_string(&outcome.map(|o| serde_json::to_value(o).ok()))
                .unwrap_or_default()
        };
        let one = json(1);
        assert!(one.contains("continuity"), "{one}");
        assert_eq!(one, json(2));
    }

    #[test]
    fn loss_model_hits_its_mean() {
        for burst in [1.0, 4.0] {
            let cfg = SimConfig {
                peers: 0,
                loss: 0.05,
                burst,
                ..SimConfig::default()
            };
            let mut downlink = Downlink {
                in_burst: false,
                rng: Rng(cfg.seed),
            };
            let lost = (0..200_000)
                .filter(|_| downlink.lost(cfg.loss, cfg.burst))
                .count();
            let rate = lost as f64 / 200_000.0;
            assert!((rate - 0.05).abs() < 0.006, "burst {burst}: {rate}");
        }
    }
}
