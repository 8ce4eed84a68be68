//! The node's side of nearer neighbours ([`crate::core::proximity`]): asking for a stranger,
//! greeting it, and keeping it or letting it go once it answers.

use std::net::SocketAddr;

use super::Node;
use crate::core::proximity::{self, Verdict};
use crate::proto::wire::{Message, PeerInfo, Role};

impl Node {
    /// Peer, every tick while no stripe lacks a parent: now and then a neighbour is asked
    /// for peers, one of which is greeted to compare its round trip with ours.
    pub(super) fn ask_for_a_stranger(&mut self, now: u64) {
        if self.cfg.role != Role::Peer || self.place.index == 0 {
            return;
        }
        let target = self.cfg.tuning.target_neighbours;
        if let Some(to) = self
            .proximity
            .ask_whom(now, target, &self.neighbours, &mut self.rng)
        {
            self.membership
                .ask_neighbour_for_peers(now, to, &mut self.out);
        }
    }

    /// A Peers answer came: if a stranger to probe is wanted, one of them is greeted.
    pub(super) fn probe_a_stranger(&mut self, now: u64, peers: &[PeerInfo]) {
        let (membership, guard) = (&self.membership, &self.guard);
        let stranger = |a: &SocketAddr| {
            membership.is_stranger(a, self.local_addr, &self.neighbours, |b| guard.is_banned(b))
        };
        if let Some(addr) = self
            .proximity
            .candidate(now, peers, stranger, &mut self.rng)
        {
            self.membership
                .send_hello(now, addr, &self.place, &mut self.rng, &mut self.out);
        }
    }

    /// `from` welcomed us: if it is the probe, it stays in place of a farther neighbour
    /// that feeds us nothing, is fed nothing by us and is not one of the last older members
    /// of our stripe; or it is let go.
    pub(super) fn judge_probe(&mut self, now: u64, from: SocketAddr) {
        if !self.proximity.is_probe(&from) {
            return;
        }
        let elders = proximity::last_elders(&self.place, &self.neighbours);
        let tree = &self.tree;
        let verdict = self.proximity.judge(now, from, &mut self.neighbours, |a| {
            tree.is_parent(*a) || elders.contains(a)
        });
        let gone = match verdict {
            Verdict::Replace(farther) => farther,
            Verdict::DropProbe => from,
        };
        self.out.send(gone, &Message::Goodbye);
        self.drop_neighbour(gone);
    }
}
