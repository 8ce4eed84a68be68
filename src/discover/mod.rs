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
        let dht = match &opts.dht {
            None => None,
            Some(bootstrap) => Some(start_dht(bootstrap)?),
        };
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
            trackers: trackers
                .into_iter()
                .map(|t| (t, Instant::now(), false))
                .collect(),
            dht: dht.map(|d| (d, Instant::now())),
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

struct Worker {
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    port: u16,
    /// Each tracker, when to ask it next, and whether it answered last time.
    trackers: Vec<(Tracker, Instant, bool)>,
    dht: Option<(mainline::Dht, Instant)>,
    neighbours: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn lonely(&self) -> bool {
        self.neighbours.load(Ordering::Relaxed) == 0
    }

    fn run(mut self, found: impl Fn(Vec<SocketAddr>)) {
        let mut first = true;
        while !self.stop.load(Ordering::SeqCst) {
            let lonely = self.lonely();
            for (tracker, next, answered) in self.trackers.iter_mut() {
                let now = Instant::now();
                if now < *next && !(lonely && now + LONELY_RETRY < *next) {
                    continue;
                }
                let event = if first {
                    AnnounceEvent::Started
                } else {
                    AnnounceEvent::None
                };
                match tracker.announce(self.info_hash, self.peer_id, self.port, event) {
                    Ok(a) => {
                        if !*answered {
                            cli::notice(format!(
                                "tracker {}: {} peer(s)",
                                tracker.url,
                                a.peers.len()
                            ));
                        }
                        *answered = true;
                        found(a.peers);
                        *next = Instant::now()
                            + if self.neighbours.load(Ordering::Relaxed) == 0 {
                                LONELY_RETRY
                            } else {
                                a.interval.clamp(MIN_INTERVAL, MAX_INTERVAL)
                            };
                    }
                    Err(e) => {
                        if *answered || first {
                            cli::warn(format!("{e:#}; asking again in 10 s"));
                        }
                        *answered = false;
                        *next = Instant::now() + Duration::from_secs(10);
                    }
                }
            }
            let lonely_now = self.lonely();
            if let Some((dht, next)) = &mut self.dht {
                let now = Instant::now();
                if now >= *next || (lonely && now + LONELY_RETRY < *next) {
                    let peers = dht_round(dht, self.info_hash, self.port);
                    if !peers.is_empty() {
                        found(peers);
                    }
                    *next = Instant::now()
                        + if lonely_now {
                            LONELY_RETRY
                        } else {
                            DHT_INTERVAL
                        };
                }
            }
            first = false;
            std::thread::sleep(Duration::from_millis(250));
        }
        for (tracker, _, answered) in self.trackers.iter_mut() {
            if *answered {
                let _ = tracker.announce(
                    self.info_hash,
                    self.peer_id,
                    self.port,
                    AnnounceEvent::Stopped,
                );
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
