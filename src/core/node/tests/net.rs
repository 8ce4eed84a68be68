//! The test harness: cores wired together in virtual time, no sockets. Every datagram is
//! delivered 1 ms after it is sent (or dropped by a test-chosen filter).

use std::collections::BTreeMap;

use super::super::*;
use crate::media::chunk::FLAG_KEYFRAME;
use crate::media::identity::StreamKey;

/// Decides per datagram (from, to, bytes) whether it is delivered.
pub(super) type LinkFilter = Box<dyn Fn(SocketAddr, SocketAddr, &[u8]) -> bool>;

pub(super) struct Net {
    pub(super) nodes: Vec<(SocketAddr, Node)>,
    pub(super) in_flight: Vec<(u64, SocketAddr, SocketAddr, Vec<u8>)>,
    pub(super) played: BTreeMap<SocketAddr, Vec<u64>>,
    /// The capture time of each chunk played, in the same order.
    pub(super) played_captures: BTreeMap<SocketAddr, Vec<u64>>,
    /// How each node that finished said it ended.
    pub(super) finished: BTreeMap<SocketAddr, Finish>,
    pub(super) now: u64,
    /// Drops datagrams for which it returns false.
    pub(super) filter: LinkFilter,
}

pub(super) const T0: u64 = 1_700_000_000_000_000;

/// Everything a node queued: its datagrams and its events, each in order.
pub(crate) fn drain(node: &mut Node) -> (Vec<Transmit>, Vec<Event>) {
    let (mut transmits, mut events) = (Vec::new(), Vec::new());
    loop {
        match node.poll_output() {
            Output::Transmit(t) => transmits.push(t),
            Output::Event(e) => events.push(e),
            Output::Timeout(_) => return (transmits, events),
        }
    }
}

pub(super) fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i))
}

impl Net {
    pub(super) fn new(key: &StreamKey, peers: u16) -> Net {
        let mut seed_cfg = Config::new(Role::Seed, key.id());
        seed_cfg.rng_seed = 1;
        let mut nodes = vec![(addr(0), Node::new(seed_cfg, T0))];
        for i in 1..=peers {
            let mut cfg = Config::new(Role::Peer, key.id());
            cfg.bootstrap = vec![addr(0)];
            cfg.rng_seed = u64::from(i) + 1;
            cfg.tuning.latency_us = 500_000;
            nodes.push((addr(i), Node::new(cfg, T0)));
        }
        for (a, n) in nodes.iter_mut() {
            n.set_local_addr(*a);
        }
        Net {
            nodes,
            in_flight: Vec::new(),
            played: BTreeMap::new(),
            played_captures: BTreeMap::new(),
            finished: BTreeMap::new(),
            now: T0,
            filter: Box::new(|_, _, _| true),
        }
    }

    pub(super) fn collect(&mut self) {
        for (from, node) in self.nodes.iter_mut() {
            let (transmits, events) = drain(node);
            for t in transmits {
                // Through the real encoding, as a driver would.
                let bytes = wire::encode(&t.message).unwrap();
                assert_eq!(bytes.len(), t.len);
                if (self.filter)(*from, t.to, &bytes) {
                    self.in_flight.push((self.now + 1_000, *from, t.to, bytes));
                }
            }
            for e in events {
                match e {
                    Event::Play(c) => {
                        self.played.entry(*from).or_default().push(c.seq);
                        let captures = self.played_captures.entry(*from).or_default();
                        captures.push(c.capture_us);
                    }
                    Event::Internal(what) => panic!("{from}: {what}"),
                    Event::Finished(how) => {
                        self.finished.insert(*from, how);
                    }
                    Event::Warning(_) => {}
                }
            }
        }
    }

    /// Runs until `until`, in 1 ms steps.
    pub(super) fn run_until(&mut self, until: u64) {
        while self.now < until {
            self.now += 1_000;
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|(t, ..)| *t <= now);
            self.in_flight = later;
            for (_, from, to, bytes) in due {
                if let Some((_, node)) = self.nodes.iter_mut().find(|(a, _)| *a == to) {
                    node.handle_datagram(now, from, &bytes);
                }
            }
            for (_, node) in self.nodes.iter_mut() {
                if node.poll_timeout() <= now {
                    node.handle_timeout(now);
                }
            }
            self.collect();
        }
    }

    pub(super) fn seed(&mut self) -> &mut Node {
        &mut self.nodes[0].1
    }
}

pub(super) fn chunk(key: &StreamKey, seq: u64, now: u64) -> Chunk {
    let mut payload = vec![seq as u8; 188 * 6];
    for p in payload.chunks_exact_mut(188) {
        p[0] = 0x47;
    }
    Chunk::sign(
        key,
        seq,
        now,
        if seq % 50 == 0 { FLAG_KEYFRAME } else { 0 },
        payload,
    )
}

/// From now on chunk 30 does not reach peer 1 until the returned flag is cleared.
pub(super) fn hold_chunk_30_from_peer_1(net: &mut Net) -> std::rc::Rc<std::cell::Cell<bool>> {
    let hold = std::rc::Rc::new(std::cell::Cell::new(true));
    let held = hold.clone();
    net.filter = Box::new(move |_, to, bytes| {
        let is_30 = matches!(wire::decode(bytes), Ok(Message::Chunk(c) | Message::ChunkPrevPushed(c)) if c.seq == 30);
        !(held.get() && to == addr(1) && is_30)
    });
    hold
}

/// Feeds `count` chunks from the seed, one every 5 ms.
pub(super) fn stream(net: &mut Net, key: &StreamKey, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        let now = net.now;
        let c = chunk(key, seq, now);
        net.seed().handle_chunk(now, c);
        net.collect();
        net.run_until(now + 5_000);
    }
}

/// Feeds `seqs` from the seed, one every 5 ms, with a keyframe every 200 chunks (1 s).
pub(super) fn gop_stream(net: &mut Net, key: &StreamKey, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        let now = net.now;
        let flags = if seq % 200 == 0 { FLAG_KEYFRAME } else { 0 };
        let c = Chunk::sign(key, seq, now, flags, vec![0x47; 188]);
        net.seed().handle_chunk(now, c);
        net.collect();
        net.run_until(now + 5_000);
    }
}

/// A peer at `at`, knowing only the seed, joins now.
pub(super) fn join_peer(net: &mut Net, key: &StreamKey, at: SocketAddr) {
    let mut cfg = Config::new(Role::Peer, key.id());
    cfg.bootstrap = vec![addr(0)];
    cfg.rng_seed = 9;
    cfg.tuning.latency_us = 500_000;
    let mut node = Node::new(cfg, net.now);
    node.set_local_addr(at);
    net.nodes.push((at, node));
    net.collect();
}

/// Ends the stream as bl-chunk does: the signed end record at `seq`, then the seed's input
/// ends.
pub(super) fn end_stream(net: &mut Net, key: &StreamKey, seq: u64) {
    let now = net.now;
    net.seed()
        .handle_chunk(now, Chunk::end_record(key, seq, now));
    net.seed().handle_input_end(now);
}
