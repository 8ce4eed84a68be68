//! What a node learns of its own address from how others see it (the `observed` address in
//! each Welcome: its reflexive address, in ICE's words), what kind of NAT that implies, and
//! the budget of introductions it makes and honours for hole punching.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Welcomes remembered: enough to see two responders disagree.
const OBSERVATIONS: usize = 8;
/// Introductions (asked of others or honoured for them) per second, at most: each costs a
/// datagram to a third party, and a neighbour must not turn us into a Hello cannon.
pub const INTRODUCTIONS_PER_S: u32 = 20;

/// How reachable a node is, from what others saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reachability {
    /// Nobody has answered yet.
    Unknown,
    /// Others see our own address: no NAT.
    Public,
    /// Behind a NAT that keeps one public address and port for all destinations: reachable
    /// through an introduction (hole punching).
    Nat,
    /// Behind a NAT that maps each destination to another port (symmetric), so the address
    /// others list for us is useless to a third party: only those we greet can talk to us
    /// (and so be our children; a parent is always a neighbour, whose address is proven).
    /// Refusing children outright was measured worse: in the test bed the symmetric home's
    /// peers fed the neighbours they had greeted, and as leaves they pushed the seed to its
    /// cap and 10 to 130 chunks per peer went missing.
    Symmetric,
}

#[derive(Debug, Default)]
pub struct Reach {
    /// (who answered, the address it saw, whether it is on our LAN), newest last.
    observed: VecDeque<(SocketAddr, SocketAddr, bool)>,
    /// The address the socket is bound to, and the IP the driver routes from when it is bound
    /// to all interfaces.
    local: Option<SocketAddr>,
    route_ip: Option<IpAddr>,
    /// Introductions left in this second, and when the second began.
    budget: u32,
    budget_since: u64,
}

impl Reach {
    pub fn set_local(&mut self, local: SocketAddr) {
        self.local = Some(local);
    }

    pub fn set_route_ip(&mut self, ip: IpAddr) {
        self.route_ip = Some(ip);
    }

    pub fn route_ip(&self) -> Option<IpAddr> {
        self.route_ip
    }

    /// Whether `addr` looks like a host of our own LAN (our /24, or /64 for IPv6): it sees us
    /// without our NAT, so what it saw says nothing of how the internet sees us. A peer
    /// exchange list from such a host names its LAN neighbours by their LAN addresses.
    pub fn on_our_subnet(&self, addr: SocketAddr) -> bool {
        match (self.route_ip, addr.ip()) {
            (Some(IpAddr::V4(ours)), IpAddr::V4(theirs)) => {
                ours.octets()[..3] == theirs.octets()[..3]
            }
            (Some(IpAddr::V6(ours)), IpAddr::V6(theirs)) => {
                ours.segments()[..4] == theirs.segments()[..4]
            }
            _ => false,
        }
    }

    /// A Welcome from `responder` said it saw us at `observed`. A responder on our own LAN
    /// sees us without our NAT: its word counts only while nobody beyond the LAN answered
    /// (then `public` means reachable at our own address on this network).
    pub fn observe(&mut self, responder: SocketAddr, observed: SocketAddr, lan: bool) {
        self.observed.retain(|(r, _, _)| *r != responder);
        self.observed.push_back((responder, observed, lan));
        while self.observed.len() > OBSERVATIONS {
            self.observed.pop_front();
        }
    }

    fn ours(&self, addr: &SocketAddr) -> bool {
        let Some(local) = self.local else {
            return false;
        };
        addr.port() == local.port() && (addr.ip() == local.ip() || Some(addr.ip()) == self.route_ip)
    }

    /// Our address as others see it: the one most of them saw.
    pub fn public_addr(&self) -> Option<SocketAddr> {
        let mut seen: Vec<SocketAddr> = self.counted().map(|(_, o, _)| *o).collect();
        seen.sort();
        seen.chunk_by(|a, b| a == b)
            .max_by_key(|run| run.len())
            .and_then(|run| run.first().copied())
    }

    /// Public when anyone saw our own address; a NAT that maps us to one address for all
    /// destinations when they agree and it kept our port (Linux MASQUERADE and most home
    /// routers do); symmetric when two saw different addresses, or the only one saw another
    /// port (a symmetric NAT rewrites the port of every flow; one keeping it is the usual
    /// endpoint-independent kind). A port-translating NAT that is not symmetric is taken for
    /// symmetric until a second responder agrees with the first.
    pub fn classify(&self) -> Reachability {
        // Without our own address nothing can be compared (a core driven by a test).
        let counted: Vec<SocketAddr> = self.counted().map(|(_, o, _)| *o).collect();
        let (Some(first), Some(local)) = (counted.first(), self.local) else {
            return Reachability::Unknown;
        };
        if counted.iter().any(|o| self.ours(o)) {
            return Reachability::Public;
        }
        let agree = counted.iter().all(|o| o == first);
        let port_kept = local.port() == first.port();
        match (agree, counted.len() >= 2, port_kept) {
            (false, _, _) => Reachability::Symmetric,
            (true, true, _) | (true, false, true) => Reachability::Nat,
            (true, false, false) => Reachability::Symmetric,
        }
    }

    /// The observations that count: those from beyond our LAN, or all if there are none.
    fn counted(&self) -> impl Iterator<Item = &(SocketAddr, SocketAddr, bool)> {
        let beyond = self.observed.iter().any(|(_, _, lan)| !lan);
        self.observed
            .iter()
            .filter(move |(_, _, lan)| !beyond || !lan)
    }

    /// Takes one introduction from this second's budget.
    pub fn may_introduce(&mut self, now: u64) -> bool {
        if now >= self.budget_since + 1_000_000 {
            self.budget_since = now;
            self.budget = INTRODUCTIONS_PER_S;
        }
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classifies_by_what_others_saw() {
        let mut r = Reach::default();
        r.set_local(a("0.0.0.0:7101"));
        assert_eq!(r.classify(), Reachability::Unknown);
        r.set_route_ip("192.168.1.2".parse().unwrap());
        r.observe(a("10.77.0.1:7000"), a("192.168.1.2:7101"), false);
        assert_eq!(r.classify(), Reachability::Public);

        let mut nat = Reach::default();
        nat.set_local(a("0.0.0.0:7101"));
        nat.observe(a("10.77.0.1:7000"), a("10.77.0.11:7101"), false);
        assert_eq!(
            nat.classify(),
            Reachability::Nat,
            "one responder, port kept"
        );
        nat.observe(a("10.77.0.12:7102"), a("10.77.0.11:7101"), false);
        assert_eq!(nat.classify(), Reachability::Nat);
        assert_eq!(nat.public_addr(), Some(a("10.77.0.11:7101")));

        let mut sym = Reach::default();
        sym.set_local(a("0.0.0.0:7101"));
        sym.observe(a("10.77.0.1:7000"), a("10.77.0.13:40001"), false);
        assert_eq!(sym.classify(), Reachability::Symmetric, "port rewritten");
        sym.observe(a("10.77.0.1:7000"), a("10.77.0.13:7101"), false);
        assert_eq!(
            sym.classify(),
            Reachability::Nat,
            "the same responder's newest word"
        );
        sym.observe(a("10.77.0.12:7102"), a("10.77.0.13:51234"), false);
        assert_eq!(
            sym.classify(),
            Reachability::Symmetric,
            "two responders disagree"
        );
    }

    /// A neighbour that lies about the address it saw moves only our own label and public
    /// IP, and a liar on our LAN is outvoted by any responder beyond it.
    #[test]
    fn a_lie_about_what_was_seen_moves_only_our_label_and_the_lan_is_outvoted() {
        let mut r = Reach::default();
        r.set_local(a("0.0.0.0:7101"));
        r.observe(a("192.168.1.9:7000"), a("203.0.113.5:4444"), true);
        assert_eq!(
            r.public_addr(),
            Some(a("203.0.113.5:4444")),
            "alone, believed"
        );
        r.observe(a("10.77.0.1:7000"), a("10.77.0.11:7101"), false);
        assert_eq!(r.classify(), Reachability::Nat);
        assert_eq!(r.public_addr(), Some(a("10.77.0.11:7101")), "outvoted");
        // Beyond the LAN, one liar against one honest responder: they disagree on the port,
        // and we call ourselves symmetric (a label only reported, in --stats-json and bl-stat).
        r.observe(a("10.77.0.12:7102"), a("10.77.0.11:5555"), false);
        assert_eq!(r.classify(), Reachability::Symmetric);
    }

    #[test]
    fn introductions_are_budgeted_per_second() {
        let mut r = Reach::default();
        let granted = (0..100).filter(|_| r.may_introduce(5_000_000)).count();
        assert_eq!(granted, INTRODUCTIONS_PER_S as usize);
        assert!(r.may_introduce(6_000_001));
    }
}
