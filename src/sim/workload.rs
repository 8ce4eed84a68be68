//! The workload: who joins (honest peers, free riders, forgers), when, with which uplink and
//! which bootstrap addresses, and who leaves (churn).

use super::*;

impl Sim {
    pub(crate) fn add_node(&mut self, kind: Kind) -> u32 {
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
        cfg.tuning.stripes = self.cfg.stripes;
        cfg.rng_seed = self.rng.next();
        cfg.tuning.latency_us = self.cfg.latency_ms * 1000;
        cfg.tuning.history = self.cfg.history;
        cfg.verified = Some(self.memos[lane_of(id).0].clone());
        let stream_bps = self.cfg.bitrate_bps.max(1) as f64;
        match kind {
            Kind::Seed => {
                cfg.tuning.max_upload = ((upload_bps as f64 / stream_bps) * 0.8).clamp(1.0, 1.25);
            }
            // A peer offers 60 % of its uplink (bl-peer --max-upload), at most 2 copies: the
            // rest is headroom for repairs, Haves and the user's other traffic.
            Kind::Honest | Kind::Forger | Kind::Liar | Kind::Withholder => {
                cfg.tuning.max_upload = ((upload_bps as f64 / stream_bps) * 0.6).min(4.0);
                cfg.bootstrap = self.tracker_answer();
            }
            Kind::FreeRider => {
                cfg.tuning.max_upload = 0.0;
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
    pub(crate) fn tracker_answer(&mut self) -> Vec<SocketAddr> {
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

    pub(crate) fn join(&mut self) {
        let n = self.joins;
        self.joins += 1;
        // Forgers are spread evenly through the initial joins.
        let every = (self.cfg.peers / self.cfg.forgers.max(1)).max(1);
        let withholder = (n as usize) < self.cfg.withholders;
        let forger = !withholder
            && self.forgers_added < self.cfg.forgers
            && (n as usize) < self.cfg.peers
            && (n as usize) % every == 1 % every;
        if forger {
            self.forgers_added += 1;
        }
        // A joiner's kind is drawn from a generator keyed by the seed and the join's number,
        // not from `self.rng`: the tracker's samples draw from that one a number of times that
        // follows who has started playing, so a change in the core used to change which
        // peers lie (seed 1, `--liars 5%`, 1,000 peers: 49 liars at 230daac, 51 with the seed
        // naming a root), and a before/after comparison compared two workloads as well.
        let mut kinds = kind_rng(self.cfg.seed, n);
        let free_rider = kinds.unit() < self.cfg.free_riders;
        let liar = kinds.unit() < self.cfg.liars;
        if !withholder && !forger {
            // `self.rng` still makes the draws it made for the kinds, so that runs without
            // liars or free riders draw what they drew before. Uplinks, places and the cores'
            // seeds still come from `self.rng` and so still follow the tracker's draws.
            self.rng.next();
            if !free_rider && self.cfg.liars > 0.0 {
                self.rng.next();
            }
        }
        // Withholders join first: a root slot at the seed goes to its oldest members.
        let kind = if withholder {
            Kind::Withholder
        } else if forger {
            Kind::Forger
        } else if free_rider {
            Kind::FreeRider
        } else if liar {
            Kind::Liar
        } else {
            Kind::Honest
        };
        let id = self.add_node(kind);
        if kind == Kind::Liar {
            self.adversaries.liars.push(id);
        }
    }

    pub(crate) fn churn(&mut self) {
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
}

/// The generator of join `n`'s kind in the run seeded `seed`: the same joins are free riders
/// or liars whatever the core does.
fn kind_rng(seed: u64, n: u64) -> Rng {
    Rng(seed.wrapping_mul(0xd6e8_feb8_6659_fd93) ^ n.wrapping_mul(0xa076_1d64_78bd_642f))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two runs whose trackers answer differently (so `self.rng` is drawn a different number
    /// of times) still have the same joins lying: what the core does no longer picks the liars.
    #[test]
    fn the_same_joins_are_liars_whatever_the_tracker_drew() {
        let cfg = SimConfig {
            peers: 0,
            liars: 0.2,
            free_riders: 0.1,
            seed: 7,
            ..SimConfig::default()
        };
        let joined = |listed: bool| {
            let mut sim = Sim::new(cfg.clone());
            for _ in 0..60 {
                sim.join();
                if listed {
                    // As if the joiner had started playing: later answers sample it.
                    sim.tracker.push(sim.nodes.len() as u32 - 1);
                }
            }
            sim.places
        };
        let (quiet, listed) = (joined(false), joined(true));
        let kinds = |places: &[Place]| places.iter().map(|p| p.kind).collect::<Vec<_>>();
        let uplinks = |places: &[Place]| places.iter().map(|p| p.upload_bps).collect::<Vec<_>>();
        // The main generator did diverge: the uplinks drawn after the first answers differ.
        assert_ne!(uplinks(&quiet), uplinks(&listed));
        assert_eq!(kinds(&quiet), kinds(&listed));
        let liars = kinds(&quiet).iter().filter(|&&k| k == Kind::Liar).count();
        let riders = kinds(&quiet)
            .iter()
            .filter(|&&k| k == Kind::FreeRider)
            .count();
        assert!((4..=20).contains(&liars), "{liars} liars of 60");
        assert!((1..=14).contains(&riders), "{riders} free riders of 60");
    }
}
