//! The outcome: the figures a run measured, as bl-sim prints them.

use super::*;

/// p50/p99/max of a distribution, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram) -> Self {
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
    /// The same, over the chunks honest peers played from [`SETTLED_AFTER_US`] after they
    /// joined: the swarm without its peers' startups.
    pub latency_settled_ms: Percentiles,
    /// Join → first chunk played.
    pub startup_ms: Percentiles,
    pub peers_never_started: usize,
    /// Measured peers that joined before the broadcast's first chunk was made.
    pub peers_joined_before_stream: usize,
    /// Of those, the ones that did not play from the broadcast's first chunk (a start at a
    /// later keyframe loses a GOP, which continuity, counted from each peer's start, does
    /// not show).
    pub late_starts: usize,
    pub joins: u64,
    pub departures: u64,
    /// Forgers banned, summed over the nodes that banned them.
    pub bans: u64,
    /// Root slots the seed took beyond its budget for a stripe starved below it.
    pub extra_roots: u64,
    /// Of those, the ones it let go once its stripes had been calm a while.
    pub extra_roots_released: u64,
    /// Haves the seed refuted: they claimed chunks past its newest (their senders lost their
    /// root slots for a while).
    pub claims_refuted: u64,
    pub forged_chunks_sent: u64,
    pub forged_chunks_played: u64,
    pub datagrams_sent: u64,
    pub datagrams_lost: u64,
    pub datagrams_queue_dropped: u64,
    /// Time datagrams waited in their sender's uplink queue.
    pub uplink_queue_ms: Percentiles,
    /// Chunks free riders and liars did not forward.
    pub chunks_withheld_by_free_riders: u64,
    /// Liars that joined, and the datagrams they sent in place of their cores' (forged
    /// Haves, eclipse lists, replayed chunks, forged end records).
    pub liars: usize,
    pub lies_sent: u64,
    pub signatures_checked: u64,
    pub signature_checks_saved: u64,
    pub events: u64,
    /// Peers' counters summed (duplicates, late chunks, repairs refused, …).
    pub peer_counters: Counters,
    /// Bytes and datagrams every node sent, by message kind.
    pub sent_by_kind: BTreeMap<&'static str, Traffic>,
    /// What the seed alone sent, by message kind.
    pub seed_sent_by_kind: BTreeMap<&'static str, Traffic>,
    /// The seed's own counters: its chunks sent as repairs (`repairs_served`) apart from
    /// those pushed to its root children.
    pub seed_counters: Counters,
    /// The seed's root slots in use (subscriptions it feeds), sampled every second while the
    /// stream runs: above its budget of ⌊max_upload × K⌋ while it holds extra roots.
    pub seed_children: SeedChildren,
    /// The seed's warnings, the first 256, with the time into the run: when it took and let
    /// go of extra roots, which cost a quarter stream copy each while held.
    pub seed_log: Vec<SeedNote>,
    /// Largest history / missing / playout buffer seen at any node.
    pub max_buffered: [usize; 3],
    /// Share of (peer, stripe) pairs without a parent, sampled every second once the joins
    /// are over: those stripes arrive by repair only.
    pub stripes_without_parent: f64,
    /// Hops from the seed in each peer's own stripe, over the same samples: latency grows
    /// with it.
    pub tree_depth: Depths,
    /// Mean one-way delay before any queue, over the same samples, from honest peers to
    /// their stripe parents, to their neighbours, and between any two peers: every tree hop
    /// adds its delay to every chunk below it.
    pub link_delay_ms: LinkDelays,
    /// Share of honest peers' neighbours that are liars, over the same samples (the liars'
    /// share of peers, unless eclipse lists pull them in).
    pub liar_neighbour_share: f64,
    /// Share of honest peers, over the same samples, with more liars than honest nodes among
    /// their neighbours.
    pub peers_mostly_among_liars: f64,
}

/// Mean and most of the seed's root slots in use over the samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeedChildren {
    pub mean: f64,
    pub max: u8,
}

/// One of the seed's warnings and when it came, in seconds since the run began.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedNote {
    pub at_s: f64,
    pub what: String,
}

/// Mean one-way delays (ms) from a peer to its parents, its neighbours, and any peer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinkDelays {
    pub parent: f64,
    pub neighbour: f64,
    pub any_pair: f64,
}

/// One-way delays summed (µs) and counted.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DelaySum {
    sum_us: u64,
    count: u64,
}

impl DelaySum {
    pub(crate) fn add(&mut self, us: u64) {
        self.sum_us += us;
        self.count += 1;
    }

    fn mean_ms(self) -> f64 {
        round(self.sum_us as f64 / self.count.max(1) as f64 / 1000.0, 1)
    }
}

/// The sums behind [`LinkDelays`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LinkDelaySums {
    pub(crate) parent: DelaySum,
    pub(crate) neighbour: DelaySum,
    pub(crate) any_pair: DelaySum,
}

impl LinkDelaySums {
    fn means(&self) -> LinkDelays {
        LinkDelays {
            parent: self.parent.mean_ms(),
            neighbour: self.neighbour.mean_ms(),
            any_pair: self.any_pair.mean_ms(),
        }
    }
}

/// Tree depth figures: percentiles over (peer, sample) pairs of attached members, and the
/// share not attached to their stripe's tree.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Depths {
    /// Over attached samples: the p50 moves in whole hops, and one hop is ~50 ms of latency.
    pub mean: f64,
    pub p50: u8,
    pub p99: u8,
    pub max: u8,
    pub detached: f64,
    /// The share detached over the samples of peers that joined [`SETTLED_AFTER_US`] or
    /// more before: without the swarm's forming, where joiners not yet placed dominate
    /// (bl-sim, 1,000 peers joining over 2 s, seed 7, in a trial's run: 351 of 987 detached
    /// samples at 2.0 s, when the last joiner arrived; docs/PERFORMANCE.md).
    pub detached_settled: f64,
}

impl Depths {
    pub(crate) fn of(counts: &[u64; 256], settled_detached: (u64, u64)) -> Self {
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
        let hops: u64 = counts[..255].iter().zip(0u64..).map(|(n, d)| n * d).sum();
        Depths {
            mean: (hops as f64 / attached.max(1) as f64 * 100.0).round() / 100.0,
            p50: quantile(0.5),
            p99: quantile(0.99),
            max,
            detached: share(counts[255], all),
            detached_settled: share(settled_detached.0, settled_detached.1),
        }
    }
}

/// `part` ÷ `all`, to four decimals (0 for no samples).
fn share(part: u64, all: u64) -> f64 {
    round(part as f64 / all.max(1) as f64, 4)
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

impl Sim {
    /// Signatures checked, and checks the lanes' memos saved.
    fn signature_checks(&self) -> (u64, u64) {
        self.memos
            .iter()
            .filter_map(|memo| memo.lock().ok().map(|m| (m.checked, m.remembered)))
            .fold((0, 0), |(c, r), (mc, mr)| (c + mc, r + mr))
    }

    pub(crate) fn measure(mut self) -> Outcome {
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
        let mut joined_before_stream = 0;
        let mut late_starts = 0;
        let mut skipped = 0;
        let mut bans = 0;
        let mut total_sent = 0;
        let mut played_bytes = 0u64;
        let mut seed_sent = 0;
        let mut extra_roots = 0;
        let mut extra_roots_released = 0;
        let mut claims_refuted = 0;
        let mut seed_counters = Counters::default();
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
                extra_roots = stats.counters.extra_roots;
                extra_roots_released = stats.counters.extra_roots_released;
                claims_refuted = stats.counters.claims_refuted;
                seed_counters = stats.counters;
                continue;
            }
            peer_counters.add(&stats.counters);
            // Adversaries' own figures are not the swarm's: continuity and latency are the
            // honest peers' (free riders count: they watch, they just do not upload).
            let adversary = place.kind.is_adversary();
            if !adversary {
                self.latency.merge(&stats.latency_us);
                played_bytes += playback.played * MAX_PAYLOAD as u64;
            }
            if playback.left || adversary {
                continue;
            }
            measured += 1;
            skipped += stats.counters.chunks_skipped;
            if playback.joined_at < self.stream_start_at {
                joined_before_stream += 1;
                if playback.first_seq != Some(0) {
                    late_starts += 1;
                }
            }
            let start = match playback.first_seq {
                Some(s) => s,
                None => {
                    never_started += 1;
                    let since = playback.joined_at.saturating_sub(self.stream_start_at);
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
        let (checked, remembered) = self.signature_checks();
        let e = self.eclipse_samples;
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
            latency_settled_ms: Percentiles::of(&tally.settled_latency),
            startup_ms: Percentiles::of(&self.startup),
            tree_depth: Depths::of(&self.depth_samples, self.settled_detached),
            peers_never_started: never_started,
            peers_joined_before_stream: joined_before_stream,
            late_starts,
            joins: self.joins,
            departures: self.departures,
            bans,
            extra_roots,
            extra_roots_released,
            claims_refuted,
            forged_chunks_sent: tally.forged_sent,
            forged_chunks_played: tally.forged_played,
            datagrams_sent: tally.datagrams_sent,
            datagrams_lost: tally.datagrams_lost,
            datagrams_queue_dropped: tally.queue_dropped,
            uplink_queue_ms: Percentiles::of(&tally.queue_delay),
            chunks_withheld_by_free_riders: tally.withheld,
            liars: self.adversaries.liars.len(),
            lies_sent: tally.lies_sent,
            signatures_checked: checked,
            signature_checks_saved: remembered,
            events: self.events,
            peer_counters,
            sent_by_kind: sent_by_kind.to_map(),
            seed_sent_by_kind: seed_sent_by_kind.to_map(),
            seed_counters,
            seed_children: SeedChildren {
                mean: round(
                    self.seed_children_samples.0 as f64
                        / self.seed_children_samples.1.max(1) as f64,
                    3,
                ),
                max: self.seed_children_samples.2,
            },
            seed_log: tally
                .seed_log
                .iter()
                .map(|(at, what)| SeedNote {
                    at_s: round(at.saturating_sub(EPOCH_US) as f64 / 1e6, 3),
                    what: what.clone(),
                })
                .collect(),
            max_buffered: self.max_buffered,
            stripes_without_parent: round(
                self.orphan_samples.0 as f64 / self.orphan_samples.1.max(1) as f64,
                4,
            ),
            link_delay_ms: self.delay_samples.means(),
            liar_neighbour_share: round(e.0 as f64 / e.1.max(1) as f64, 4),
            peers_mostly_among_liars: round(e.2 as f64 / e.3.max(1) as f64, 4),
            config: self.cfg,
        }
    }
}

/// `x` rounded to `places` decimals, as the JSON prints figures.
fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths_count_the_detached_over_all_samples_and_over_the_settled_ones_apart() {
        let mut counts = [0u64; 256];
        counts[1] = 2;
        counts[3] = 5;
        // Detached: 3 of 10 samples.
        counts[255] = 3;
        // Of the samples of peers that joined 5 s before, 1 of 8 was detached.
        let d = Depths::of(&counts, (1, 8));
        assert_eq!((d.p50, d.max, d.mean), (3, 3, 2.43));
        assert_eq!(d.detached, 0.3);
        assert_eq!(d.detached_settled, 0.125);
        assert_eq!(Depths::of(&counts, (0, 0)).detached_settled, 0.0);
    }
}
