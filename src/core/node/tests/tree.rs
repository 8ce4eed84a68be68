//! The stripe trees a swarm builds, seen from outside the tree: who feeds whom, and when
//! that changes.

use super::*;

fn parents(net: &Net) -> Vec<Vec<Option<SocketAddr>>> {
    net.nodes
        .iter()
        .filter(|(_, n)| n.cfg.role == Role::Peer)
        .map(|(_, n)| n.tree.parents())
        .collect()
}

/// Peers that join before the stream begins keep the parents they chose: neither the wait
/// nor the stream's first chunks (which reach the stripes a few ms apart) make them quiet.
/// Before, every Have of nothing counted as "the stream moved on without us", and every
/// parent was replaced a second after it was chosen: on loopback with 10 peers the seed
/// ended up feeding 1.9× the stream instead of 1.08×.
#[test]
fn parents_chosen_before_the_stream_are_kept_when_it_begins() {
    let key = StreamKey::from_seed([6; 32]);
    let mut net = Net::new(&key, 6);
    net.run_until(T0 + 1_500_000);
    let chosen = parents(&net);
    assert!(
        chosen.iter().flatten().all(Option::is_some),
        "every stripe of every peer has a parent: {chosen:?}"
    );
    net.run_until(T0 + 5_000_000);
    assert_eq!(
        parents(&net),
        chosen,
        "a parent was replaced before the stream began"
    );
    stream(&mut net, &key, 0..400);
    assert_eq!(
        parents(&net),
        chosen,
        "a parent was replaced when the stream began"
    );
    net.run_until(net.now + 500_000);
    for (addr, played) in &net.played {
        assert_eq!(
            played,
            &(0..400).collect::<Vec<_>>(),
            "{addr} played every chunk"
        );
    }
}

/// Without loss, the trees carry everything: no peer asks for a chunk, and none receives
/// a chunk twice, from the stream's start through its end (whose record every node sends to
/// every neighbour on purpose, and which is not counted as a duplicate).
#[test]
fn a_lossless_swarm_asks_for_nothing_and_receives_nothing_twice() {
    let key = StreamKey::from_seed([8; 32]);
    let mut net = Net::new(&key, 6);
    net.run_until(T0 + 1_500_000);
    stream(&mut net, &key, 0..400);
    end_stream(&mut net, &key, 400);
    net.run_until(net.now + 2_000_000);
    for (addr, node) in net.nodes.iter().skip(1) {
        let stats = node.stats();
        assert_eq!(stats.counters.chunks_skipped, 0, "{addr} skipped chunks");
        assert!(
            stats.counters.chunks_played >= 400,
            "{addr} played every chunk"
        );
        assert_eq!(
            stats.sent.get("request").datagrams,
            0,
            "{addr} asked for chunks"
        );
        assert_eq!(
            stats.counters.chunks_duplicate, 0,
            "{addr} received duplicates"
        );
    }
}

/// The seed asks nobody to feed it: a neighbour's unasked acceptance does not make it the
/// seed's parent (a tree neighbour, sent the seed's Haves every tick instead of every 3 s).
#[test]
fn a_seed_takes_no_parent_from_an_unasked_acceptance() {
    let key = StreamKey::from_seed([31; 32]);
    let mut net = Net::new(&key, 2);
    net.run_until(T0 + 200_000);
    let peer = addr(1);
    assert!(net.seed().neighbour_addrs().any(|a| a == peer), "joined");
    let now = net.now;
    for stripe in 0..4 {
        let accept = wire::encode(&Message::SubscribeReply {
            stripe,
            accepted: true,
        })
        .unwrap();
        net.seed().handle_datagram(now, peer, &accept);
    }
    assert_eq!(net.seed().parents(), vec![None; 4]);
    let (sent, _) = drain(net.seed());
    assert!(
        !sent
            .iter()
            .any(|t| t.to == peer && matches!(t.message, Message::Unsubscribe { .. })),
        "ignored, not answered"
    );
}
