//! The checker: invariants a run must keep (bounded buffers; only the seed's chunks played,
//! in order, is checked in [`super::lanes`] as they play), and the violation that names the
//! seed reproducing it.

use super::*;

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

impl Sim {
    pub(crate) fn check_buffers(&mut self) {
        // Tree figures only while the stream runs: after its end peers finish and leave.
        let joins_over = self.joins_pending == 0 && self.now < self.stream_end_at;
        let mut missing = 0;
        let mut orphans = (0u64, 0u64);
        if self.nodes.len() > 0 && self.now < self.stream_end_at {
            let fed = self.nodes[0].core.children_fed();
            let s = &mut self.seed_children_samples;
            *s = (s.0 + u64::from(fed), s.1 + 1, s.2.max(fed));
        }
        for id in 0..self.nodes.len() {
            let node = &self.nodes[id];
            if !node.alive {
                continue;
            }
            if joins_over && id > 0 && self.places[id].kind == Kind::Honest && !node.finished {
                let parents = node.core.parents();
                let delay = |other: u32| model::propagation_us(&self.places, id as u32, other);
                let d = &mut self.delay_samples;
                for parent in parents.iter().flatten().filter_map(|a| id_of(*a)) {
                    d.parent.add(delay(parent));
                }
                for neighbour in node.core.neighbour_addrs().filter_map(id_of) {
                    d.neighbour.add(delay(neighbour));
                }
                // Any pair: the peer half the swarm away in join order.
                let far = (id + self.nodes.len() / 2) % self.nodes.len();
                if far != 0 && far != id {
                    d.any_pair.add(delay(far as u32));
                }
                orphans.0 += parents.iter().filter(|p| p.is_none()).count() as u64;
                orphans.1 += parents.len() as u64;
                let depth = node.core.tree_depth();
                self.depth_samples[depth as usize] += 1;
                if self.now >= node.playback.joined_at + SETTLED_AFTER_US {
                    let d = &mut self.settled_detached;
                    *d = (d.0 + u64::from(depth == u8::MAX), d.1 + 1);
                }
                let (mut liars, mut all) = (0u64, 0u64);
                for addr in node.core.neighbour_addrs() {
                    let kind = id_of(addr).and_then(|i| self.places.get(i as usize));
                    liars += u64::from(kind.is_some_and(|p| p.kind == Kind::Liar));
                    all += 1;
                }
                let e = &mut self.eclipse_samples;
                (e.0, e.1) = (e.0 + liars, e.1 + all);
                (e.2, e.3) = (e.2 + u64::from(2 * liars > all), e.3 + 1);
            }
            let b = node.core.buffered();
            missing += b.missing;
            let cfg = node.core.config();
            self.max_buffered[0] = self.max_buffered[0].max(b.history);
            self.max_buffered[1] = self.max_buffered[1].max(b.missing);
            self.max_buffered[2] = self.max_buffered[2].max(b.playout);
            let bad = if b.history > cfg.tuning.history {
                Some(format!("history of {} chunks", b.history))
            } else if b.missing > 2 * cfg.tuning.history {
                Some(format!("{} chunks marked missing", b.missing))
            } else if b.missing_span > 2 * cfg.tuning.history {
                Some(format!(
                    "a missing set spanning {} seqs ({} entries)",
                    b.missing_span, b.missing
                ))
            } else if b.playout > cfg.tuning.history {
                Some(format!("{} chunks waiting in playout", b.playout))
            } else if b.neighbours > cfg.tuning.max_neighbours {
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
}
