//! Counters and latency histograms kept by the core, printed by `--stats-json` and bl-stat.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::proto::wire::KIND_NAMES;

/// Log-bucketed histogram of non-negative values (µs), about 4 % resolution, bounded memory.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Buckets `first..first + buckets.len()`: from the lowest to the highest bucket recorded,
    /// at most [`BUCKETS`], grown on demand. Every node keeps two: a peer's ingest one stays
    /// empty, and its latencies fill a band far above bucket 0 (bl-sim's pooled p50 of
    /// 529 ms is bucket 336), so the buckets below the band are not kept. Two full ones
    /// were 9.6 KB a peer, 11 % of the simulator's heap; starting at the band, with the
    /// tokens of neighbours let go forgotten, took bl-sim's 10,000-peer peak from 644 to
    /// 600 MB.
    buckets: Vec<u64>,
    first: usize,
    count: u64,
    max: u64,
}

/// Bucket growth factor: each bucket is ~4 % wider than the previous.
const GROWTH: f64 = 1.04;
const BUCKETS: usize = 600; // 1.04^600 ≈ 1.6e10 µs: half a day.

impl Histogram {
    fn bucket(value: u64) -> usize {
        if value == 0 {
            return 0;
        }
        ((value as f64).ln() / GROWTH.ln())
            .floor()
            .clamp(0.0, (BUCKETS - 1) as f64) as usize
            + 1
    }

    fn upper_bound(bucket: usize) -> u64 {
        if bucket == 0 {
            0
        } else {
            GROWTH.powi(bucket as i32).floor() as u64
        }
    }

    /// Makes the kept range cover buckets `lo..=hi`, exactly: a node's extremes move a few
    /// dozen times, and doubling held twice the buckets (up to 8 KB) where latencies reached
    /// the last ones.
    fn cover(&mut self, lo: usize, hi: usize) {
        if self.buckets.is_empty() {
            self.first = lo;
            self.buckets.reserve_exact(hi + 1 - lo);
            self.buckets.resize(hi + 1 - lo, 0);
            return;
        }
        let end = self.first + self.buckets.len();
        if lo < self.first {
            let mut grown = Vec::with_capacity(end.max(hi + 1) - lo);
            grown.resize(self.first - lo, 0);
            grown.extend_from_slice(&self.buckets);
            self.buckets = grown;
            self.first = lo;
        }
        if hi >= end {
            self.buckets
                .reserve_exact(hi + 1 - self.first - self.buckets.len());
            self.buckets.resize(hi + 1 - self.first, 0);
        }
    }

    /// (bucket index, count) of every kept bucket, lowest first.
    fn indexed(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        let first = self.first;
        self.buckets
            .iter()
            .enumerate()
            .map(move |(i, n)| (first + i, *n))
    }

    pub fn record(&mut self, value: u64) {
        let b = Self::bucket(value).min(BUCKETS - 1);
        self.cover(b, b);
        if let Some(n) = self.buckets.get_mut(b - self.first) {
            *n += 1;
        }
        self.count += 1;
        self.max = self.max.max(value);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value below which a fraction `q` of samples lie (bucket upper bound, ≤ max).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.indexed() {
            seen += n;
            if seen >= rank {
                return Self::upper_bound(i).min(self.max);
            }
        }
        self.max
    }

    /// Non-empty buckets as (upper bound µs, count), for plots.
    pub fn buckets(&self) -> Vec<(u64, u64)> {
        self.indexed()
            .filter(|(_, n)| *n > 0)
            .map(|(i, n)| (Self::upper_bound(i).min(self.max), n))
            .collect()
    }

    pub fn merge(&mut self, other: &Histogram) {
        if !other.buckets.is_empty() {
            let other_end = other.first + other.buckets.len();
            self.cover(other.first, other_end - 1);
            let offset = other.first - self.first;
            for (a, b) in self.buckets.iter_mut().skip(offset).zip(&other.buckets) {
                *a += b;
            }
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }
}

/// Datagrams and bytes of one message kind.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Traffic {
    pub datagrams: u64,
    pub bytes: u64,
}

/// Traffic per message kind, indexed by [`Message::kind_index`](crate::proto::wire::Message::kind_index).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficByKind([Traffic; KIND_NAMES.len()]);

impl TrafficByKind {
    pub fn count(&mut self, kind_index: usize, bytes: usize) {
        if let Some(t) = self.0.get_mut(kind_index) {
            t.datagrams += 1;
            t.bytes += bytes as u64;
        }
    }

    /// The traffic of the kind with this name (zero for an unknown name).
    pub fn get(&self, name: &str) -> Traffic {
        KIND_NAMES
            .iter()
            .position(|k| *k == name)
            .and_then(|i| self.0.get(i).copied())
            .unwrap_or_default()
    }

    /// Kinds with any traffic, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Traffic)> + '_ {
        KIND_NAMES
            .iter()
            .zip(self.0.iter())
            .filter(|(_, t)| t.datagrams > 0)
            .map(|(k, t)| (*k, *t))
    }

    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|t| t.bytes).sum()
    }

    pub fn add(&mut self, other: &TrafficByKind) {
        for (t, o) in self.0.iter_mut().zip(other.0.iter()) {
            t.datagrams += o.datagrams;
            t.bytes += o.bytes;
        }
    }

    pub fn to_map(&self) -> BTreeMap<&'static str, Traffic> {
        self.iter().collect()
    }
}

/// Event counts a node keeps; the same fields appear, flattened, in the JSON [`Report`].
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    pub datagrams_dropped: u64,
    pub chunks_received: u64,
    pub chunks_duplicate: u64,
    pub chunks_late: u64,
    pub chunks_forged: u64,
    pub chunks_skipped: u64,
    pub chunks_played: u64,
    pub chunks_dropped_output: u64,
    pub peers_banned: u64,
    /// Repair requests not served because the repair budget was spent.
    pub repairs_refused: u64,
    /// Chunks sent in answer to a repair request (the rest were pushed down a stripe).
    #[serde(default)]
    pub repairs_served: u64,
    /// Children's requests for a chunk pushed to them less than a round trip before: not
    /// answered, the push was on its way.
    #[serde(default)]
    pub repairs_crossed: u64,
    /// Seed: requests, from peers outside a chunk's root slots, for a chunk it had served to
    /// another such peer moments before: left to that peer and the tree.
    #[serde(default)]
    pub repairs_spread: u64,
    /// Unsubscribes sent to neighbours that pushed a stripe they do not feed us (a lost
    /// Unsubscribe or acceptance had left them pushing it beside our parent).
    #[serde(default)]
    pub stray_feeds_stopped: u64,
    /// Children held until a keyframe (their Subscribe asked it: `core::tree::hold`) and
    /// released at one: sent it and their stripes from it.
    #[serde(default)]
    pub holds_released: u64,
    /// Start positions from a Welcome that no verified chunk reached, and Welcome indices
    /// from long before the first verified chunk: ignored as lies; at the seed, indices
    /// claimed from more than a history before a newcomer first reached it.
    #[serde(default)]
    pub positions_ignored: u64,
    /// Seed: root slots taken beyond its budget because most of a stripe's members among its
    /// neighbours were starved of it (a withholder in a root slot).
    #[serde(default)]
    pub extra_roots: u64,
    /// Seed: root slots beyond its budget it let go once no stripe had looked starved for a
    /// while (`core::root_release`).
    #[serde(default)]
    pub extra_roots_released: u64,
    /// Seed: Haves claiming chunks past its newest (it is the source): their senders lose
    /// their root slots for a while.
    #[serde(default)]
    pub claims_refuted: u64,
    /// Payload bytes of the chunks received from the seed and from peers (duplicates too):
    /// who carries the stream to this node.
    #[serde(default)]
    pub chunk_bytes_from_seed: u64,
    #[serde(default)]
    pub chunk_bytes_from_peers: u64,
    /// Chunks whose signatures were checked in a batch with others read from the socket
    /// together (`Node::verify_ahead`). Left out of JSON while zero: bl-sim, which reads no
    /// socket, prints what it printed before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chunks_verified_in_batches: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Counters {
    /// Adds another node's counts (swarm totals).
    pub fn add(&mut self, o: &Counters) {
        self.datagrams_dropped += o.datagrams_dropped;
        self.chunks_received += o.chunks_received;
        self.chunks_duplicate += o.chunks_duplicate;
        self.chunks_verified_in_batches += o.chunks_verified_in_batches;
        self.chunks_late += o.chunks_late;
        self.chunks_forged += o.chunks_forged;
        self.chunks_skipped += o.chunks_skipped;
        self.chunks_played += o.chunks_played;
        self.chunks_dropped_output += o.chunks_dropped_output;
        self.peers_banned += o.peers_banned;
        self.repairs_refused += o.repairs_refused;
        self.repairs_served += o.repairs_served;
        self.repairs_crossed += o.repairs_crossed;
        self.repairs_spread += o.repairs_spread;
        self.stray_feeds_stopped += o.stray_feeds_stopped;
        self.holds_released += o.holds_released;
        self.positions_ignored += o.positions_ignored;
        self.extra_roots += o.extra_roots;
        self.extra_roots_released += o.extra_roots_released;
        self.claims_refuted += o.claims_refuted;
        self.chunk_bytes_from_seed += o.chunk_bytes_from_seed;
        self.chunk_bytes_from_peers += o.chunk_bytes_from_peers;
    }
}

/// Everything a node counts.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    pub sent: TrafficByKind,
    pub received: TrafficByKind,
    pub counters: Counters,
    pub latency_us: Histogram,
    /// Seed: chunk arrival on stdin − capture time (the encoder → bl-chunk → bl-seed part).
    pub ingest_latency_us: Histogram,
    /// Payload bytes of the stream read (seed) or played (peer).
    pub stream_bytes: u64,
}

impl NodeStats {
    pub fn count_sent(&mut self, kind_index: usize, bytes: usize) {
        self.sent.count(kind_index, bytes);
    }

    pub fn count_received(&mut self, kind_index: usize, bytes: usize) {
        self.received.count(kind_index, bytes);
    }

    pub fn bytes_sent(&self) -> u64 {
        self.sent.bytes()
    }

    pub fn bytes_received(&self) -> u64 {
        self.received.bytes()
    }
}

/// The one-line JSON report (`--stats-json`, bl-stat). Field names are a stable interface.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub role: String,
    pub stream_id: String,
    pub addr: String,
    pub uptime_s: f64,
    pub neighbours: usize,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub chunk_bytes_sent: u64,
    #[serde(flatten)]
    pub counters: Counters,
    pub stream_bytes: u64,
    pub latency_ms: LatencyReport,
    pub ingest_latency_ms: LatencyReport,
    pub sent_by_kind: BTreeMap<String, Traffic>,
    /// How reachable the node is, from the addresses others saw it at (absent in reports
    /// from before it was counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachability: Option<crate::core::reachability::Reachability>,
    /// Its address as others see it (behind a NAT, the NAT's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_addr: Option<String>,
    /// Peer: start → first chunk played, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_ms: Option<f64>,
    /// The latency histogram as [upper bound ms, chunks] pairs: only in --stats-json (too
    /// large for a bl-stat reply), for benchmarks that pool every chunk of every peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_histogram_ms: Vec<(f64, u64)>,
    /// How late the driver's event loop ran, at most, against when it was due (ms), and how
    /// many times by 50 ms or more: a scheduler stall, told from a slow path. Only in
    /// --stats-json: the core has no clock to measure it by (`net::wake_lag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_lag_max_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalls: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct LatencyReport {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub count: u64,
}

impl LatencyReport {
    pub fn from_histogram(h: &Histogram) -> Self {
        let ms = |us: u64| (us as f64 / 1000.0 * 100.0).round() / 100.0;
        LatencyReport {
            p50: ms(h.quantile(0.5)),
            p99: ms(h.quantile(0.99)),
            max: ms(h.max()),
            count: h.count(),
        }
    }
}

/// A swarm's figures from its nodes' reports (bl-stat --swarm, bl-stat --input).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SwarmSummary {
    pub nodes: usize,
    pub seeds: usize,
    pub peers: usize,
    /// The seed's stream bytes (largest, if several seeds reported).
    pub stream_bytes: u64,
    pub bytes_sent: u64,
    /// Sum over nodes of each one's average upload (bytes sent ÷ uptime).
    pub upload_kbit_s: f64,
    /// Bytes the seed sent ÷ bytes of the stream.
    pub source_amplification: f64,
    /// All bytes sent ÷ bytes the peers played − 1.
    pub overhead: f64,
    /// Chunks played ÷ (played + skipped), over all peers.
    pub continuity: f64,
    pub chunks_played: u64,
    pub chunks_skipped: u64,
    pub chunks_forged: u64,
    pub peers_banned: u64,
    /// p50: median of the peers' medians; p99: 99th percentile of their p99s; max: largest.
    pub latency_ms: LatencyReport,
}

impl SwarmSummary {
    pub fn of(reports: &[Report]) -> SwarmSummary {
        let seeds: Vec<&Report> = reports.iter().filter(|r| r.role == "seed").collect();
        let peers: Vec<&Report> = reports.iter().filter(|r| r.role != "seed").collect();
        let stream_bytes = seeds.iter().map(|r| r.stream_bytes).max().unwrap_or(0);
        let seed_sent: u64 = seeds.iter().map(|r| r.bytes_sent).sum();
        let bytes_sent: u64 = reports.iter().map(|r| r.bytes_sent).sum();
        let played_bytes: u64 = peers.iter().map(|r| r.stream_bytes).sum();
        let played: u64 = peers.iter().map(|r| r.counters.chunks_played).sum();
        let skipped: u64 = peers.iter().map(|r| r.counters.chunks_skipped).sum();
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let round = |x: f64, places: i32| {
            let f = 10f64.powi(places);
            (x * f).round() / f
        };
        let nearest_rank = |mut v: Vec<f64>, q: f64| {
            v.sort_by(f64::total_cmp);
            if v.is_empty() {
                0.0
            } else {
                let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
                v[rank - 1]
            }
        };
        let with_samples: Vec<&&Report> = peers.iter().filter(|r| r.latency_ms.count > 0).collect();
        let latency_ms = LatencyReport {
            p50: nearest_rank(with_samples.iter().map(|r| r.latency_ms.p50).collect(), 0.5),
            p99: nearest_rank(
                with_samples.iter().map(|r| r.latency_ms.p99).collect(),
                0.99,
            ),
            max: with_samples
                .iter()
                .map(|r| r.latency_ms.max)
                .fold(0.0, f64::max),
            count: with_samples.iter().map(|r| r.latency_ms.count).sum(),
        };
        SwarmSummary {
            nodes: reports.len(),
            seeds: seeds.len(),
            peers: peers.len(),
            stream_bytes,
            bytes_sent,
            upload_kbit_s: round(
                reports
                    .iter()
                    .map(|r| ratio(r.bytes_sent as f64 * 8.0 / 1000.0, r.uptime_s))
                    .sum(),
                1,
            ),
            source_amplification: round(ratio(seed_sent as f64, stream_bytes as f64), 3),
            overhead: round(ratio(bytes_sent as f64, played_bytes as f64) - 1.0, 4),
            continuity: round(ratio(played as f64, (played + skipped) as f64), 6),
            chunks_played: played,
            chunks_skipped: skipped,
            chunks_forged: reports.iter().map(|r| r.counters.chunks_forged).sum(),
            peers_banned: reports.iter().map(|r| r.counters.peers_banned).sum(),
            latency_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_bucket_resolution() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.05, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.05, "{p99}");
        assert_eq!(h.max(), 10_000);
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }

    #[test]
    fn a_histogram_holds_only_the_buckets_it_reached_and_merges_any_two() {
        let (mut small, mut large) = (Histogram::default(), Histogram::default());
        assert!(
            small.buckets.is_empty(),
            "an unused histogram holds nothing"
        );
        for v in 1..=100u64 {
            small.record(v);
            large.record(v * 1_000_000);
        }
        assert!(small.buckets.len() <= Histogram::bucket(100) + 1);
        // Only the range reached: 1 s to 100 s is ~118 buckets, not the ~470 below 100 s.
        let (lo, hi) = (Histogram::bucket(1_000_000), Histogram::bucket(100_000_000));
        assert_eq!(large.buckets.len(), hi - lo + 1);
        large.record(u64::MAX);
        assert_eq!(large.buckets.len(), BUCKETS - lo);
        // A lower value prepends exactly what it needs, and every count stays in its bucket.
        large.record(1);
        assert_eq!(large.buckets.len(), BUCKETS - Histogram::bucket(1));
        assert_eq!(large.buckets().first(), Some(&(1, 1)));
        assert_eq!(
            large.quantile(0.5),
            Histogram::upper_bound(Histogram::bucket(50_000_000))
        );
        small.merge(&large);
        assert_eq!((small.count(), small.max()), (202, u64::MAX));
        let p25 = small.quantile(0.25) as f64;
        assert!((p25 - 50.0).abs() / 50.0 < 0.05, "{p25}");
        let p75 = small.quantile(0.75) as f64;
        assert!((p75 - 50e6).abs() / 50e6 < 0.05, "{p75}");
    }
}
