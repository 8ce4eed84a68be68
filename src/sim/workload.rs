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
        // Withholders join first: a root slot at the seed goes to its oldest members.
        let kind = if withholder {
            Kind::Withholder
        } else if forger {
            Kind::Forger
        } else if self.rng.unit() < self.cfg.free_riders {
            Kind::FreeRider
        // Drawn only when asked for: runs without liars stay as they were.
        } else if self.cfg.liars > 0.0 && self.rng.unit() < self.cfg.liars {
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
