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

/// A neighbour left feeding us a stripe beside our parent is told to stop when its next push
/// comes. Here a peer's Unsubscribe to it is lost; a lost acceptance of a Subscribe we gave
/// up on leaves it the same. Our Haves keep it from calling us silent, so before, it pushed
/// the stripe for as long as both lived, every chunk a duplicate (bl-sim, 1,000 peers × 20 s:
/// such feeds were half of all duplicates).
#[test]
fn a_neighbour_left_feeding_us_a_stripe_is_told_to_stop() {
    let key = StreamKey::from_seed([12; 32]);
    let mut net = Net::new(&key, 6);
    net.run_until(T0 + 1_500_000);
    stream(&mut net, &key, 0..100);
    let feeds = |net: &Net, from: usize, to: SocketAddr| {
        net.nodes[from]
            .1
            .neighbours
            .get(&to)
            .is_some_and(|n| n.children.contains(0))
    };
    // A leaf of stripe 0 with a parent, and a member of the stripe (which takes leaves as
    // children) that is not that parent.
    let member = |i: usize| net.nodes[i].1.place.member == Some(0);
    let mut pairs = (1..=6usize).flat_map(|i| (1..=6usize).map(move |x| (i, x)));
    let found = pairs.find(|&(i, x)| {
        let parent = net.nodes[i].1.tree.parent(0);
        !member(i) && member(x) && parent.is_some() && parent != Some(addr(x as u16))
    });
    let Some((i, x)) = found else {
        panic!("no such pair: {:?}", parents(&net));
    };
    let (me, parent) = (addr(i as u16), net.nodes[i].1.tree.parent(0));
    // The first Unsubscribe from the peer to x is lost.
    let lost = std::rc::Rc::new(std::cell::Cell::new(false));
    let lose = lost.clone();
    let to_x = addr(x as u16);
    net.filter = Box::new(move |from, to, bytes| {
        let unsubscribe = matches!(wire::decode(bytes), Ok(Message::Unsubscribe { .. }));
        if from == me && to == to_x && unsubscribe && !lose.get() {
            lose.set(true);
            return false;
        }
        true
    });
    // x takes the peer as its child in stripe 0; the peer, which did not ask, declines.
    let now = net.now;
    let subscribe = wire::encode(&Message::Subscribe {
        stripe: 0,
        hold_after: None,
    })
    .unwrap();
    net.nodes[x].1.handle_datagram(now, me, &subscribe);
    net.collect();
    net.run_until(now + 5_000);
    assert!(lost.get(), "the peer declined, and that was lost");
    assert!(feeds(&net, x, me), "x still feeds the peer stripe 0");
    let before = net.nodes[i].1.stats().counters;
    stream(&mut net, &key, 100..300);
    let after = net.nodes[i].1.stats().counters;
    assert!(!feeds(&net, x, me), "x was told to stop");
    assert_eq!(after.stray_feeds_stopped - before.stray_feeds_stopped, 1);
    // 50 chunks of stripe 0 came; x pushed one of them before it was told.
    let duplicates = after.chunks_duplicate - before.chunks_duplicate;
    assert!(duplicates <= 2, "{duplicates} duplicates");
    assert_eq!(
        net.nodes[i].1.tree.parent(0),
        parent,
        "the peer kept its parent"
    );
}

/// The seed's push of a stripe it was not asked for is its acceptance, whose SubscribeReply
/// was lost (it pushes only children it took or offered a root slot): a member adrift in
/// its own stripe takes the seed as its parent, as it would have taken the offer; anyone else
/// declines it with an Unsubscribe.
#[test]
fn the_seeds_push_is_taken_as_its_lost_offer_only_by_a_member_adrift() {
    let key = StreamKey::from_seed([13; 32]);
    let mut net = Net::new(&key, 8);
    net.run_until(T0 + 1_500_000);
    stream(&mut net, &key, 0..100);
    let seed = addr(0);
    // A member whose parent in its own stripe is a peer, and a leaf of that stripe fed by a
    // peer.
    let member_stripe = |i: usize| net.nodes[i].1.place.member;
    let fed_by_a_peer = |i: usize, stripe: u8| {
        net.nodes[i]
            .1
            .tree
            .parent(stripe)
            .is_some_and(|p| p != seed)
    };
    let Some((m, stripe)) = (1..=8usize)
        .filter_map(|i| member_stripe(i).map(|s| (i, s)))
        .find(|&(i, s)| fed_by_a_peer(i, s))
    else {
        panic!("no member fed by a peer: {:?}", parents(&net));
    };
    let Some(leaf) =
        (1..=8usize).find(|&i| member_stripe(i) != Some(stripe) && fed_by_a_peer(i, stripe))
    else {
        panic!(
            "no leaf of stripe {stripe} fed by a peer: {:?}",
            parents(&net)
        );
    };
    let now = net.now;
    let seq = (100..).find(|s| s % 4 == u64::from(stripe)).unwrap_or(100);
    let push = wire::encode(&Message::Chunk(Arc::new(chunk(&key, seq, now)))).unwrap();
    // The member's parent says it is detached: the member is adrift in its own stripe.
    let Some(parent) = net.nodes[m].1.tree.parent(stripe) else {
        panic!("member {m} has a parent");
    };
    let detached = wire::encode(&Message::Have {
        first: 0,
        highest: seq - 1,
        recent: 0,
        children: 1,
        spare: 0,
        depth: u8::MAX,
    })
    .unwrap();
    net.nodes[m].1.handle_datagram(now, parent, &detached);
    net.nodes[m].1.handle_datagram(now, seed, &push);
    assert_eq!(net.nodes[m].1.tree.parent(stripe), Some(seed), "taken");
    let (sent, _) = drain(&mut net.nodes[m].1);
    assert!(
        sent.iter()
            .any(|t| t.to == parent && t.message == Message::Unsubscribe { stripe }),
        "the old parent is let go"
    );
    let fed_leaf = net.nodes[leaf].1.tree.parent(stripe);
    net.nodes[leaf].1.handle_datagram(now, seed, &push);
    assert_eq!(net.nodes[leaf].1.tree.parent(stripe), fed_leaf, "declined");
    let (sent, _) = drain(&mut net.nodes[leaf].1);
    assert!(
        sent.iter()
            .any(|t| t.to == seed && t.message == Message::Unsubscribe { stripe }),
        "the seed is told to stop"
    );
    assert_eq!(net.nodes[leaf].1.stats().counters.stray_feeds_stopped, 1);
}

/// A chunk's copies leave one after another, so a child whose Have says it feeds more is
/// pushed before the others as soon as the Have comes.
#[test]
fn a_child_that_comes_to_feed_more_is_pushed_first() {
    let key = StreamKey::from_seed([13; 32]);
    let mut net = Net::new(&key, 16);
    net.run_until(T0 + 1_500_000);
    stream(&mut net, &key, 0..100);
    // A node that feeds a stripe to two members of it or more.
    let members_fed = |net: &Net, x: usize, s: u8| {
        net.nodes[x]
            .1
            .neighbours
            .iter()
            .filter(|(_, n)| n.children.contains(s) && n.member == Some(s))
            .count()
    };
    let found = (0..net.nodes.len())
        .flat_map(|x| (0..4u8).map(move |s| (x, s)))
        .find(|&(x, s)| members_fed(&net, x, s) >= 2);
    let Some((x, stripe)) = found else {
        panic!("no node feeds two members: {:?}", parents(&net));
    };
    // What x pushes of a chunk of the stripe, in order (from its parent, or its input).
    let from = net.nodes[x].1.tree.parent(stripe);
    let pushed_to = |net: &mut Net, seq: u64| {
        let now = net.now;
        let c = chunk(&key, seq, now);
        let node = &mut net.nodes[x].1;
        match from {
            Some(parent) => {
                let push = wire::encode(&Message::Chunk(Arc::new(c))).unwrap();
                node.handle_datagram(now, parent, &push);
            }
            None => node.handle_chunk(now, c),
        }
        let (sent, _) = drain(node);
        sent.into_iter()
            .filter(|t| matches!(t.message, Message::Chunk(_) | Message::ChunkPrevPushed(_)))
            .map(|t| t.to)
            .collect::<Vec<_>>()
    };
    let seq = (100..).find(|s| s % 4 == u64::from(stripe)).unwrap_or(100);
    let before = pushed_to(&mut net, seq);
    let member = |net: &Net, a: &SocketAddr| {
        net.nodes[x].1.neighbours.get(a).and_then(|n| n.member) == Some(stripe)
    };
    let Some(&last) = before.iter().rev().find(|a| member(&net, a)) else {
        panic!("no member pushed: {before:?}");
    };
    assert_ne!(before.first(), Some(&last), "{before:?}");
    let feeds_most = wire::encode(&Message::Have {
        first: 0,
        highest: seq,
        recent: 0,
        children: u8::MAX,
        spare: 0,
        depth: 2,
    })
    .unwrap();
    let now = net.now;
    net.nodes[x].1.handle_datagram(now, last, &feeds_most);
    let after = pushed_to(&mut net, seq + 4);
    assert_eq!(after.first(), Some(&last), "{after:?}");
    assert_eq!(after.len(), before.len(), "every child still pushed");
    // Members of the stripe before its leaves.
    let ranks: Vec<bool> = after.iter().map(|a| !member(&net, a)).collect();
    assert!(ranks.is_sorted(), "{after:?}");
}

/// A tracker names the seed and the other viewers to three viewers started together: they
/// greet one another, and each other's Welcomes come before the seed's. Until the seed
/// places them they have no place to tell, and once it does, each must learn the others'.
/// Taken for leaves of every stripe, they asked only the seed for every stripe; its slots,
/// full of leaves of stripes a viewer is a member of, left the stripe no viewer is a member
/// of to those who had it first, and the rest to repairs (tests/discovery.rs: viewers
/// skipped chunks in 2 runs of 51).
#[test]
fn viewers_that_met_before_the_seed_placed_them_learn_each_others_places() {
    let key = StreamKey::from_seed([31; 32]);
    let mut net = Net::new(&key, 3);
    for i in 1..=3u16 {
        let mut cfg = Config::new(Role::Peer, key.id());
        cfg.bootstrap = (0..=3).filter(|j| *j != i).map(addr).collect();
        cfg.rng_seed = u64::from(i) + 1;
        cfg.tuning.latency_us = 500_000;
        let mut peer = Node::new(cfg, T0);
        peer.set_local_addr(addr(i));
        net.nodes[usize::from(i)] = (addr(i), peer);
    }
    // The seed's first Welcomes are lost: the viewers' Hellos to it go again 0.5 s later.
    let seed_mute = std::rc::Rc::new(std::cell::Cell::new(true));
    let mute = seed_mute.clone();
    net.filter = Box::new(move |from, _, bytes| {
        !(mute.get() && from == addr(0) && matches!(wire::decode(bytes), Ok(Message::Welcome(_))))
    });
    net.run_until(T0 + 100_000);
    for i in 1..=3 {
        let n = &net.nodes[i].1;
        assert_eq!(n.index(), 0, "viewer {i} placed before the seed's Welcome");
        assert_eq!(n.neighbours.len(), 2, "viewer {i} met the other two");
    }
    seed_mute.set(false);
    net.run_until(T0 + 1_500_000);
    stream(&mut net, &key, 0..400);
    for i in 1..=3u16 {
        let me = &net.nodes[usize::from(i)].1;
        for j in (1..=3u16).filter(|j| *j != i) {
            let other = &net.nodes[usize::from(j)].1;
            let known = me.neighbours.get(&addr(j)).expect("a neighbour");
            assert_eq!(
                (known.index, known.member),
                (other.index(), other.member()),
                "viewer {i} holds viewer {j}'s place"
            );
        }
    }
    // The seed's budget (6 stripe copies) covers a root per stripe the viewers are members
    // of and the fourth stripe, which has no member, to each: the rest must come from peers.
    // The viewers asked the seed for every stripe before they knew each other's places, and
    // the viewer left without the memberless stripe takes a slot a member's leaf gives up.
    let chosen = parents(&net);
    assert!(
        chosen.iter().flatten().all(Option::is_some),
        "every stripe of every viewer has a parent: {chosen:?}"
    );
}
