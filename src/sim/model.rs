//! The network model: where nodes sit, how far apart they are, their uplinks and lossy
//! downlinks, and the model's own randomness.

use super::*;

/// splitmix64: derives independent seeds and draws for the model.
#[derive(Debug, Clone)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

pub(crate) fn addr_of(id: u32) -> SocketAddr {
    let [_, a, b, c] = id.to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, a, b, c), 7000))
}

pub(crate) fn id_of(addr: SocketAddr) -> Option<u32> {
    match addr {
        SocketAddr::V4(v4) if v4.port() == 7000 && v4.ip().octets()[0] == 10 => {
            let [_, a, b, c] = v4.ip().octets();
            Some(u32::from_be_bytes([0, a, b, c]))
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Seed,
    Honest,
    FreeRider,
    Forger,
    /// An adversary: see [`super::adversary`].
    Liar,
    /// An adversary that forwards nothing but what the seed asks of it: see
    /// [`super::adversary`].
    Withholder,
}

impl Kind {
    /// Whether its own figures stay out of the swarm's (continuity, latency): free riders
    /// count, they watch and only do not upload.
    pub(crate) fn is_adversary(self) -> bool {
        matches!(self, Kind::Forger | Kind::Liar | Kind::Withholder)
    }
}

/// What never changes about a node once it joined, read by both threads while cores run.
/// Dense (~32 bytes a node): routing reads the receiver's place for every datagram.
pub(crate) struct Place {
    pub(crate) kind: Kind,
    pub(crate) x: f32,
    pub(crate) y: f32,
    pub(crate) access_us: u64,
    pub(crate) upload_bps: u64,
}

/// A receiver's downlink loss: Gilbert–Elliott with mean loss `loss` and mean burst `burst`,
/// drawn from the receiver's own randomness as datagrams arrive, so each thread draws only
/// for its own nodes and the outcome does not depend on how the threads interleave.
pub(crate) struct Downlink {
    pub(crate) in_burst: bool,
    pub(crate) rng: Rng,
}

impl Downlink {
    pub(crate) fn lost(&mut self, loss: f64, burst: f64) -> bool {
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
pub(crate) struct Playback {
    pub(crate) joined_at: u64,
    pub(crate) first_play_at: Option<u64>,
    pub(crate) first_seq: Option<u64>,
    pub(crate) last_seq: Option<u64>,
    pub(crate) played: u64,
    pub(crate) left: bool,
}

/// The model as the threads read it while cores run.
pub(crate) struct World<'a> {
    pub(crate) now: u64,
    pub(crate) seed: u64,
    pub(crate) loss: f64,
    pub(crate) burst: f64,
    pub(crate) places: &'a [Place],
    /// The seed's chunks, one copy per lane.
    pub(crate) authentic: &'a [Vec<Arc<Chunk>>; 2],
    pub(crate) adversaries: &'a Adversaries,
}

impl<'a> World<'a> {
    pub(crate) fn new(
        cfg: &SimConfig,
        now: u64,
        places: &'a [Place],
        authentic: &'a [Vec<Arc<Chunk>>; 2],
        adversaries: &'a Adversaries,
    ) -> World<'a> {
        World {
            now,
            seed: cfg.seed,
            loss: cfg.loss,
            burst: cfg.burst,
            places,
            authentic,
            adversaries,
        }
    }

    pub(crate) fn propagation_us(&self, a: u32, b: u32) -> u64 {
        propagation_us(self.places, a, b)
    }

    pub(crate) fn violation(&self, what: String) -> Violation {
        Violation {
            at_s: (self.now - EPOCH_US) as f64 / 1e6,
            seed: self.seed,
            what,
        }
    }
}

/// A datagram that would queue longer than this at its sender's uplink is dropped.
pub const UPLOAD_QUEUE_US: u64 = 250_000;

/// IPv4 + UDP headers, counted against upload caps (not in the byte figures).
pub(crate) const HEADER_BYTES: u64 = 28;

/// A peer's chunks count as settled from this long after it joined: by then it has started
/// (startup p99 under 4 s at 100,000 peers), chosen its parents and caught up its backlog.
/// Earlier chunks are its startup's: in `bl-sim --peers 3000 --seconds 20 --join-over 5
/// --seed 1`, chunks played under 2 s after the join had latency p99 1.57 s, 2–5 s after
/// 1.49 s, later ones 0.87 s.
pub const SETTLED_AFTER_US: u64 = 5_000_000;

/// The one-way delay between nodes `a` and `b` before any queue: both access delays plus
/// 100 ms per unit of distance.
pub(crate) fn propagation_us(places: &[Place], a: u32, b: u32) -> u64 {
    match (places.get(a as usize), places.get(b as usize)) {
        (Some(na), Some(nb)) => {
            let dx = f64::from(na.x - nb.x);
            let dy = f64::from(na.y - nb.y);
            na.access_us + nb.access_us + ((dx * dx + dy * dy).sqrt() * 100_000.0) as u64
        }
        _ => 0,
    }
}
