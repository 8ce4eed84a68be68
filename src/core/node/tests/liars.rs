//! Lying neighbours. Haves from as many liars as honest neighbours or more must not drop what
//! a peer is repairing, nor fill its missing set for good; a Welcome's forged index must not
//! stick.

use super::*;
use crate::core::config::CLAIM_SLACK_SEQS;

/// A Have claiming every seq up to `highest`.
fn lie(highest: u64) -> Vec<u8> {
    wire::encode(&Message::Have {
        first: 0,
        highest,
        recent: u128::MAX,
        children: 0,
        spare: 255,
        depth: 0,
    })
    .unwrap()
}

/// Seed and three peers; chunk 30 does not reach peer 1 until `hold` is cleared.
fn swarm_missing_30(key: &StreamKey) -> (Net, std::rc::Rc<std::cell::Cell<bool>>) {
    let mut net = Net::new(key, 3);
    let hold = hold_chunk_30_from_peer_1(&mut net);
    net.run_until(T0 + 300_000);
    (net, hold)
}

#[test]
fn a_majority_of_lying_neighbours_does_not_drop_what_a_peer_is_repairing() {
    let key = StreamKey::from_seed([5; 32]);
    let (mut net, hold) = swarm_missing_30(&key);
    stream(&mut net, &key, 0..50);
    net.run_until(net.now + 100_000);
    assert!(net.nodes[1].1.repair.missing.contains(Seq(30)));
    // Peers 2 and 3 lie, again and again: the median of the three Haves peer 1 hears is
    // theirs. Acted on, it dropped everything a history behind a seq far ahead.
    for round in 0..5u64 {
        let now = net.now;
        for liar in [addr(2), addr(3)] {
            net.nodes[1]
                .1
                .handle_datagram(now, liar, &lie(u64::MAX / 2 + round));
        }
        let node = &net.nodes[1].1;
        assert!(
            node.repair.missing.contains(Seq(30)),
            "round {round}: the liars' median cleared chunk 30"
        );
        let quarter = node.cfg.tuning.history as u64 / 4;
        let span = node.repair.missing.span() as u64;
        assert!(
            span <= 2 * quarter,
            "round {round}: the missing set spans {span} seqs on the liars' word"
        );
        net.run_until(net.now + 50_000);
    }
    hold.set(false);
    stream(&mut net, &key, 50..100);
    net.run_until(net.now + 1_000_000);
    assert_eq!(net.played[&addr(1)], (0..100).collect::<Vec<_>>());
}

/// A liar answers a late joiner's Hello first, claims to be the seed and numbers it 2: among
/// the stream's first members, older than every peer already in its stripe. The joiner's
/// first verified chunk shows the index is from long before: it is drawn again after it.
#[test]
fn a_forged_welcome_index_from_long_before_the_first_chunk_is_drawn_again() {
    let key = StreamKey::from_seed([31; 32]);
    let mut net = Net::new(&key, 2);
    net.run_until(T0 + 300_000);
    stream(&mut net, &key, 0..1500);
    let liar = addr(9);
    let mut cfg = Config::new(Role::Peer, key.id());
    cfg.bootstrap = vec![liar, addr(0)];
    cfg.rng_seed = 9;
    cfg.tuning.latency_us = 500_000;
    cfg.tuning.history = 1024; // the window: 1,500 seqs are past it
    let mut joiner = Node::new(cfg, net.now);
    joiner.set_local_addr(addr(3));
    let (hellos, _) = drain(&mut joiner);
    let nonce = hellos
        .iter()
        .find_map(|t| match &t.message {
            Message::Hello(h) if t.to == liar => Some(h.nonce),
            _ => None,
        })
        .expect("a Hello to the liar");
    let forged = Message::Welcome(Box::new(wire::Welcome {
        nonce,
        token: 1,
        role: Role::Seed,
        index: 0,
        member: None,
        stripes: 4,
        assigned: Some((2, 0)),
        latest_keyframe: None,
        latest_seq: None,
        observed: addr(3),
    }));
    joiner.handle_datagram(net.now, liar, &wire::encode(&forged).unwrap());
    assert_eq!(joiner.index(), 2, "the forged index is taken at first");
    // The Hello to the seed was drained above: the joiner greets it again on its own.
    net.nodes.push((addr(3), joiner));
    stream(&mut net, &key, 1500..1900);
    let joiner = &net.nodes[3].1;
    let older = net.nodes[1].1.index().max(net.nodes[2].1.index());
    assert!(
        older < 1024,
        "the first peers keep the seed's numbers: {older}"
    );
    assert!(
        joiner.index() / INDICES_PER_CHUNK > 1500,
        "numbered {} after the chunks it first got",
        joiner.index()
    );
    assert_eq!(joiner.stats().counters.positions_ignored, 1);
    let played = net.played.get(&addr(3)).expect("the joiner plays");
    assert!(played.len() > 100, "played {} chunks", played.len());
}

/// A newcomer claims index 1 in its Hello and Confirm to the seed, long after the stream
/// began: the seed ranks it, for its root slots, no older than a history before the newest
/// chunk (the claim itself is kept: peers order their trees by it), and counts the lie.
#[test]
fn a_seed_ranks_an_index_claimed_from_long_before_no_older_than_its_floor() {
    let key = StreamKey::from_seed([32; 32]);
    let mut net = Net::new(&key, 0);
    net.run_until(T0 + 100_000);
    stream(&mut net, &key, 0..5000); // past the seed's history of 4,096
    let liar = addr(9);
    let now = net.now;
    let hello = wire::encode(&wire::hello(key.id(), 7, Role::Peer, Some(1), Some(0))).unwrap();
    net.seed().handle_datagram(now, liar, &hello);
    let token = drain(net.seed())
        .0
        .into_iter()
        .find_map(|t| match t.message {
            Message::Welcome(w) if t.to == liar => Some(w.token),
            _ => None,
        })
        .expect("a Welcome");
    let confirm = Message::Confirm {
        token,
        index: 1,
        member: Some(0),
        lan: None,
    };
    net.seed()
        .handle_datagram(now, liar, &wire::encode(&confirm).unwrap());
    let seed = net.seed();
    let n = seed.neighbours.get(&liar).expect("a neighbour");
    assert_eq!(n.index, 1, "the claim is kept");
    let floor = join_index_base(Some(Seq(4999 - 4096)));
    assert_eq!(n.seed_rank_index(), floor);
    assert_eq!(seed.stats().counters.positions_ignored, 1);
}

/// A stripe child of the seed claims chunks past the seed's newest, which nobody can hold:
/// the seed lets it go from every stripe it fed, refuses its Subscribes for a while, and
/// keeps its claim out of what it believes. A claim within the slack for a second seed is
/// believed.
#[test]
fn a_seed_unseats_a_child_that_claims_chunks_past_its_newest() {
    let key = StreamKey::from_seed([33; 32]);
    let mut net = Net::new(&key, 3);
    net.run_until(T0 + 300_000);
    stream(&mut net, &key, 0..100);
    let (liar, fed) = net
        .seed()
        .neighbours
        .iter()
        .find(|(_, n)| !n.children.is_empty())
        .map(|(a, n)| (*a, n.children))
        .expect("a stripe child of the seed");
    let now = net.now;
    drain(net.seed());
    // Within the slack: believed, nothing changes.
    net.seed()
        .handle_datagram(now, liar, &lie(99 + CLAIM_SLACK_SEQS));
    assert_eq!(net.seed().neighbours.get(&liar).unwrap().children, fed);
    assert_eq!(net.seed().stats().counters.claims_refuted, 0);
    // Past it: let go of every stripe, told so, and barred.
    net.seed()
        .handle_datagram(now, liar, &lie(100 + CLAIM_SLACK_SEQS));
    let seed = net.seed();
    assert!(seed.neighbours.get(&liar).unwrap().children.is_empty());
    assert_eq!(seed.stats().counters.claims_refuted, 1);
    assert_ne!(
        seed.neighbours.get(&liar).unwrap().have.map(|h| h.highest),
        Some(100 + CLAIM_SLACK_SEQS),
        "the claim is not kept"
    );
    let (sent, events) = drain(seed);
    let unsubscribed: Vec<u8> = sent
        .iter()
        .filter_map(|t| match t.message {
            Message::Unsubscribe { stripe } if t.to == liar => Some(stripe),
            _ => None,
        })
        .collect();
    assert_eq!(unsubscribed, fed.iter().collect::<Vec<_>>());
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Warning(w) if w.contains("barred"))));
    let stripe = fed.iter().next().expect("a stripe");
    let subscribe = wire::encode(&Message::Subscribe {
        stripe,
        hold_after: None,
    })
    .unwrap();
    seed.handle_datagram(now + 1, liar, &subscribe);
    let (sent, _) = drain(seed);
    assert!(
        sent.iter().any(|t| t.to == liar
            && matches!(
                t.message,
                Message::SubscribeReply {
                    accepted: false,
                    ..
                }
            )),
        "refused while barred"
    );
    // The swarm plays on.
    stream(&mut net, &key, 100..200);
    net.run_until(net.now + 1_000_000);
    for i in 1..=3 {
        assert_eq!(
            net.played[&addr(i)],
            (0..200).collect::<Vec<_>>(),
            "peer {i}"
        );
    }
}

/// A peer most of whose neighbours leave its requests unanswered (liars whose Peers lists
/// name only liars) goes back to its bootstrap nodes for other contacts, as it does when
/// short of neighbours; with neighbours that answer, it does not.
#[test]
fn a_peer_surrounded_by_neighbours_that_ignore_it_goes_back_to_its_bootstrap() {
    let key = StreamKey::from_seed([34; 32]);
    let mut net = Net::new(&key, 7);
    let asked = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let count = asked.clone();
    net.filter = Box::new(move |from, to, bytes| {
        let asks = matches!(
            wire::decode(bytes),
            Ok(Message::GetPeers { .. } | Message::Hello(_))
        );
        if from == addr(1) && to == addr(0) && asks {
            count.set(count.get() + 1);
        }
        true
    });
    net.run_until(T0 + 1_000_000);
    stream(&mut net, &key, 0..100);
    let peer = &net.nodes[1].1;
    assert!(peer.neighbours.len() >= peer.cfg.tuning.target_neighbours / 2);
    let before = asked.get();
    net.run_until(net.now + 4_000_000);
    assert_eq!(asked.get(), before, "enough neighbours that answer");
    let peers: Vec<SocketAddr> = (2..=7).map(addr).collect();
    let n = net.nodes[1].1.neighbours.len();
    for a in peers.iter().take(n / 2 + 1) {
        if let Some(nb) = net.nodes[1].1.neighbours.get_mut(a) {
            nb.ignored = crate::core::neighbours::IGNORED_LIMIT;
            nb.ignored_since = net.now;
        }
    }
    net.run_until(net.now + 4_000_000);
    assert!(asked.get() > before, "back to the bootstrap node");
}
