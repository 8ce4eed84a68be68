//! Nearer neighbours ([`crate::core::proximity`]) through the node: a stranger that answers
//! nearer than an idle neighbour takes its place, but not that of the last older members of
//! our own stripe.

use super::climbing::{member, neighbour};
use super::*;
use crate::proto::wire::PeerInfo;

/// The stranger at `stranger` answers `node`'s probe 10 ms after the Hello: the neighbours
/// let go for it.
fn probe_answered(node: &mut Node, now: u64, stranger: SocketAddr) -> Vec<SocketAddr> {
    node.ask_for_a_stranger(now);
    let asked_for_peers = drain(node)
        .0
        .into_iter()
        .find(|t| matches!(t.message, Message::GetPeers { .. }))
        .map(|t| t.to)
        .expect("a neighbour asked for peers");
    let peers = Message::Peers {
        peers: vec![PeerInfo {
            addr: stranger,
            index: 300,
            member: 0,
            lan: None,
        }],
    };
    node.handle_datagram(now + 1, asked_for_peers, &wire::encode(&peers).unwrap());
    let nonce = drain(node)
        .0
        .into_iter()
        .find_map(|t| match t.message {
            Message::Hello(h) if t.to == stranger => Some(h.nonce),
            _ => None,
        })
        .expect("the stranger is greeted as a probe");
    let welcome = Message::Welcome(Box::new(wire::Welcome {
        nonce,
        token: 7,
        role: Role::Peer,
        index: 300,
        member: Some(0),
        stripes: 4,
        assigned: None,
        latest_keyframe: None,
        latest_seq: None,
        observed: addr(1),
    }));
    node.handle_datagram(now + 10_001, stranger, &wire::encode(&welcome).unwrap());
    drain(node)
        .0
        .into_iter()
        .filter(|t| t.message == Message::Goodbye)
        .map(|t| t.to)
        .collect()
}

/// A member of stripe 1 whose one older member of the stripe is far (200 ms) keeps it when
/// a stranger answers 10 ms away: the farthest other idle neighbour goes. Let go, the elder
/// would leave it nobody to take a place below in its stripe; before, a root the seed let go
/// as the swarm settled had let its one elder go so, found no place, and its subtree lived
/// on repairs (bl-sim, 50 peers × 8 s, the stream at 2 s, seed 25).
#[test]
fn a_peer_keeps_its_last_older_members_of_its_stripe_however_near_a_stranger() {
    let key = StreamKey::from_seed([9; 32]);
    let (elder, stranger) = (addr(2), addr(50));
    let mut node = member(&key, addr(1), 90, 1);
    neighbour(&mut node, elder, 50, 1, 1, 200);
    // Members of the other stripes, 30 to 140 ms away.
    for i in 0..12u16 {
        let stripe = [0, 2, 3][usize::from(i % 3)];
        neighbour(
            &mut node,
            addr(100 + i),
            200 + u64::from(i),
            stripe,
            2,
            30 + 10 * u64::from(i),
        );
    }
    let let_go = probe_answered(&mut node, T0 + 100_000, stranger);
    assert_eq!(let_go, vec![addr(111)], "the farthest other neighbour goes");
    assert!(
        node.neighbours.contains_key(&stranger),
        "the nearer stranger stays"
    );
    assert!(node.neighbours.contains_key(&elder), "the one elder stays");
}
