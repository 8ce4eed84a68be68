//! Finding a swarm by its stream id alone, through BitTorrent's own infrastructure: BEP 15
//! UDP trackers ([`tracker`]) and the Mainline DHT (BEP 5, through the `mainline` crate).
//!
//! Both key a swarm by a 20-byte infohash; a stream's is [`info_hash`]. Discovery runs on a
//! thread of its own, beside the node's loop, and hands it the addresses it finds; the node
//! greets them like addresses from peer exchange (unverified: a tracker can lie, and a Hello
//! answered with a Welcome for our stream is the only proof).

pub mod tracker;

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aquatic_udp_protocol::AnnounceEvent;

use crate::cmd::cli;
use crate::media::identity::StreamId;
use tracker::{Tracker, TrackerUrl};

/// Where to look.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryOptions {
    pub trackers: Vec<TrackerUrl>,
    /// Use the DHT, bootstrapping from these `host:port`s (empty: the public routers).
    pub dht: Option<Vec<String>>,
}

impl DiscoveryOptions {
    pub fn is_empty(&self) -> bool {
        self.trackers.is_empty() && self.dht.is_none()
    }
}

/// The infohash a stream is announced under: the first 20 bytes of BLAKE3 in key-derivation
/// mode, context "bl stream infohash v1", over the stream's 32-byte public key. Anyone with
/// the stream id can compute it; it collides with no torrent's SHA-1 infohash by design.
pub fn info_hash(stream: &StreamId) -> [u8; 20] {
    let full = blake3::derive_key("bl stream infohash v1", &stream.0);
    let mut out = [0u8; 20];
    out.copy_from_slice(&full[..20]);
    out
}

/// While a node has no neighbours it asks again this often (a joiner waiting for the seed to
/// announce, a swarm that vanished); otherwise at the tracker's interval, within these bounds.
const LONELY_RETRY: Duration = Duration::from_secs(5);
const MIN_INTERVAL: Duration = Duration::from_secs(60);
const MAX_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// DHT announces expire after about 30 minutes on most nodes.
const DHT_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// A tracker that did not answer is asked again after this long.
const TRACKER_RETRY: Duration = Duration::from_secs(10);

/// The running discovery thread.
pub struct Discovery {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Discovery {
    /// Starts announcing `port` for `stream` and reporting what is found to `found`.
    /// `neighbours` is the node's neighbour count, read to decide how often to ask.
    pub fn start(
        opts: DiscoveryOptions,
        stream: StreamId,
        port: u16,
        seed: u64,
        lonely_applies: bool,
        neighbours: Arc<AtomicUsize>,
        found: impl Fn(Vec<SocketAddr>) + Send + 'static,
    ) -> Result<Discovery> {
        let mut trackers = Vec::new();
        for (i, url) in opts.trackers.iter().enumerate() {
            trackers.push(Tracker::new(
                url.clone(),
                seed.wrapping_add(i as u64 * 7919),
            )?);
        }
        let mut where_ = opts
            .trackers
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>();
        if opts.dht.is_some() {
            where_.push("the DHT".into());
        }
        cli::notice(format!(
            "looking for the swarm through {} (infohash {})",
            where_.join(", "),
            data_encoding::HEXLOWER.encode(&info_hash(&stream))
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            info_hash: info_hash(&stream),
            peer_id: peer_id(seed),
            port,
            trackers: trackers.into_iter().map(|t| (t, Schedule::new())).collect(),
            dht_bootstrap: opts.dht.clone(),
            lonely_applies,
            neighbours,
            stop: stop.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("discovery".into())
            .spawn(move || worker.run(found))
            .context("cannot start the discovery thread")?;
        Ok(Discovery {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops, telling the trackers we left (best effort, a few seconds at most).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn peer_id(seed: u64) -> [u8; 20] {
    // Azureus style: client "BL", version 0.1, then 12 bytes of our own randomness.
    let mut id = *b"-BL0010-000000000000";
    let tail = blake3::hash(&seed.to_le_bytes());
    id[8..].copy_from_slice(&tail.as_bytes()[..12]);
    id
}

#[allow(deprecated)] // the blocking API: this thread has nothing else to do while it waits
fn start_dht(bootstrap: &[String]) -> Result<mainline::Dht> {
    let mut builder = mainline::Dht::builder();
    if !bootstrap.is_empty() {
        builder.bootstrap(bootstrap);
    }
    builder.build().context("cannot start a DHT node")
}

/// When a source (a tracker, the DHT) is asked next, and whether it answered last time.
struct Schedule {
    next: Instant,
    last: Option<Instant>,
    answered: bool,
    started: bool,
}

impl Schedule {
    fn new() -> Schedule {
        Schedule {
            next: Instant::now(),
            last: None,
            answered: false,
            started: false,
        }
    }

    /// Due at its time, or early while the node is alone and the source answered last time
    /// (a failing source waits its full 10 s: a refused or unresolvable tracker was asked 4
    /// times a second).
    fn due(&self, now: Instant, lonely: bool) -> bool {
        now >= self.next
            || (lonely && self.answered && self.last.is_none_or(|l| now >= l + LONELY_RETRY))
    }
}

struct Worker {
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    port: u16,
    trackers: Vec<(Tracker, Schedule)>,
    dht_bootstrap: Option<Vec<String>>,
    /// Alone matters to peers only: a seed waits for viewers to come to it.
    lonely_applies: bool,
    neighbours: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn lonely(&self) -> bool {
        self.lonely_applies && self.neighbours.load(Ordering::Relaxed) == 0
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn run(mut self, found: impl Fn(Vec<SocketAddr>)) {
        // Started here, not on the node's thread: resolving the public DHT routers with no
        // answering resolver held the node (and Ctrl-C) for 24 s.
        let mut dht = match self.dht_bootstrap.take().map(|b| start_dht(&b)) {
            Some(Ok(d)) => Some((d, Schedule::new())),
            Some(Err(e)) => {
                cli::warn(format!("{e:#}: looking without the DHT"));
                None
            }
            None => None,
        };
        while !self.stopping() {
            let lonely = self.lonely();
            let (info_hash, peer_id, port) = (self.info_hash, self.peer_id, self.port);
            for (tracker, when) in self.trackers.iter_mut() {
                let now = Instant::now();
                if !when.due(now, lonely) || self.stop.load(Ordering::SeqCst) {
                    continue;
                }
                when.last = Some(now);
                let event = match when.started {
                    false => AnnounceEvent::Started,
                    true => AnnounceEvent::None,
                };
                match tracker.announce(info_hash, peer_id, port, event, false) {
                    Ok(a) => {
                        if !when.answered {
                            cli::notice(format!(
                                "tracker {}: {} peer(s)",
                                tracker.url,
                                a.peers.len()
                            ));
                        }
                        when.answered = true;
                        when.started = true;
                        found(a.peers);
                        when.next = Instant::now() + a.interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
                    }
                    Err(e) => {
                        if when.answered || when.last.is_some_and(|_| !when.started) {
                            cli::warn(format!("{e:#}; asking again in 10 s"));
                        }
                        when.answered = false;
                        when.next = Instant::now() + TRACKER_RETRY;
                    }
                }
            }
            if let Some((node, when)) = &mut dht {
                let now = Instant::now();
                if when.due(now, lonely) {
                    when.last = Some(now);
                    let peers = dht_round(node, info_hash, port);
                    when.answered = !peers.is_empty();
                    if !peers.is_empty() {
                        found(peers);
                    }
                    when.next = Instant::now() + if lonely { LONELY_RETRY } else { DHT_INTERVAL };
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        // Best effort, one quick try each: leaving must not wait on dead trackers.
        let (info_hash, peer_id, port) = (self.info_hash, self.peer_id, self.port);
        for (tracker, when) in self.trackers.iter_mut() {
            if when.answered {
                let _ = tracker.announce(info_hash, peer_id, port, AnnounceEvent::Stopped, true);
            }
        }
    }
}

/// One DHT round: announce ourselves, then collect the peers announced under the infohash.
#[allow(deprecated)] // the blocking API, on this thread of its own
fn dht_round(dht: &mainline::Dht, info_hash: [u8; 20], port: u16) -> Vec<SocketAddr> {
    let id = mainline::Id::from(info_hash);
    let _ = dht.announce_peer(id, Some(port));
    let mut peers: Vec<SocketAddr> = Vec::new();
    for batch in dht.get_peers(id) {
        peers.extend(batch.into_iter().map(|a: SocketAddrV4| SocketAddr::V4(a)));
        if peers.len() >= 50 {
            break;
        }
    }
    peers.sort();
    peers.dedup();
    peers
}
