//! Climbing ([`crate::core::climb`]) through the node: a member learns who feeds its parent
//! and greets it, and a peer at its neighbour cap makes room for a younger member.

use super::*;
use crate::core::climb::{CLIMB_ASK_US, ROOM_GRACE_US};
use crate::core::neighbours::Neighbour;
use crate::core::tree::Place;
use crate::proto::wire::PeerInfo;

/// A peer at `local` of join index `index`, member of `member`.
pub(super) fn member(key: &StreamKey, local: SocketAddr, index: u64, member: u8) -> Node {
    let mut cfg = Config::new(Role::Peer, key.id());
    cfg.bootstrap = vec![addr(0)];
    let mut node = Node::new(cfg, T0);
    node.set_local_addr(local);
    node.place = Place {
        role: Role::Peer,
        index,
        member: Some(member),
        stripes: 4,
    };
    node
}

/// Adds a peer neighbour `at` of `index` and `member`, attached at `depth`, `rtt_ms` away.
pub(super) fn neighbour(
    node: &mut Node,
    at: SocketAddr,
    index: u64,
    member: u8,
    depth: u8,
    rtt_ms: u64,
) {
    let mut n = Neighbour::new(Role::Peer, index, Some(member), T0);
    n.depth = depth;
    n.spare = 1;
    node.neighbours.insert(at, n);
    node.neighbours.note_rtt(at, rtt_ms * 1000);
}

/// `node` asks the neighbours it would have as parents (the tree's upkeep, once).
fn ask_parents(node: &mut Node, now: u64) {
    let place = node.place;
    node.tree.maintain(
        now,
        false,
        &place,
        &node.neighbours,
        &node.have(),
        &mut node.rng,
        &mut node.out,
    );
    drain(node);
}

/// `node` takes `parent` as its parent in its member stripe: it asks, and is accepted.
fn take_parent(node: &mut Node, parent: SocketAddr, now: u64) {
    let stripe = node.place.member.unwrap();
    ask_parents(node, now);
    let reply = Message::SubscribeReply {
        stripe,
        accepted: true,
    };
    node.handle_datagram(now, parent, &wire::encode(&reply).unwrap());
    assert_eq!(node.tree.parent(stripe), Some(parent));
}

fn sent_to(node: &mut Node, to: SocketAddr) -> Vec<Message> {
    drain(node)
        .0
        .into_iter()
        .filter(|t| t.to == to)
        .map(|t| t.message)
        .collect()
}

#[test]
fn a_parent_names_its_own_parent_first_to_a_member_child_that_asks_for_peers() {
    let key = StreamKey::from_seed([7; 32]);
    let (us, above, child) = (addr(1), addr(2), addr(3));
    let mut parent = member(&key, us, 50, 1);
    neighbour(&mut parent, above, 10, 1, 2, 30);
    for i in 0..30u16 {
        neighbour(&mut parent, addr(100 + i), 200 + u64::from(i), 2, 4, 30);
    }
    neighbour(&mut parent, child, 90, 1, 4, 30);
    let now = T0 + 100_000;
    take_parent(&mut parent, above, now);
    parent
        .neighbours
        .get_mut(&child)
        .unwrap()
        .children
        .insert(1);
    let ask = Message::GetPeers {
        token: parent.membership.token_for(child),
    };
    for _ in 0..8 {
        parent.handle_datagram(now, child, &wire::encode(&ask).unwrap());
        let peers = sent_to(&mut parent, child)
            .into_iter()
            .find_map(|m| match m {
                Message::Peers { peers } => Some(peers),
                _ => None,
            });
        let peers = peers.expect("an answer");
        assert_eq!(peers.first().map(|p| p.addr), Some(above));
        assert_eq!(peers.iter().filter(|p| p.addr == above).count(), 1);
        assert!(peers.len() > 1, "the rest of the answer as to anyone");
    }
}

#[test]
fn a_member_with_all_its_neighbours_greets_the_one_its_parent_names_above_it() {
    let key = StreamKey::from_seed([8; 32]);
    let (us, parent, other) = (addr(1), addr(2), addr(3));
    let mut node = member(&key, us, 90, 1);
    neighbour(&mut node, parent, 50, 1, 3, 30);
    neighbour(&mut node, other, 60, 1, 4, 30);
    for i in 0..12u16 {
        neighbour(
            &mut node,
            addr(100 + i),
            200 + u64::from(i),
            (i % 3) as u8 * 2,
            4,
            30,
        );
    }
    let now = T0 + 100_000;
    take_parent(&mut node, parent, now);
    node.ask_who_is_above(now);
    let asked = sent_to(&mut node, parent);
    assert!(
        asked.iter().any(|m| matches!(m, Message::GetPeers { .. })),
        "a member below a parent at depth 3 asks it who is above"
    );
    node.ask_who_is_above(now + 1);
    assert!(sent_to(&mut node, parent).is_empty(), "not again at once");
    let info = |a: SocketAddr, index| PeerInfo {
        addr: a,
        index,
        member: 1,
        lan: None,
    };
    let (above, older, also_older) = (addr(20), addr(21), addr(22));
    let named = Message::Peers {
        peers: vec![info(above, 10), info(older, 20)],
    };
    node.handle_datagram(now + 2, parent, &wire::encode(&named).unwrap());
    let out = drain(&mut node).0;
    let greeted = |a| {
        out.iter()
            .any(|t| t.to == a && matches!(t.message, Message::Hello(_)))
    };
    assert!(greeted(above), "the one named above the parent is greeted");
    assert!(!greeted(older), "others are not: it has its neighbours");
    let nonce = out
        .iter()
        .find_map(|t| match &t.message {
            Message::Hello(h) if t.to == above => Some(h.nonce),
            _ => None,
        })
        .unwrap();
    // Whether `also_older`, named first by `by` when asked at `at`, is greeted.
    let greets_when_named_by = |node: &mut Node, by: SocketAddr, at: u64| {
        node.membership
            .ask_neighbour_for_peers(at, by, &mut node.out);
        drain(node);
        let named = Message::Peers {
            peers: vec![info(also_older, 15)],
        };
        node.handle_datagram(at + 1, by, &wire::encode(&named).unwrap());
        drain(node)
            .0
            .iter()
            .any(|t| t.to == also_older && matches!(t.message, Message::Hello(_)))
    };
    // Another neighbour naming an older member of the stripe first is no parent of ours.
    assert!(!greets_when_named_by(&mut node, other, now + 3));
    // One at a time: while the first is greeted, our parent's next name is not.
    assert!(!greets_when_named_by(&mut node, parent, now + 5));
    // It welcomes us, but never becomes our parent: let go once its time is over.
    let welcome = Message::Welcome(Box::new(wire::Welcome {
        nonce,
        token: 1,
        role: Role::Peer,
        index: 10,
        member: Some(1),
        stripes: 4,
        assigned: None,
        latest_keyframe: None,
        latest_seq: None,
        observed: us,
    }));
    node.handle_datagram(now + 20_000, above, &wire::encode(&welcome).unwrap());
    assert!(node.neighbours.contains_key(&above));
    node.let_go_unsubscribed(now + 2 + CLIMB_ASK_US - 1);
    assert!(node.neighbours.contains_key(&above));
    node.let_go_unsubscribed(now + 2 + CLIMB_ASK_US);
    assert!(
        !node.neighbours.contains_key(&above),
        "a parent's name buys no slot for good"
    );
    assert!(node.climb.may_greet());
}

#[test]
fn at_its_cap_a_peer_makes_room_for_a_younger_member_of_its_stripe_that_then_subscribes() {
    let key = StreamKey::from_seed([9; 32]);
    let mut node = member(&key, addr(1), 10, 1);
    let cap = node.cfg.tuning.max_neighbours as u16;
    for i in 0..cap {
        neighbour(
            &mut node,
            addr(100 + i),
            200 + u64::from(i),
            0,
            4,
            10 + u64::from(i),
        );
    }
    // The three farthest are the seed, a leaf we feed and a member of stripe 0 we ask to
    // feed us: none of them is let go, however far.
    let (seed, fed, feeds_us) = (
        addr(100 + cap - 1),
        addr(100 + cap - 2),
        addr(100 + cap - 3),
    );
    node.neighbours.remove(&seed);
    node.neighbours
        .insert(seed, Neighbour::new(Role::Seed, 0, None, T0));
    node.neighbours.note_rtt(seed, 900_000);
    node.neighbours.get_mut(&fed).unwrap().children.insert(0);
    node.neighbours.get_mut(&feeds_us).unwrap().depth = 1;
    let now = T0 + 100_000;
    ask_parents(&mut node, now);
    assert!(node.tree.is_or_asked_parent(feeds_us));
    let farthest = addr(100 + cap - 4);
    let confirm = |node: &Node, from: SocketAddr, token: Option<u64>, index, member| {
        let token = token.unwrap_or_else(|| node.membership.token_for(from));
        wire::encode(&Message::Confirm {
            token,
            index,
            member: Some(member),
            lan: None,
        })
        .unwrap()
    };
    // A wrong token, another stripe's member, an older member: turned away, nobody let go.
    let (stranger, younger, staying) = (addr(2), addr(3), addr(4));
    for (token, index, stripe) in [(Some(1), 70, 1), (None, 70, 2), (None, 5, 1)] {
        node.handle_datagram(
            now,
            stranger,
            &confirm(&node, stranger, token, index, stripe),
        );
        assert!(!node.neighbours.contains_key(&stranger));
        assert!(node.neighbours.contains_key(&farthest));
        drain(&mut node);
    }
    node.handle_datagram(now, younger, &confirm(&node, younger, None, 70, 1));
    let out = sent_to(&mut node, farthest);
    assert!(out.iter().any(|m| matches!(m, Message::Goodbye)));
    assert!(!node.neighbours.contains_key(&farthest));
    assert!(node.neighbours.contains_key(&younger));
    // A second one that subscribes in time stays; the first, which did not, is let go.
    node.handle_datagram(now, staying, &confirm(&node, staying, None, 80, 1));
    let subscribe = Message::Subscribe {
        stripe: 1,
        hold_after: None,
    };
    node.handle_datagram(now + 1_000, staying, &wire::encode(&subscribe).unwrap());
    assert!(node.neighbours.get(&staying).unwrap().children.contains(1));
    drain(&mut node);
    node.let_go_unsubscribed(now + ROOM_GRACE_US - 1);
    assert!(node.neighbours.contains_key(&younger));
    node.let_go_unsubscribed(now + ROOM_GRACE_US);
    assert!(!node.neighbours.contains_key(&younger));
    assert!(sent_to(&mut node, younger)
        .iter()
        .any(|m| matches!(m, Message::Goodbye)));
    assert!(node.neighbours.contains_key(&staying));
    for kept in [seed, fed, feeds_us] {
        assert!(node.neighbours.contains_key(&kept));
    }
}

/// A root the seed lets go in its member stripe asks the seed for peers at once: the seed
/// names it an older root of its stripe first (`climb::root_for`), below which it may find
/// a place. Before, one that knew no older member of its stripe asked nobody, and its
/// subtree lived on repairs once the seed's handover ended (bl-sim, 50 peers × 8 s, the
/// stream at 2 s, seed 25).
#[test]
fn a_root_the_seed_lets_go_asks_the_seed_for_peers() {
    let key = StreamKey::from_seed([8; 32]);
    let seed = addr(0);
    let mut node = member(&key, addr(1), 5, 1);
    node.neighbours
        .insert(seed, Neighbour::new(Role::Seed, 0, None, T0));
    let now = T0 + 100_000;
    take_parent(&mut node, seed, now);
    let asks_for_peers = |node: &mut Node| {
        sent_to(node, seed)
            .iter()
            .any(|m| matches!(m, Message::GetPeers { .. }))
    };
    let unsubscribe = |stripe| wire::encode(&Message::Unsubscribe { stripe }).unwrap();
    node.handle_datagram(now + 1, seed, &unsubscribe(2));
    assert!(!asks_for_peers(&mut node), "another stripe's slot");
    node.handle_datagram(now + 2, seed, &unsubscribe(1));
    assert_eq!(node.tree.parent(1), None);
    assert!(asks_for_peers(&mut node), "its own stripe's root slot");
}
