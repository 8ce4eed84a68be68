//! Reaching other nodes across the internet: addresses found by trackers and the DHT, and
//! hole punching through a common neighbour (Introduce, Introduced). docs/NETWORK.md.

use std::net::SocketAddr;

use super::Node;
use crate::core::config::{INTRODUCED_EXTRA, INTRODUCTIONS_PER_NEIGHBOUR, MAX_CANDIDATES};
use crate::proto::wire::{Message, Role};

impl Node {
    /// Addresses a tracker or the DHT gave for our stream: greeted like peer-exchange finds,
    /// while we are short of neighbours. Unverified: only a Welcome for our stream makes one a
    /// neighbour, and a Hello is retried a bounded number of times. A seed does not greet:
    /// peers come to it.
    pub fn add_candidates(&mut self, now: u64, addrs: &[SocketAddr]) {
        if self.cfg.role == Role::Seed {
            return;
        }
        for addr in addrs.iter().take(MAX_CANDIDATES) {
            // Trackers list the announcer too: ourselves, as they see us. A Hello to that
            // address comes back to us with our own nonce, and is remembered then.
            let me = Some(*addr) == self.local_addr || self.membership.is_myself(addr);
            let contacts = self.neighbours.len() + self.membership.greetings();
            if me
                || contacts >= self.cfg.tuning.target_neighbours
                || self.neighbours.contains_key(addr)
                || self.membership.greeting(addr)
                || self.guard.is_banned(addr)
            {
                continue;
            }
            self.membership
                .send_hello(now, *addr, &self.place, &mut self.rng, &mut self.out);
        }
    }

    /// A neighbour asks to be introduced to `peer`, another of ours: `peer` is told to greet
    /// it, at the address we see it at. Both must be neighbours (their addresses proven), and
    /// the budget caps what one neighbour can make us send.
    pub(super) fn on_introduce(&mut self, now: u64, from: SocketAddr, peer: SocketAddr) {
        if peer == from
            || !self.neighbours.contains_key(&from)
            || !self.neighbours.contains_key(&peer)
            || !self.neighbour_may_introduce(now, from)
            || !self.reach.may_introduce(now)
        {
            self.out.count_dropped();
            return;
        }
        self.out.send(peer, &Message::Introduced { peer: from });
    }

    /// A neighbour says `peer` wants to talk: greet it, so its NAT and ours both let the
    /// other in. Only while we are short of contacts, within the budget.
    pub(super) fn on_introduced(&mut self, now: u64, from: SocketAddr, peer: SocketAddr) {
        let contacts = self.neighbours.len() + self.membership.greetings();
        if !self.neighbours.contains_key(&from)
            || self.neighbours.contains_key(&peer)
            || self.membership.greeting(&peer)
            || self.membership.is_myself(&peer)
            || Some(peer) == self.local_addr
            || self.guard.is_banned(&peer)
            || contacts >= self.cfg.tuning.target_neighbours + INTRODUCED_EXTRA
            || !self.neighbour_may_introduce(now, from)
            || !self.reach.may_introduce(now)
        {
            self.out.count_dropped();
            return;
        }
        self.membership
            .send_introduced_hello(now, peer, &self.place, &mut self.rng, &mut self.out);
    }

    /// One neighbour's share of the introductions: [`INTRODUCTIONS_PER_NEIGHBOUR`] a second,
    /// so a flood from one cannot spend the budget the others need.
    fn neighbour_may_introduce(&mut self, now: u64, from: SocketAddr) -> bool {
        let Some(n) = self.neighbours.get_mut(&from) else {
            return false;
        };
        if now >= n.introductions_since + 1_000_000 {
            n.introductions_since = now;
            n.introductions = 0;
        }
        if n.introductions >= INTRODUCTIONS_PER_NEIGHBOUR {
            return false;
        }
        n.introductions += 1;
        true
    }
}
