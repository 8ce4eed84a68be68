//! The node's side of climbing ([`crate::core::climb`]): asking our parent who is above it,
//! naming ours to a member child, and making room at the cap for a younger member.

use std::net::SocketAddr;

use super::Node;
use crate::core::climb;
use crate::proto::wire::{Message, PeerInfo, Role};

impl Node {
    /// Peers we asked for came: a probe for nearness may take one first, then peer exchange
    /// greets those we want, and the one our parent names above it. The probe may take the
    /// one named above (and let it go unless it is nearer): picking the probe after peer
    /// exchange cost more than it saved (docs/PERFORMANCE.md, "A probe for nearness kept off
    /// the peer named above", tried, not kept).
    pub(super) fn on_peers(&mut self, now: u64, from: SocketAddr, peers: &[PeerInfo]) {
        self.probe_a_stranger(now, peers);
        let orphans = self.tree.orphans(&self.place);
        let guard = &self.guard;
        let above_from = self
            .place
            .member
            .and_then(|m| self.tree.parent(m))
            .filter(|_| self.climb.may_greet());
        let greeted = self.membership.on_peers(
            now,
            from,
            above_from,
            peers,
            &self.place,
            orphans,
            self.local_addr,
            self.reach.public_addr().map(|a| a.ip()),
            &self.cfg.tuning,
            &self.neighbours,
            |addr| guard.is_banned(addr),
            &mut self.rng,
            &mut self.out,
        );
        if let Some(addr) = greeted {
            self.climb.greeting(now, addr);
        }
    }

    /// Member, every tick while no stripe lacks a parent: now and then our parent in our
    /// stripe is asked for peers, and names its own parent first.
    pub(super) fn ask_who_is_above(&mut self, now: u64) {
        if self.cfg.role != Role::Peer || self.place.index == 0 {
            return;
        }
        let Some(parent) = self.place.member.and_then(|m| self.tree.parent(m)) else {
            return;
        };
        let Some(n) = self.neighbours.get(&parent) else {
            return;
        };
        if n.role == Role::Peer && n.member == self.place.member && self.climb.due(now, n.depth) {
            self.membership
                .ask_neighbour_for_peers(now, parent, &mut self.out);
        }
    }

    /// Whom to name first to `from` in a Peers answer: our parent, to a member child; the
    /// seed names a root it let go (and still hands over) an older root of its stripe. Only
    /// those: every member named its stripe's oldest root would greet it, and at 100,000
    /// peers the roots' Hellos would be a flood.
    pub(super) fn above_for(&self, from: SocketAddr) -> Option<PeerInfo> {
        if self.place.role == Role::Seed {
            let stripe = self.tree.handed_over(from)?;
            return climb::root_for(from, stripe, &self.neighbours);
        }
        let ours = self.place.member.and_then(|m| self.tree.parent(m));
        climb::above_for(from, &self.place, ours, &self.neighbours)
    }

    /// At the neighbour cap, a younger member of our stripe that proved its address takes
    /// the place of our farthest idle neighbour.
    pub(super) fn make_room_for_member(
        &mut self,
        now: u64,
        from: SocketAddr,
        token: u64,
        index: u64,
        member: Option<u8>,
    ) {
        let full = self.neighbours.len() >= self.cfg.tuning.max_neighbours;
        if !full || self.neighbours.contains_key(&from) || token != self.membership.token_for(from)
        {
            return;
        }
        let tree = &self.tree;
        let idle = self.climb.make_room(
            now,
            from,
            member,
            index,
            &self.place,
            &self.neighbours,
            |a| tree.is_or_asked_parent(*a),
        );
        if let Some(idle) = idle {
            self.out.send(idle, &Message::Goodbye);
            self.drop_neighbour(idle);
        }
    }

    /// Every tick: members let in at the cap that we do not feed after their grace are let
    /// go, and so is the peer greeted above our parent if it did not become our parent.
    pub(super) fn let_go_unsubscribed(&mut self, now: u64) {
        let mut gone = self.climb.unsubscribed(now, &self.neighbours);
        if let Some(addr) = self.climb.stale_greeting(now) {
            match self.neighbours.get(&addr) {
                // Its Welcome never came: no later retry of the Hello makes it a neighbour.
                None => self.membership.forget(addr),
                Some(n) if n.children.is_empty() && !self.tree.is_or_asked_parent(addr) => {
                    gone.push(addr)
                }
                Some(_) => {}
            }
        }
        for addr in gone {
            self.out.send(addr, &Message::Goodbye);
            self.drop_neighbour(addr);
        }
    }
}
