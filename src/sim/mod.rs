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

mod adversary;
pub mod calendar;
mod check;
mod lanes;
mod model;
mod outcome;
mod workload;

use crate::core::node::{Config, Event, Node, Output, Transmit};
use crate::core::stats::{Counters, Histogram, Traffic, TrafficByKind};
use crate::media::chunk::{Chunk, FLAG_KEYFRAME, MAX_PAYLOAD};
use crate::media::identity::StreamKey;
use crate::media::ts::PACKET_SIZE;
use crate::media::verified::VerifiedChunks;
use crate::proto::wire::{self, Message, PeerInfo, Role};
use adversary::Adversaries;
use calendar::Calendar;
pub use check::Violation;
use lanes::*;
pub use model::SETTLED_AFTER_US;
pub use model::UPLOAD_QUEUE_US;
use model::*;
pub use outcome::{Depths, Outcome, Percentiles, Progress, Pulse};

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
    /// Fraction of peers that lie (sim::adversary): Haves, start positions, eclipse lists,
    /// withheld pushes, replayed old chunks and forged end records.
    pub liars: f64,
    pub forgers: usize,
    /// The first this many peers to join withhold (sim::adversary): they forward nothing
    /// but what the seed asks of them, and announce depth 1.
    pub withholders: usize,
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
    /// When the broadcast's first chunk is made, seconds into the run (the peers begin to
    /// join at 0): past `join_over_s`, every peer waits for a broadcast that has not begun,
    /// as bl-peers started before the encoder do.
    pub stream_at_s: f64,
    /// Chunks each core keeps for repair: 1,024, below the CLI's 4,096 (see `Tuning`: memory
    /// at 100,000 cores).
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
            liars: 0.0,
            forgers: 0,
            withholders: 0,
            seed: 1,
            join_over_s: 5.0,
            seed_upload_bps: 10_000_000,
            peer_upload_min_bps: 2_000_000,
            peer_upload_max_bps: 20_000_000,
            latency_ms: 1500,
            gop_s: 2.0,
            stream_at_s: 0.2,
            history: 1024,
            tracker_peers: 4,
        }
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
    adversaries: Adversaries,
    /// The model's own events (node events are queued in the lanes).
    model_queue: Calendar<Ev>,
    now: u64,
    /// The chunks the seed produced, by seq: one copy per lane ([`Nodes`]).
    authentic: [Vec<Arc<Chunk>>; 2],
    chunk_interval_us: f64,
    chunks_total: u64,
    /// When the first chunk is made, and when the churn and the checks stop.
    stream_start_at: u64,
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
    /// The seed's root slots in use, every second while the stream runs: (sum, samples, max).
    seed_children_samples: (u64, u64, u8),
    /// Peers sampled at each tree depth (255: detached).
    depth_samples: [u64; 256],
    /// (detached, all) over the samples of peers that joined [`SETTLED_AFTER_US`] before.
    settled_detached: (u64, u64),
    /// Over the same samples: (honest peers' neighbours that are liars, their neighbours,
    /// honest peers with more liars than honest nodes among their neighbours, honest peers).
    eclipse_samples: (u64, u64, u64, u64),
    /// Over the same samples, one-way delays from honest peers to their stripe parents,
    /// their neighbours, and any peer.
    delay_samples: outcome::LinkDelaySums,
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
        let stream_start_at = EPOCH_US + (cfg.stream_at_s * 1e6) as u64;
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
            stream_start_at,
            // The stream's last chunk is made 0.2 s before this (the first, at the default
            // start, 0.2 s after the first join).
            stream_end_at: stream_start_at - 200_000 + (cfg.seconds * 1e6) as u64,
            joins_pending: cfg.peers,
            tracker: vec![0],
            adversaries: Adversaries::new(),
            events: 0,
            departures: 0,
            joins: 0,
            forgers_added: 0,
            max_buffered: [0; 3],
            orphan_samples: (0, 0),
            seed_children_samples: (0, 0, 0),
            depth_samples: [0; 256],
            settled_detached: (0, 0),
            eclipse_samples: (0, 0, 0, 0),
            delay_samples: outcome::LinkDelaySums::default(),
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
        sim.push(stream_start_at, What::Produce);
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

    /// Routes what core `id` wants done after the model called it (outside any run of
    /// events), and acts on it.
    fn drain(&mut self, id: u32) {
        let world = World::new(
            &self.cfg,
            self.now,
            &self.places,
            &self.authentic,
            &self.adversaries,
        );
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
                        self.stream_start_at + ((seq + 1) as f64 * self.chunk_interval_us) as u64;
                    self.push(next, What::Produce);
                } else {
                    // As bl-chunk does at the end of its input: the signed end record.
                    let end = Arc::new(Chunk::end_record(&self.key, seq + 1, now));
                    self.authentic[0].push(end.clone());
                    self.authentic[1].push(Arc::new((*end).clone()));
                    self.nodes[0].core.handle_chunk(now, end);
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
            let world = World::new(
                &self.cfg,
                self.now,
                &self.places,
                &self.authentic,
                &self.adversaries,
            );
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
