//! Membership: who this node talks to. The handshake (Hello → Welcome → Confirm, with
//! address tokens and retries), neighbours that went silent, the way back to the bootstrap
//! nodes, peer exchange, and at the seed the tracker: join indices, member stripes and a
//! sample of every peer that joined.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::core::config::{
    Tuning, BOOTSTRAP_RETRY_US, HELLO_ATTEMPTS, HELLO_RETRY_US, NEIGHBOUR_TIMEOUT_US,
    PEERS_ANSWER_US, PEER_EXCHANGE_US, SEED_PEERS_PER_ANSWER, SEED_TIMEOUT_US, TRACKER_SAMPLE,
};
use crate::core::neighbours::{Neighbour, Neighbours};
use crate::core::outbox::Outbox;
use crate::core::place::join_index_base;
use crate::core::rng::Rng;
use crate::core::stripes::StripeSet;
use crate::core::tree::Place;
use crate::core::units::Seq;
use crate::media::identity::StreamId;
use crate::proto::wire::{self, Message, PeerInfo, Role, MAX_PEERS_PER_MESSAGE};

/// A Hello sent and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloAttempt {
    /// What the Welcome must echo.
    pub nonce: u64,
    pub last_sent: u64,
    pub attempts: u32,
    /// Who named the address (a Peers answer): asked to introduce us if the first Hello
    /// goes unanswered.
    pub via: Option<SocketAddr>,
    /// Sent because a neighbour introduced the address: never retried, so an introduction
    /// costs one Hello, whoever it names.
    pub once: bool,
}

/// The seed's tracker: it hands out join indices and member stripes, and remembers a uniform
/// sample of the peers that confirmed to name in its answers.
#[derive(Debug, Default)]
pub struct Tracker {
    sample: Vec<PeerInfo>,
    /// Peers that confirmed, ever.
    seen: u64,
    next_index: u64,
    /// Joiners assigned so far (member stripes go round-robin).
    assigned: u64,
}

/// A peer's ways to find more neighbours.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Last time it went back to the bootstrap addresses.
    last_bootstrap: u64,
    next_peer_exchange: u64,
}

#[derive(Debug)]
pub enum RoleState {
    Seed(Tracker),
    Peer(Discovery),
}

/// What the Welcome to a Hello carries of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloAnswer {
    /// Seed to a joiner without an index: its index and member stripe.
    pub assigned: Option<(u64, u8)>,
    /// The Hello's nonce, echoed.
    pub nonce: u64,
    /// The sender's address token.
    pub token: u64,
}

/// What a Confirm did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// Its token was wrong: dropped.
    Dropped,
    /// From a neighbour already known.
    Known,
    /// A new neighbour: tell it what we hold.
    Added,
    /// We are full and said Goodbye.
    Full,
}

#[derive(Debug)]
pub struct Membership {
    stream: StreamId,
    bootstrap: Vec<SocketAddr>,
    token_secret: [u8; 32],
    /// Keys the Hello nonces: each is a keyed hash of a draw of the seeded generator, so
    /// none gives away its state (see [`Config::secret`](crate::core::config::Config)).
    nonce_key: [u8; 32],
    hellos: BTreeMap<SocketAddr, HelloAttempt>,
    /// Tokens other nodes gave us in their Welcome (for GetPeers as a non-neighbour).
    tokens: BTreeMap<SocketAddr, u64>,
    /// Bootstrap nodes that answered our Hello with a Refuse: they serve another stream.
    refused_by: BTreeSet<SocketAddr>,
    /// Whom we asked for peers, when, and who has not answered: a Peers list is read only
    /// from them, one list per question, for [`PEERS_ANSWER_US`] (unsolicited lists of
    /// nobodies filled a viewer's contacts and cut it off from real peers). Kept when the
    /// node leaves us: a full node's Goodbye overtakes its answer.
    asked_for_peers: BTreeMap<SocketAddr, u64>,
    pub role: RoleState,
    /// Addresses our own Hellos came back from (at most a few: one per way others see us).
    myself: BTreeSet<SocketAddr>,
    /// Our address on our LAN, told in Confirms.
    lan: Option<SocketAddr>,
    /// Peers greeted at their LAN address (behind our own NAT): what they see of us says
    /// nothing of how the internet sees us. Bounded by the contacts we keep.
    on_our_lan: BTreeSet<SocketAddr>,
}

impl Membership {
    pub fn new(
        role: Role,
        stream: StreamId,
        bootstrap: Vec<SocketAddr>,
        now: u64,
        secret: &[u8; 32],
        rng: &mut Rng,
    ) -> Membership {
        let mut drawn = [0u8; 32];
        for b in drawn.chunks_mut(8) {
            b.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let key = |purpose: &[u8]| {
            let mut hasher = blake3::Hasher::new_keyed(secret);
            hasher.update(purpose).update(&drawn);
            *hasher.finalize().as_bytes()
        };
        Membership {
            stream,
            bootstrap,
            token_secret: key(b"bl address tokens"),
            nonce_key: key(b"bl hello nonces"),
            hellos: BTreeMap::new(),
            tokens: BTreeMap::new(),
            refused_by: BTreeSet::new(),
            asked_for_peers: BTreeMap::new(),
            myself: BTreeSet::new(),
            lan: None,
            on_our_lan: BTreeSet::new(),
            role: match role {
                Role::Seed => RoleState::Seed(Tracker {
                    next_index: 1,
                    ..Tracker::default()
                }),
                Role::Peer => RoleState::Peer(Discovery {
                    last_bootstrap: now,
                    next_peer_exchange: now,
                }),
            },
        }
    }

    pub fn bootstrap(&self) -> &[SocketAddr] {
        &self.bootstrap
    }

    /// Hellos sent and not yet answered.
    pub fn greeting(&self, addr: &SocketAddr) -> bool {
        self.hellos.contains_key(addr)
    }

    pub fn greetings(&self) -> usize {
        self.hellos.len()
    }

    pub fn set_lan(&mut self, lan: SocketAddr) {
        self.lan = Some(lan);
    }

    /// A Hello for an introduction: sent once, not retried.
    pub fn send_introduced_hello(
        &mut self,
        now: u64,
        to: SocketAddr,
        place: &Place,
        rng: &mut Rng,
        out: &mut Outbox,
    ) {
        self.send_hello(now, to, place, rng, out);
        if let Some(h) = self.hellos.get_mut(&to) {
            h.once = true;
        }
    }

    /// Whether we greeted `addr` at its LAN address.
    pub fn on_our_lan(&self, addr: &SocketAddr) -> bool {
        self.on_our_lan.contains(addr)
    }

    /// An address that turned out to be ourselves.
    pub fn is_myself(&self, addr: &SocketAddr) -> bool {
        self.myself.contains(addr)
    }

    /// Neither us (by any address we know as ours), a neighbour, greeted already, nor
    /// banned: an address from a Peers list worth a Hello.
    pub fn is_stranger(
        &self,
        addr: &SocketAddr,
        local_addr: Option<SocketAddr>,
        neighbours: &Neighbours,
        banned: impl Fn(&SocketAddr) -> bool,
    ) -> bool {
        let me = local_addr == Some(*addr) || self.lan == Some(*addr) || self.myself.contains(addr);
        !me && !neighbours.contains_key(addr) && !self.hellos.contains_key(addr) && !banned(addr)
    }

    /// The address token we hand `addr`: it proves, when it comes back, that `addr`
    /// receives at its address.
    pub fn token_for(&self, addr: SocketAddr) -> u64 {
        keyed_u64(&self.token_secret, addr.to_string().as_bytes())
    }

    /// Whether `message` from `from` is read at all. Only the handshake and stats requests
    /// are accepted from strangers, plus what proves an earlier exchange: a Welcome to our
    /// Hello, a GetPeers with our token, and Peers we asked for (from a neighbour, or from a
    /// full seed whose Goodbye overtook them: without them its joiner stays alone).
    pub fn admits(&self, message: &Message, from: SocketAddr, known: bool) -> bool {
        if matches!(message, Message::Peers { .. }) {
            return self.asked_for_peers.contains_key(&from);
        }
        known
            || matches!(
                message,
                Message::Hello(_) | Message::Confirm { .. } | Message::StatsRequest { .. }
            )
            || (matches!(message, Message::Welcome(_) | Message::Refuse { .. })
                && self.hellos.contains_key(&from))
            || matches!(message, Message::GetPeers { token } if *token == self.token_for(from))
    }

    pub fn send_hello(
        &mut self,
        now: u64,
        to: SocketAddr,
        place: &Place,
        rng: &mut Rng,
        out: &mut Outbox,
    ) {
        let entry = self.hellos.entry(to).or_insert(HelloAttempt {
            nonce: 0,
            last_sent: now,
            attempts: 0,
            via: None,
            once: false,
        });
        if entry.attempts == 0 {
            entry.nonce = keyed_u64(&self.nonce_key, &rng.next_u64().to_le_bytes());
        }
        entry.last_sent = now;
        entry.attempts += 1;
        let index = (place.index > 0 || place.role == Role::Seed).then_some(place.index);
        let hello = wire::hello(self.stream, entry.nonce, place.role, index, place.member);
        out.send_owned(to, hello);
    }

    /// A Hello of `len` bytes: answered only when padded to [`wire::HELLO_MIN_SIZE`], with
    /// a Welcome no larger than it (no amplification). Returns what the Welcome carries of
    /// the handshake: the joiner's assigned index and member stripe (the seed's tracker
    /// hands them out to peers that have none), the echoed nonce and `from`'s token.
    pub fn on_hello(
        &mut self,
        from: SocketAddr,
        hello: &wire::Hello,
        len: usize,
        stripes: u8,
        highest: Option<Seq>,
        out: &mut Outbox,
    ) -> Option<HelloAnswer> {
        if len < wire::HELLO_MIN_SIZE {
            out.count_dropped();
            return None;
        }
        if self
            .hellos
            .get(&from)
            .is_some_and(|h| h.nonce == hello.nonce)
        {
            // Our own Hello came back: `from` is us as others see us (a tracker or the DHT
            // listed our public address). Never greet it again.
            self.hellos.remove(&from);
            // A few ways others see us at most; a handful of echoing strangers cannot grow it.
            if self.myself.len() >= MYSELF_MAX {
                self.myself.pop_first();
            }
            self.myself.insert(from);
            return None;
        }
        if hello.stream != self.stream {
            // Say which stream we serve, so a wrong link is reported at once rather than
            // waited on. The Refuse is smaller than the padded Hello: no amplification.
            let refuse = Message::Refuse {
                nonce: hello.nonce,
                stream: self.stream,
            };
            out.send(from, &refuse);
            return None;
        }
        let assigned = match &mut self.role {
            RoleState::Seed(tracker) if hello.role == Role::Peer && hello.index.is_none() => {
                let index = tracker.next_index.max(join_index_base(highest) + 1);
                tracker.next_index = index + 1;
                let member = tracker.assigned % u64::from(stripes);
                tracker.assigned += 1;
                Some((index, member as u8))
            }
            _ => None,
        };
        Some(HelloAnswer {
            assigned,
            nonce: hello.nonce,
            token: self.token_for(from),
        })
    }

    /// A Welcome echoing `nonce` answers our Hello to `from`: the attempt, or None (no Hello
    /// went there; a wrong nonce is counted as dropped).
    pub fn take_hello(
        &mut self,
        from: SocketAddr,
        nonce: u64,
        out: &mut Outbox,
    ) -> Option<HelloAttempt> {
        let attempt = *self.hellos.get(&from)?;
        if nonce != attempt.nonce {
            out.count_dropped();
            return None;
        }
        self.hellos.remove(&from);
        Some(attempt)
    }

    /// Completes the handshake `from` welcomed: it becomes a neighbour (unless we are full),
    /// our Confirm proves our address, and while short of neighbours we ask it for more.
    /// Both sides may have said Hello at once: an existing neighbour keeps its state (above
    /// all the stripes we feed it).
    #[allow(clippy::too_many_arguments)]
    pub fn welcomed(
        &mut self,
        now: u64,
        from: SocketAddr,
        welcome: &wire::Welcome,
        attempt: HelloAttempt,
        place: &Place,
        tuning: &Tuning,
        neighbours: &mut Neighbours,
        out: &mut Outbox,
    ) {
        if let Some(n) = neighbours.get_mut(&from) {
            n.role = welcome.role;
            n.index = welcome.index;
            n.member = welcome.member;
        } else if neighbours.len() >= tuning.max_neighbours {
            return;
        } else {
            let n = Neighbour::new(welcome.role, welcome.index, welcome.member, now);
            neighbours.insert(from, n);
        }
        // A Welcome to our only Hello times the round trip.
        if attempt.attempts == 1 {
            neighbours.note_rtt(from, now.saturating_sub(attempt.last_sent));
        }
        out.send(from, &confirm(welcome.token, place, self.lan));
        if let Some(n) = neighbours.get_mut(&from) {
            n.unconfirmed = Some(1);
        }
        self.tokens.insert(from, welcome.token);
        if neighbours.len() < tuning.target_neighbours {
            self.ask_for_peers(now, from, welcome.token, out);
        }
    }

    /// Neighbour `to` has a place it never told us ([`Neighbour::place_unheard`]). Taken for
    /// a leaf of every stripe, it was never asked to feed one: three viewers started together
    /// through a tracker each asked only the seed for every stripe, and its budget left
    /// stripes to repairs (tests/discovery.rs: chunks skipped in 2 runs of 51). A Hello asks
    /// it again, unless one is pending, and its Welcome carries its place
    /// ([`Membership::welcomed`]).
    pub fn ask_place(
        &mut self,
        now: u64,
        to: SocketAddr,
        place: &Place,
        rng: &mut Rng,
        out: &mut Outbox,
    ) {
        if !self.hellos.contains_key(&to) {
            self.send_hello(now, to, place, rng, out);
        }
    }

    /// Asks neighbour `to` for peers (with the token it gave us).
    pub fn ask_neighbour_for_peers(&mut self, now: u64, to: SocketAddr, out: &mut Outbox) {
        let token = self.tokens.get(&to).copied().unwrap_or(0);
        self.ask_for_peers(now, to, token, out);
    }

    fn ask_for_peers(&mut self, now: u64, to: SocketAddr, token: u64, out: &mut Outbox) {
        self.asked_for_peers.insert(to, now);
        out.send(to, &Message::GetPeers { token });
    }

    /// A Refuse echoing the nonce of our Hello to `from`: it serves `stream`, not ours.
    /// Returns true once every bootstrap node refused: the link names the wrong stream.
    pub fn on_refuse(
        &mut self,
        from: SocketAddr,
        nonce: u64,
        stream: StreamId,
        out: &mut Outbox,
    ) -> bool {
        if self.take_hello(from, nonce, out).is_none() {
            return false;
        }
        out.warn(format!(
            "{from} serves stream {stream}, not {}: check the link",
            self.stream
        ));
        self.refused_by.insert(from);
        !self.bootstrap.is_empty() && self.bootstrap.iter().all(|b| self.refused_by.contains(b))
    }

    /// A Confirm: `from` proved its address with our token and becomes a neighbour.
    #[allow(clippy::too_many_arguments)]
    pub fn on_confirm(
        &mut self,
        now: u64,
        from: SocketAddr,
        token: u64,
        index: u64,
        member: Option<u8>,
        lan: Option<SocketAddr>,
        tuning: &Tuning,
        neighbours: &mut Neighbours,
        rng: &mut Rng,
        out: &mut Outbox,
    ) -> ConfirmOutcome {
        if token != self.token_for(from) {
            out.count_dropped();
            return ConfirmOutcome::Dropped;
        }
        // The seed, as tracker, samples everyone who joined, neighbour or not, evenly over
        // time (reservoir sampling): its own neighbours alone would send a hundred thousand
        // joiners to the same thousand full peers, and only the latest joiners (bl-sim,
        // 10,000 in 5 s) chained each one to the previous half second's, a tree too deep
        // for the playout latency.
        if let (RoleState::Seed(tracker), Some(member)) = (&mut self.role, member) {
            if !tracker.sample.iter().any(|p| p.addr == from) {
                let info = PeerInfo {
                    addr: from,
                    index,
                    member,
                    lan,
                };
                tracker.seen += 1;
                if tracker.sample.len() < TRACKER_SAMPLE {
                    tracker.sample.push(info);
                } else {
                    let slot = (rng.next_u64() % tracker.seen) as usize;
                    if let Some(p) = tracker.sample.get_mut(slot) {
                        *p = info;
                    }
                }
            }
        }
        if neighbours.contains_key(&from) {
            return ConfirmOutcome::Known;
        }
        if neighbours.len() >= tuning.max_neighbours {
            // Full: say so (a Goodbye is smaller than the Confirm) so the joiner does not
            // count us; it can still ask us for peers with its token.
            out.send(from, &Message::Goodbye);
            return ConfirmOutcome::Full;
        }
        let mut n = Neighbour::new(Role::Peer, index, member, now);
        n.lan = lan;
        neighbours.insert(from, n);
        ConfirmOutcome::Added
    }

    /// Answers GetPeers with peers at random among our neighbours and (seed) the tracker's
    /// sample. The seed answers every joiner, so it names fewer: enough to start peer
    /// exchange with.
    pub fn answer_get_peers(
        &self,
        from: SocketAddr,
        first: Option<PeerInfo>,
        neighbours: &Neighbours,
        rng: &mut Rng,
        out: &mut Outbox,
    ) {
        let mut candidates: Vec<PeerInfo> = neighbours
            .iter()
            .filter(|(addr, n)| {
                **addr != from && n.role == Role::Peer && first.is_none_or(|f| f.addr != **addr)
            })
            .filter_map(|(addr, n)| {
                n.member.map(|member| PeerInfo {
                    addr: *addr,
                    index: n.index,
                    member,
                    lan: n.lan,
                })
            })
            .collect();
        let limit = match &self.role {
            RoleState::Seed(tracker) => {
                for p in &tracker.sample {
                    if p.addr != from && !neighbours.contains_key(&p.addr) {
                        candidates.push(*p);
                    }
                }
                SEED_PEERS_PER_ANSWER
            }
            RoleState::Peer(_) => MAX_PEERS_PER_MESSAGE,
        };
        candidates.sort_by_key(|p| p.index);
        let mut peers: Vec<PeerInfo> = first.into_iter().collect();
        while !candidates.is_empty() && peers.len() < limit {
            let i = rng.below(candidates.len());
            peers.push(candidates.swap_remove(i));
        }
        out.send(from, &Message::Peers { peers });
    }

    /// Peers named by someone: greeted while below the target. Beyond it only members of a
    /// stripe we have no parent in (`orphans`): the members we know may all be full. In our
    /// own stripe only older members can feed us, and one of us without a parent cuts off a
    /// whole subtree, so more of them are let in. The first peer `our_parent` names, if an
    /// older member of our stripe, is greeted up to the cap and returned: a climb's target.
    #[allow(clippy::too_many_arguments)]
    pub fn on_peers(
        &mut self,
        now: u64,
        from: SocketAddr,
        our_parent: Option<SocketAddr>,
        peers: &[PeerInfo],
        place: &Place,
        orphans: StripeSet,
        local_addr: Option<SocketAddr>,
        public_ip: Option<std::net::IpAddr>,
        tuning: &Tuning,
        neighbours: &Neighbours,
        banned: impl Fn(&SocketAddr) -> bool,
        rng: &mut Rng,
        out: &mut Outbox,
    ) -> Option<SocketAddr> {
        self.asked_for_peers.remove(&from);
        let mut greeted_above = None;
        for (i, mut p) in peers.iter().copied().enumerate() {
            // Behind our own NAT: greet it on our LAN (no hairpin through the router).
            if let (Some(lan), Some(ip)) = (p.lan, public_ip) {
                if p.addr.ip() == ip {
                    p.addr = lan;
                    if self.on_our_lan.len() < tuning.max_neighbours {
                        self.on_our_lan.insert(lan);
                    }
                }
            }
            let contacts = neighbours.len() + self.hellos.len();
            let orphaned = orphans.contains(p.member);
            let older_of_ours = place.member == Some(p.member) && p.index < place.index;
            let extra = if older_of_ours { 12 } else { 4 };
            let wanted = contacts < tuning.target_neighbours
                || (orphaned && contacts < tuning.target_neighbours + extra);
            // Our parent names its own first: greeted up to the cap (crate::core::climb).
            let above = i == 0 && older_of_ours && Some(from) == our_parent;
            let open = wanted || (above && contacts < tuning.max_neighbours);
            if open && self.is_stranger(&p.addr, local_addr, neighbours, &banned) {
                self.send_hello(now, p.addr, place, rng, out);
                if let Some(h) = self.hellos.get_mut(&p.addr) {
                    h.via = Some(from);
                }
                if !wanted {
                    greeted_above = Some(p.addr);
                }
            }
        }
        greeted_above
    }

    /// A neighbour is gone (or banned): not a peer to hand out any more, nor to greet. Its
    /// token goes too, unless it is a bootstrap node (a full seed answers GetPeers with it):
    /// a peer greets a stranger every few seconds for nearness and lets most go, and kept
    /// every token, so its memory grew with its uptime: a hundred strangers let go left a
    /// hundred tokens (`a_peer_keeps_no_token_of_a_node_it_let_go`).
    pub fn forget(&mut self, addr: SocketAddr) {
        if let RoleState::Seed(tracker) = &mut self.role {
            tracker.sample.retain(|p| p.addr != addr);
        }
        self.hellos.remove(&addr);
        if !self.bootstrap.contains(&addr) {
            self.tokens.remove(&addr);
        }
    }

    /// Tokens kept: at most one a neighbour and one a bootstrap node.
    #[cfg(test)]
    pub fn tokens_kept(&self) -> usize {
        self.tokens.len()
    }

    /// Questions for peers unanswered for [`PEERS_ANSWER_US`] are forgotten.
    pub fn forget_unanswered(&mut self, now: u64) {
        self.asked_for_peers
            .retain(|_, asked| now < *asked + PEERS_ANSWER_US);
    }

    /// Neighbours that went silent: the seed is gone after [`SEED_TIMEOUT_US`], a peer after
    /// [`NEIGHBOUR_TIMEOUT_US`].
    pub fn silent(now: u64, neighbours: &Neighbours) -> Vec<SocketAddr> {
        neighbours
            .iter()
            .filter(|(_, n)| {
                let timeout = match n.role {
                    Role::Seed => SEED_TIMEOUT_US,
                    Role::Peer => NEIGHBOUR_TIMEOUT_US,
                };
                now > n.last_heard + timeout
            })
            .map(|(a, _)| *a)
            .collect()
    }

    /// Hellos unanswered are sent again, backing off exponentially: a flash crowd at a full
    /// seed must not turn its retries into a flood that crowds out the stream (bl-sim,
    /// 100,000 joiners in 5 s). After [`HELLO_ATTEMPTS`] we give up, except on bootstrap
    /// nodes.
    pub fn retry_hellos(&mut self, now: u64, place: &Place, rng: &mut Rng, out: &mut Outbox) {
        let retry: Vec<(SocketAddr, u32)> = self
            .hellos
            .iter()
            .filter(|(_, h)| {
                now >= h.last_sent + (HELLO_RETRY_US << h.attempts.saturating_sub(1).min(3))
            })
            .map(|(a, h)| (*a, h.attempts))
            .collect();
        for (addr, attempts) in retry {
            let once = self.hellos.get(&addr).is_some_and(|h| h.once);
            if once || (attempts >= HELLO_ATTEMPTS && !self.bootstrap.contains(&addr)) {
                self.hellos.remove(&addr);
            } else {
                self.send_hello(now, addr, place, rng, out);
                // Unanswered once: behind a NAT, `addr` lets our Hello in only if it sends
                // to us too. The node that named it tells it to (hole punching through a
                // rendezvous); on an open network the first Hello was answered and nobody
                // is asked.
                let via = self.hellos.get(&addr).and_then(|h| h.via);
                if let (1, Some(via)) = (attempts, via) {
                    out.send(via, &Message::Introduce { peer: addr });
                }
            }
        }
    }

    /// Confirms not yet answered by anything are sent again, at most [`HELLO_ATTEMPTS`]
    /// times.
    pub fn retry_confirms(
        &self,
        now: u64,
        place: &Place,
        neighbours: &mut Neighbours,
        out: &mut Outbox,
    ) {
        let unanswered: Vec<SocketAddr> = neighbours
            .iter()
            .filter(|(_, n)| {
                n.unconfirmed.is_some_and(|sent| {
                    sent < HELLO_ATTEMPTS as u8
                        && now >= n.last_heard + HELLO_RETRY_US * u64::from(sent)
                })
            })
            .map(|(a, _)| *a)
            .collect();
        for addr in unanswered {
            if let Some(&token) = self.tokens.get(&addr) {
                out.send(addr, &confirm(token, place, self.lan));
            }
            if let Some(n) = neighbours.get_mut(&addr) {
                n.unconfirmed = n.unconfirmed.map(|sent| sent + 1);
            }
        }
    }

    /// Peer: back to the bootstrap nodes when short of neighbours (every neighbour left, the
    /// seed restarted), or when most neighbours leave our requests unanswered: liars whose
    /// Peers lists name only liars had surrounded a peer, which played nothing from 6 s on
    /// (bl-sim, 1,000 peers, 5 % liars, seed 12). A seed that is full still answers GetPeers
    /// with our token.
    #[allow(clippy::too_many_arguments)]
    pub fn rebootstrap(
        &mut self,
        now: u64,
        place: &Place,
        tuning: &Tuning,
        finished: bool,
        neighbours: &Neighbours,
        rng: &mut Rng,
        out: &mut Outbox,
    ) {
        let RoleState::Peer(discovery) = &mut self.role else {
            return;
        };
        let short = neighbours.len() < tuning.target_neighbours / 2;
        let surrounded =
            || 2 * neighbours.values().filter(|n| n.ignores_us()).count() > neighbours.len();
        if !(short || surrounded())
            || !self.hellos.is_empty()
            || finished
            || now < discovery.last_bootstrap + BOOTSTRAP_RETRY_US
        {
            return;
        }
        discovery.last_bootstrap = now;
        for addr in self.bootstrap.clone() {
            match self.tokens.get(&addr) {
                Some(&token) if !neighbours.is_empty() => self.ask_for_peers(now, addr, token, out),
                _ => self.send_hello(now, addr, place, rng, out),
            }
        }
    }

    /// Peer: peer exchange every [`PEER_EXCHANGE_US`] while below the target or without a
    /// parent in some stripe. Other peers are asked first: the seed's upload is the scarce
    /// resource, and at 100,000 peers its tracker answers alone would outweigh the stream.
    pub fn exchange_peers(
        &mut self,
        now: u64,
        tuning: &Tuning,
        orphans: StripeSet,
        neighbours: &Neighbours,
        rng: &mut Rng,
        out: &mut Outbox,
    ) {
        let RoleState::Peer(discovery) = &mut self.role else {
            return;
        };
        if now < discovery.next_peer_exchange || neighbours.is_empty() {
            return;
        }
        discovery.next_peer_exchange = now + PEER_EXCHANGE_US;
        if neighbours.len() >= tuning.target_neighbours && orphans.is_empty() {
            return;
        }
        let peers: Vec<SocketAddr> = neighbours
            .iter()
            .filter(|(_, n)| n.role == Role::Peer)
            .map(|(a, _)| *a)
            .collect();
        let addrs: Vec<SocketAddr> = if peers.is_empty() {
            neighbours.keys().copied().collect()
        } else {
            peers
        };
        let Some(&pick) = addrs.get(rng.below(addrs.len())) else {
            return;
        };
        self.ask_neighbour_for_peers(now, pick, out);
    }
}

/// Our Confirm of a Welcome that carried `token`.
/// Addresses remembered as ourselves (one per way others see us: public, LAN, loopback).
const MYSELF_MAX: usize = 8;

pub fn confirm(token: u64, place: &Place, lan: Option<SocketAddr>) -> Message {
    Message::Confirm {
        token,
        index: place.index,
        member: place.member,
        lan,
    }
}

/// The first 8 bytes (LE) of the keyed blake3 hash of `data`: tokens and nonces.
fn keyed_u64(key: &[u8; 32], data: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&blake3::keyed_hash(key, data).as_bytes()[..8]);
    u64::from_le_bytes(first)
}
