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
