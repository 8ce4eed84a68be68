//! Neighbours whose Haves lie, as many as the honest ones or more: what they claim must not
//! drop what a peer is repairing, nor fill its missing set for good.

use super::*;

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
