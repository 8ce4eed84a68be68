//! The stripe tree alone: no node, no network, a hand-made neighbour table.

use super::*;
use crate::core::config::{BARREN_AFTER_US, CHILD_SILENT_US, MEMBER_SILENT_FOR_LEAF_US};
use crate::core::neighbours::HaveSummary;

fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000 + i))
}

/// A peer neighbour: member of `member`, join index `index`, announcing `depth` and
/// `spare` in its Have.
fn peer(index: u64, member: u8, depth: u8, spare: u8) -> Neighbour {
    let mut n = Neighbour::new(Role::Peer, index, Some(member), 0);
    n.depth = depth;
    n.spare = spare;
    n
}

fn sent(out: &mut Outbox) -> Vec<(SocketAddr, Message)> {
    std::iter::from_fn(|| out.pop_transmit())
        .map(|t| (t.to, t.message))
        .collect()
}

/// A Subscribe from `from` for `stripe`, neither barred nor an extra root, to a node of
/// `place` with max_upload 0.25 (one subscription in all, four at the seed).
fn subscribe(
    tree: &mut StripeTree,
    now: u64,
    from: SocketAddr,
    stripe: u8,
    place: &Place,
    ns: &mut Neighbours,
    out: &mut Outbox,
) -> SubscribeOutcome {
    tree.on_subscribe(now, from, stripe, false, false, place, 0.25, ns, out)
}

const SEED: Place = Place {
    role: Role::Seed,
    index: 0,
    member: None,
    stripes: 4,
};

const LEAF_OF_1: Place = Place {
    role: Role::Peer,
    index: 100,
    member: Some(0),
    stripes: 4,
};

#[test]
fn a_parent_is_a_member_with_room_then_the_shallowest_then_the_seed() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 1, 3, 2));
    ns.insert(addr(2), peer(11, 1, 1, 0)); // shallowest, but full
    ns.insert(addr(3), peer(12, 1, 2, 1)); // room, and shallower than addr(1)
    ns.insert(addr(4), Neighbour::new(Role::Seed, 0, None, 0));
    ns.insert(addr(5), peer(13, 2, 0, 9)); // another stripe's member
    let mut tree = StripeTree::new(4, 0);
    let mut rng = Rng::new(1);
    let pick = |tree: &StripeTree, rng: &mut Rng| tree.choose_parent(0, 1, &LEAF_OF_1, &ns, rng);
    assert_eq!(pick(&tree, &mut rng), Some(addr(3)));
    // A refusal keeps it out of the running for a while.
    tree.refused.insert((addr(3), 1), REFUSAL_BACKOFF_US);
    assert_eq!(pick(&tree, &mut rng), Some(addr(1)));
    tree.refused.insert((addr(1), 1), REFUSAL_BACKOFF_US);
    assert_eq!(
        pick(&tree, &mut rng),
        Some(addr(2)),
        "a full member before the seed"
    );
    tree.refused.insert((addr(2), 1), REFUSAL_BACKOFF_US);
    assert_eq!(pick(&tree, &mut rng), Some(addr(4)), "then the seed");
    // Refusals expire.
    tree.forget_expired_refusals(REFUSAL_BACKOFF_US);
    assert_eq!(pick(&tree, &mut rng), Some(addr(3)));
}

#[test]
fn in_its_own_stripe_a_member_is_fed_only_by_older_members() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(120, 1, 1, 4)); // younger than us
    ns.insert(addr(2), peer(80, 1, 5, 1)); // older
    let member_of_1 = Place {
        member: Some(1),
        ..LEAF_OF_1
    };
    let tree = StripeTree::new(4, 0);
    let parent = tree.choose_parent(0, 1, &member_of_1, &ns, &mut Rng::new(1));
    assert_eq!(parent, Some(addr(2)));
}

#[test]
fn at_the_seed_a_member_displaces_a_leaf_and_anyone_displaces_a_barren_child() {
    // max_upload 0.25 × 4 stripes: one subscription in all.
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 3, 1, 0)); // a leaf of stripe 0
    ns.insert(addr(2), peer(20, 0, 1, 0)); // a member of stripe 0
    ns.insert(addr(3), peer(30, 0, 1, 0)); // a younger member
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    let now = 1_000;
    let first = subscribe(&mut tree, now, addr(1), 0, &SEED, &mut ns, &mut out);
    assert!(
        first.accepted,
        "the first child of a stripe is always taken"
    );
    let member = subscribe(&mut tree, now, addr(2), 0, &SEED, &mut ns, &mut out);
    assert_eq!(
        member,
        SubscribeOutcome {
            accepted: true,
            displaced_barren: None,
            extra_root: false,
        }
    );
    assert!(ns.get(&addr(1)).is_some_and(|n| n.children.is_empty()));
    let younger = subscribe(&mut tree, now, addr(3), 0, &SEED, &mut ns, &mut out);
    assert!(
        !younger.accepted,
        "a younger member does not displace an older one"
    );
    let messages = sent(&mut out);
    assert!(messages.contains(&(addr(1), Message::Unsubscribe { stripe: 0 })));
    // The older member passes nothing on for BARREN_AFTER_US: anyone takes its place,
    // and the guard is told whom to bar.
    let later = now + BARREN_AFTER_US;
    let taken = subscribe(&mut tree, later, addr(3), 0, &SEED, &mut ns, &mut out);
    assert_eq!(taken.displaced_barren, Some(addr(2)));
    // A barred requester is refused outright.
    let barred = tree.on_subscribe(
        later,
        addr(1),
        1,
        true,
        false,
        &SEED,
        0.25,
        &mut ns,
        &mut out,
    );
    assert!(!barred.accepted);
}

#[test]
fn a_full_peer_takes_a_member_of_its_stripe_by_displacing_a_leaf() {
    let me = Place {
        role: Role::Peer,
        index: 10,
        member: Some(2),
        stripes: 4,
    };
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(50, 0, 3, 0)); // a leaf of stripe 2
    ns.insert(addr(2), peer(60, 2, 3, 0)); // a younger member of stripe 2
    ns.insert(addr(3), peer(5, 2, 1, 0)); // an older member: may not hang below us
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    // max_upload 0.25: one slot.
    assert!(subscribe(&mut tree, 0, addr(1), 2, &me, &mut ns, &mut out).accepted);
    assert!(
        !subscribe(&mut tree, 0, addr(1), 1, &me, &mut ns, &mut out).accepted,
        "a peer feeds only its member stripe"
    );
    assert!(!subscribe(&mut tree, 0, addr(3), 2, &me, &mut ns, &mut out).accepted);
    assert!(subscribe(&mut tree, 0, addr(2), 2, &me, &mut ns, &mut out).accepted);
    assert!(
        ns.get(&addr(1)).is_some_and(|n| n.children.is_empty()),
        "the leaf made room"
    );
    assert_eq!(tree.take_children(2, &ns), vec![addr(2)]);
}

/// Stripe 1 flows at 50 chunks a second (20 ms apart), over 4 s. Its parent (`addr(1)`, the
/// only candidate) sends the share of them `from_parent` picks, and a Have every 200 ms;
/// whether it was replaced is returned.
fn parent_replaced(from_parent: impl Fn(u64) -> bool) -> bool {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 1, 1, 4));
    let mut tree = StripeTree::new(4, 0);
    let mut rng = Rng::new(1);
    let mut out = Outbox::default();
    tree.maintain(0, false, &LEAF_OF_1, &ns, &mut rng, &mut out);
    assert!(sent(&mut out).contains(&(addr(1), Message::Subscribe { stripe: 1 })));
    tree.on_subscribe_reply(0, addr(1), 1, true, false, false, &mut out);
    assert_eq!(tree.parent(1), Some(addr(1)));
    for i in 1..=200u64 {
        let now = i * 20_000;
        // New chunks of the stripe come from someone (repairs, or the parent).
        tree.heard(1, i * 4 + 1, now);
        if from_parent(i) {
            tree.pushed(1, addr(1));
        }
        if let Some(n) = ns.get_mut(&addr(1)) {
            n.last_heard = now;
        }
        if now % TICK_US == 0 {
            tree.maintain(now, false, &LEAF_OF_1, &ns, &mut rng, &mut out);
            if sent(&mut out).contains(&(addr(1), Message::Unsubscribe { stripe: 1 })) {
                return true;
            }
        }
    }
    false
}

#[test]
fn a_parent_that_sends_a_trickle_of_its_stripe_is_replaced() {
    // A liar replays one old chunk with each Have (every 10th arrival here): under the first
    // rule (no push at all since it took us) it was kept, while repairs carried the stripe.
    assert!(parent_replaced(|i| i % 10 == 0));
    assert!(parent_replaced(|i| i % 3 == 0), "a third of the stripe");
}

#[test]
fn a_parent_that_loses_some_pushes_is_kept() {
    assert!(!parent_replaced(|_| true));
    // 30 % of pushes lost, or overtaken by repairs and still sent: kept.
    assert!(!parent_replaced(|i| i % 10 >= 3));
}

/// A child killed without a Goodbye keeps its neighbour entry for [`NEIGHBOUR_TIMEOUT_US`];
/// its slot must not: the seed pushed a killed root child's stripe into the void while better
/// ranked than anyone asking, and every survivor of a swarm skipped the same chunks.
///
/// [`NEIGHBOUR_TIMEOUT_US`]: crate::core::config::NEIGHBOUR_TIMEOUT_US
#[test]
fn a_silent_child_gives_its_slot_to_whoever_asks() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 2, 1, 0)); // the old member of stripe 2: killed at 0
    ns.insert(addr(2), peer(90, 1, 3, 0)); // a younger leaf, alive
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    // max_upload 0.25 × 4 stripes: one slot.
    assert!(subscribe(&mut tree, 0, addr(1), 2, &SEED, &mut ns, &mut out).accepted);
    let alive = |ns: &mut Neighbours, now: u64| {
        if let Some(n) = ns.get_mut(&addr(2)) {
            n.last_heard = now;
        }
    };
    let ask = |tree: &mut StripeTree, ns: &mut Neighbours, out: &mut Outbox, now: u64| {
        tree.on_subscribe(now, addr(2), 2, false, false, &SEED, 0.25, ns, out)
    };
    let heard_lately = CHILD_SILENT_US;
    alive(&mut ns, heard_lately);
    assert!(
        !ask(&mut tree, &mut ns, &mut out, heard_lately).accepted,
        "an older member keeps its slot while it may be alive"
    );
    // A leaf waits longer for a member's slot than the member's heirs do.
    let silent = MEMBER_SILENT_FOR_LEAF_US + 1;
    alive(&mut ns, silent);
    let taken = ask(&mut tree, &mut ns, &mut out, silent);
    assert_eq!(
        taken,
        SubscribeOutcome {
            accepted: true,
            displaced_barren: None,
            extra_root: false,
        }
    );
    assert!(sent(&mut out).contains(&(addr(1), Message::Unsubscribe { stripe: 2 })));
    assert_eq!(tree.take_children(2, &ns), vec![addr(2)]);

    // A full peer gives a silent child's slot away too, even to a leaf.
    let me = Place {
        role: Role::Peer,
        index: 5,
        member: Some(2),
        stripes: 4,
    };
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 2, 3, 0));
    ns.insert(addr(2), peer(90, 1, 3, 0));
    let mut tree = StripeTree::new(4, 0);
    assert!(subscribe(&mut tree, 0, addr(1), 2, &me, &mut ns, &mut out).accepted);
    let ask_me = |tree: &mut StripeTree, ns: &mut Neighbours, out: &mut Outbox, now: u64| {
        tree.on_subscribe(now, addr(2), 2, false, false, &me, 0.25, ns, out)
    };
    alive(&mut ns, heard_lately);
    assert!(!ask_me(&mut tree, &mut ns, &mut out, heard_lately).accepted);
    alive(&mut ns, silent);
    assert!(ask_me(&mut tree, &mut ns, &mut out, silent).accepted);
    assert!(sent(&mut out).contains(&(addr(1), Message::Unsubscribe { stripe: 2 })));
    assert_eq!(tree.take_children(2, &ns), vec![addr(2)]);
}

/// When a stripe's root (a member the seed feeds) dies, its children ask the seed for its
/// slot first: the rest of its subtree has nothing of the stripe either.
#[test]
fn the_children_of_a_dead_root_ask_the_seed_for_its_slot() {
    let run = |root_depth: u8| {
        let mut ns = Neighbours::default();
        ns.insert(addr(1), peer(10, 1, root_depth, 2)); // our parent
                                                        // Another member of stripe 1, alive, one level below our parent.
        ns.insert(addr(2), peer(11, 1, root_depth + 1, 3));
        ns.insert(addr(4), Neighbour::new(Role::Seed, 0, None, 0));
        let mut tree = StripeTree::new(4, 0);
        let mut rng = Rng::new(1);
        let mut out = Outbox::default();
        tree.maintain(0, false, &LEAF_OF_1, &ns, &mut rng, &mut out);
        assert!(sent(&mut out).contains(&(addr(1), Message::Subscribe { stripe: 1 })));
        tree.on_subscribe_reply(0, addr(1), 1, true, false, false, &mut out);
        // addr(1) is killed at 0; the others keep talking.
        let mut now = 0;
        while tree.parent(1) == Some(addr(1)) {
            now += TICK_US;
            for a in [addr(2), addr(4)] {
                if let Some(n) = ns.get_mut(&a) {
                    n.last_heard = now;
                }
            }
            tree.maintain(now, false, &LEAF_OF_1, &ns, &mut rng, &mut out);
        }
        assert!(now <= PARENT_GONE_US + TICK_US, "replaced after {now} µs");
        sent(&mut out)
            .into_iter()
            .find(|(_, m)| *m == Message::Subscribe { stripe: 1 })
            .map(|(to, _)| to)
    };
    assert_eq!(run(1), Some(addr(4)), "a dead root's heir asks the seed");
    assert_eq!(run(3), Some(addr(2)), "deeper down, a member with room");
}

/// Fed stripe 1 by a deep parent, a peer moves to a shallower member with room once one is
/// among its neighbours, asking it first and leaving the old parent only once it accepts;
/// a shallower member without room, or one as deep, does not move it.
/// In its own stripe a member asks the nearest older member even when it is full: that one
/// lets a leaf go for it (a member's place is worth its whole subtree's depth). A leaf asks
/// members with room first. Measured in bl-sim (docs/PERFORMANCE.md): at 2,000 peers the
/// members at depth 2 had used 60 % of their slots on leaves, and trees were 5 deep at the
/// median where members-first placement needs 4.
#[test]
fn in_its_own_stripe_a_member_asks_the_nearest_member_even_if_full() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 1, 1, 0)); // older, shallow, full
    ns.insert(addr(2), peer(11, 1, 3, 2)); // older, deeper, room
    let member_of_1 = Place {
        member: Some(1),
        ..LEAF_OF_1
    };
    let tree = StripeTree::new(4, 0);
    let pick = |place: &Place| tree.choose_parent(0, 1, place, &ns, &mut Rng::new(1));
    assert_eq!(pick(&member_of_1), Some(addr(1)));
    assert_eq!(pick(&LEAF_OF_1), Some(addr(2)));
}

/// Every member we know says in its Have that it is detached (no path to the seed, depth
/// 255): the seed is asked first. A withholder in a root slot detaches its whole stripe;
/// asked, the seed gives its slot away once its audit found it barren. A member not yet heard
/// in a Have is not known to be detached.
#[test]
fn with_only_detached_members_the_seed_is_asked_first() {
    let heard = |mut n: Neighbour| {
        n.have = Some(HaveSummary {
            first: 0,
            highest: 100,
            recent: 0,
        });
        n
    };
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 1, u8::MAX, 3)); // no Have yet
    ns.insert(addr(4), Neighbour::new(Role::Seed, 0, None, 0));
    let mut tree = StripeTree::new(4, 0);
    let pick = |tree: &StripeTree, ns: &Neighbours| {
        tree.choose_parent(0, 1, &LEAF_OF_1, ns, &mut Rng::new(1))
    };
    assert_eq!(pick(&tree, &ns), Some(addr(1)), "not known to be detached");
    ns.insert(addr(1), heard(peer(10, 1, u8::MAX, 3)));
    assert_eq!(pick(&tree, &ns), Some(addr(4)), "detached: the seed");
    tree.refused.insert((addr(4), 1), REFUSAL_BACKOFF_US);
    assert_eq!(
        pick(&tree, &ns),
        Some(addr(1)),
        "refused: a detached member"
    );
    tree.forget_expired_refusals(REFUSAL_BACKOFF_US);
    ns.insert(addr(2), heard(peer(11, 1, 4, 1)));
    assert_eq!(
        pick(&tree, &ns),
        Some(addr(2)),
        "an attached member before the seed"
    );
}

#[test]
fn a_fed_stripe_moves_up_to_a_shallower_parent_with_room() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 1, 4, 4));
    let mut tree = StripeTree::new(4, 0);
    let mut rng = Rng::new(1);
    let mut out = Outbox::default();
    tree.maintain(0, false, &LEAF_OF_1, &ns, &mut rng, &mut out);
    tree.on_subscribe_reply(0, addr(1), 1, true, false, false, &mut out);
    sent(&mut out);
    ns.insert(addr(2), peer(11, 1, 1, 0)); // shallower, but full
    ns.insert(addr(3), peer(12, 1, 4, 3)); // room, as deep as the parent
                                           // Ticks over 3 s: the parent keeps pushing, so only a move can change it.
    let mut run = |tree: &mut StripeTree, ns: &mut Neighbours, from: u64, to: u64| {
        let mut messages = Vec::new();
        for tick in from..to {
            let now = tick * TICK_US;
            tree.heard(1, tick * 4 + 1, now);
            tree.pushed(1, addr(1));
            for a in [addr(1), addr(2), addr(3), addr(4)] {
                if let Some(n) = ns.get_mut(&a) {
                    n.last_heard = now;
                }
            }
            tree.maintain(now, false, &LEAF_OF_1, ns, &mut rng, &mut out);
            messages.extend(sent(&mut out));
        }
        messages
    };
    let quiet = run(&mut tree, &mut ns, 1, 30);
    assert!(quiet.is_empty(), "moved without a better parent: {quiet:?}");
    assert_eq!(tree.parent(1), Some(addr(1)));
    ns.insert(addr(4), peer(13, 1, 2, 1)); // room, and two hops shallower
                                           // Looked for once a second (last at tick 20): at tick 30, one Subscribe.
    let moving = run(&mut tree, &mut ns, 30, 32);
    assert_eq!(moving, vec![(addr(4), Message::Subscribe { stripe: 1 })]);
    assert_eq!(
        tree.parent(1),
        Some(addr(1)),
        "kept until the new one accepts"
    );
    tree.on_subscribe_reply(32 * TICK_US, addr(4), 1, true, false, false, &mut out);
    assert_eq!(tree.parent(1), Some(addr(4)));
    assert_eq!(
        sent(&mut out),
        vec![(addr(1), Message::Unsubscribe { stripe: 1 })]
    );
}

/// A starved stripe's detached member gets a root slot beyond the seed's budget, displacing
/// nobody: the root it starves under may be a withholder the audits cannot catch, or an
/// honest root whose subtree is still forming.
#[test]
fn a_seed_takes_an_extra_root_for_a_starved_stripe_displacing_nobody() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 0, 1, 0)); // the oldest member of stripe 0: the root
    ns.insert(addr(2), peer(20, 0, 255, 0)); // a younger member, detached
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    let ask = |tree: &mut StripeTree, ns: &mut Neighbours, out: &mut Outbox, a: u16, extra| {
        tree.on_subscribe(1_000, addr(a), 0, false, extra, &SEED, 0.25, ns, out)
    };
    assert!(ask(&mut tree, &mut ns, &mut out, 1, false).accepted);
    assert!(
        !ask(&mut tree, &mut ns, &mut out, 2, false).accepted,
        "full, and the root is older"
    );
    let extra = ask(&mut tree, &mut ns, &mut out, 2, true);
    assert_eq!(
        extra,
        SubscribeOutcome {
            accepted: true,
            displaced_barren: None,
            extra_root: true,
        }
    );
    assert!(
        !sent(&mut out)
            .iter()
            .any(|(_, m)| matches!(m, Message::Unsubscribe { .. })),
        "nobody displaced"
    );
    let mut fed = tree.take_children(0, &ns);
    fed.sort();
    assert_eq!(fed, vec![addr(1), addr(2)]);
}

/// One lost Have and a long path made a live root look silent while its stripe's orphans
/// asked the seed: a leaf took the slot, and every member of the stripe was detached.
#[test]
fn a_leaf_never_takes_a_members_root_slot_at_the_seed() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 2, 1, 0)); // the root of stripe 2
    ns.insert(addr(2), peer(5, 1, 3, 0)); // an older leaf of stripe 2
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    assert!(subscribe(&mut tree, 0, addr(1), 2, &SEED, &mut ns, &mut out).accepted);
    let silent = CHILD_SILENT_US + 1;
    if let Some(n) = ns.get_mut(&addr(2)) {
        n.last_heard = silent;
    }
    assert!(
        !subscribe(&mut tree, silent, addr(2), 2, &SEED, &mut ns, &mut out).accepted,
        "neither older nor silent makes a leaf a root"
    );
    assert_eq!(tree.take_children(2, &ns), vec![addr(1)]);
}

/// Among members with room at the same depth, the one nearer in round-trip time is the
/// parent; a hop less outweighs a far link.
#[test]
fn a_parent_at_the_same_depth_is_the_nearest_in_round_trip_time() {
    let with_rtt = |n: Neighbour, rtt_ms: u64| Neighbour {
        rtt_us: Some(rtt_ms * 1000),
        ..n
    };
    let mut ns = Neighbours::default();
    ns.insert(addr(1), with_rtt(peer(10, 1, 3, 2), 300));
    ns.insert(addr(2), with_rtt(peer(11, 1, 3, 2), 5));
    let tree = StripeTree::new(4, 0);
    let pick = |ns: &Neighbours| tree.choose_parent(0, 1, &LEAF_OF_1, ns, &mut Rng::new(1));
    assert_eq!(pick(&ns), Some(addr(2)));
    ns.insert(addr(3), with_rtt(peer(12, 1, 2, 2), 150));
    assert_eq!(pick(&ns), Some(addr(3)), "a hop less, 75 ms further");
}

/// A member killed without a Goodbye stays a neighbour for 1.5 s, still claiming room and a
/// shallow place: after 0.5 s of silence it is no longer chosen as a parent.
#[test]
fn a_member_not_heard_from_lately_is_not_chosen() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 1, 1, 4)); // shallow and roomy, killed at 0
    ns.insert(addr(2), peer(11, 1, 3, 1)); // deeper, alive
    let tree = StripeTree::new(4, 0);
    let mut rng = Rng::new(1);
    let pick = |now: u64, ns: &mut Neighbours, rng: &mut Rng| {
        if let Some(n) = ns.get_mut(&addr(2)) {
            n.last_heard = now;
        }
        tree.choose_parent(now, 1, &LEAF_OF_1, ns, rng)
    };
    assert_eq!(pick(PARENT_GONE_US, &mut ns, &mut rng), Some(addr(1)));
    assert_eq!(pick(PARENT_GONE_US + 1, &mut ns, &mut rng), Some(addr(2)));
}

/// An index is unsigned: the seed ranks a claim no older than its floor (a history before
/// the stream's newest chunk when the claimant first reached the seed), so a newcomer
/// claiming index 1 no longer outranks the stripe's oldest member for its root slot.
#[test]
fn at_the_seed_a_claimed_index_older_than_its_floor_ranks_at_the_floor() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(5_000, 0, 1, 0)); // the oldest member that reached the seed early
    let mut newcomer = peer(1, 0, 255, 0); // claims index 1
    newcomer.index_floor = 10_000;
    ns.insert(addr(2), newcomer);
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    assert!(subscribe(&mut tree, 0, addr(1), 0, &SEED, &mut ns, &mut out).accepted);
    assert!(
        !subscribe(&mut tree, 0, addr(2), 0, &SEED, &mut ns, &mut out).accepted,
        "index 1, ranked at its floor of 10,000, is younger than 5,000"
    );
    // Without the floor, the claim wins the slot.
    if let Some(n) = ns.get_mut(&addr(2)) {
        n.index_floor = 0;
    }
    assert!(subscribe(&mut tree, 0, addr(2), 0, &SEED, &mut ns, &mut out).accepted);
    assert_eq!(tree.take_children(0, &ns), vec![addr(2)]);
}

/// A Subscribe's acceptance that comes after we stopped waiting for it (or that we never
/// asked for) is declined while another node feeds us the stripe: left standing, its sender
/// pushed us the stripe beside our parent. The seed's offer of a root slot is taken while we
/// are detached in our member stripe.
#[test]
fn an_unasked_acceptance_is_declined_unless_the_seed_offers_a_detached_member_a_root() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 0, 3, 4)); // our parent in our member stripe 0
    ns.insert(addr(2), peer(11, 0, 2, 4)); // asked once, long ago
    ns.insert(addr(3), Neighbour::new(Role::Seed, 0, None, 0));
    let member_of_0 = Place {
        member: Some(0),
        ..LEAF_OF_1
    };
    let mut tree = StripeTree::new(4, 0);
    let mut rng = Rng::new(1);
    let mut out = Outbox::default();
    tree.maintain(0, false, &member_of_0, &ns, &mut rng, &mut out);
    let asked = sent(&mut out);
    let Some((first, _)) = asked
        .iter()
        .find(|(_, m)| *m == Message::Subscribe { stripe: 0 })
    else {
        panic!("no Subscribe for stripe 0: {asked:?}");
    };
    let (first, other) = match *first == addr(1) {
        true => (addr(1), addr(2)),
        false => (addr(2), addr(1)),
    };
    tree.on_subscribe_reply(0, first, 0, true, false, false, &mut out);
    assert_eq!(tree.parent(0), Some(first));
    tree.on_subscribe_reply(1_000, other, 0, true, false, false, &mut out);
    assert_eq!(tree.parent(0), Some(first), "kept");
    assert_eq!(
        sent(&mut out),
        vec![(other, Message::Unsubscribe { stripe: 0 })],
        "declined"
    );
    tree.on_subscribe_reply(2_000, addr(3), 0, true, true, false, &mut out);
    assert_eq!(
        tree.parent(0),
        Some(first),
        "attached: the offer is declined"
    );
    assert_eq!(
        sent(&mut out),
        vec![(addr(3), Message::Unsubscribe { stripe: 0 })]
    );
    // Left lately for withholding: a neighbour claiming to be the seed that withholds would
    // take the slot back with every offer.
    tree.refused
        .insert((addr(3), 0), 3_000 + STALLED_BACKOFF_US);
    tree.on_subscribe_reply(3_000, addr(3), 0, true, true, true, &mut out);
    assert_eq!(tree.parent(0), Some(first), "not from a withholder");
    assert_eq!(
        sent(&mut out),
        vec![(addr(3), Message::Unsubscribe { stripe: 0 })]
    );
    // Refused by it a moment ago (2 s back-off): its offer is taken.
    tree.refused
        .insert((addr(3), 0), 3_000 + REFUSAL_BACKOFF_US);
    tree.on_subscribe_reply(4_000, addr(3), 0, true, true, true, &mut out);
    assert_eq!(
        tree.parent(0),
        Some(addr(3)),
        "detached: the offer is taken"
    );
    assert_eq!(
        sent(&mut out),
        vec![(first, Message::Unsubscribe { stripe: 0 })],
        "the old parent is told"
    );
    // Without a parent and asking nobody, an acceptance from a peer is still declined: it
    // passed none of choose_parent's checks.
    tree.on_unsubscribe(5_000, addr(3), 0, &mut ns);
    assert_eq!(tree.parent(0), None);
    tree.on_subscribe_reply(5_000, other, 0, true, false, true, &mut out);
    assert_eq!(tree.parent(0), None);
    assert_eq!(
        sent(&mut out),
        vec![(other, Message::Unsubscribe { stripe: 0 })]
    );
}

/// The seed's offers of extra roots stay within the K subscriptions beyond its budget that
/// extra roots may take in all.
#[test]
fn a_seed_offers_extra_roots_within_k_beyond_its_budget() {
    let mut ns = Neighbours::default();
    for i in 1..=12u16 {
        ns.insert(addr(i), peer(u64::from(i), 0, 255, 0));
    }
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    // max_upload 0.25: one subscription in the budget; the offers may take four more.
    assert!(subscribe(&mut tree, 0, addr(1), 0, &SEED, &mut ns, &mut out).accepted);
    let offered: Vec<Option<bool>> = (2..=7u16)
        .map(|i| tree.offer_extra_root(1_000, addr(i), 0, &SEED, 0.25, &mut ns, &mut out))
        .collect();
    let beyond = Some(true);
    assert_eq!(offered, vec![beyond, beyond, beyond, beyond, None, None]);
    let replies = sent(&mut out)
        .into_iter()
        .filter(|(_, m)| {
            *m == Message::SubscribeReply {
                stripe: 0,
                accepted: true,
            }
        })
        .count();
    assert_eq!(replies, 5, "the subscription and four offers");
    assert_eq!(tree.take_children(0, &ns).len(), 5);
    assert_eq!(
        tree.offer_extra_root(1_000, addr(8), 0, &LEAF_OF_1, 4.0, &mut ns, &mut out),
        None,
        "only the seed offers"
    );
    // With room in the budget (max_upload 1: four subscriptions), an offer is no extra root;
    // a node fed the stripe already is offered nothing.
    let mut roomy = StripeTree::new(4, 0);
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(1, 0, 255, 0));
    assert_eq!(
        roomy.offer_extra_root(0, addr(1), 0, &SEED, 1.0, &mut ns, &mut out),
        Some(false)
    );
    assert_eq!(
        roomy.offer_extra_root(0, addr(1), 0, &SEED, 1.0, &mut ns, &mut out),
        None
    );
}

/// A Subscribe from a node the seed feeds already (it crossed the seed's offer, or the reply
/// was lost) keeps its slot and displaces nobody: counted in the total but not among the
/// children to displace, it made the seed let another root go.
#[test]
fn a_subscribe_from_a_child_already_fed_displaces_nobody() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 0, 1, 0)); // the root of stripe 0
    ns.insert(addr(2), peer(20, 0, 255, 0)); // offered an extra root
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    assert!(subscribe(&mut tree, 0, addr(1), 0, &SEED, &mut ns, &mut out).accepted);
    assert_eq!(
        tree.offer_extra_root(1_000, addr(2), 0, &SEED, 0.25, &mut ns, &mut out),
        Some(true)
    );
    sent(&mut out);
    let again = subscribe(&mut tree, 2_000, addr(2), 0, &SEED, &mut ns, &mut out);
    assert!(again.accepted);
    assert_eq!(
        sent(&mut out),
        vec![(
            addr(2),
            Message::SubscribeReply {
                stripe: 0,
                accepted: true
            }
        )],
        "accepted again, nobody let go"
    );
    let mut fed = tree.take_children(0, &ns);
    fed.sort();
    assert_eq!(fed, vec![addr(1), addr(2)]);
}

/// A Subscribe's acceptance that comes after the Subscribe went void (4 ticks unanswered) is
/// taken from whom we asked while we still have no parent and ask nobody else; from anyone
/// else it is declined.
#[test]
fn a_late_answer_to_our_last_subscribe_is_taken_while_we_have_no_parent() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 1, 1, 4));
    ns.insert(addr(2), peer(11, 1, 1, 4));
    let mut tree = StripeTree::new(4, 0);
    let mut rng = Rng::new(1);
    let mut out = Outbox::default();
    tree.maintain(0, false, &LEAF_OF_1, &ns, &mut rng, &mut out);
    let asked: Vec<SocketAddr> = sent(&mut out)
        .into_iter()
        .filter(|(_, m)| *m == Message::Subscribe { stripe: 1 })
        .map(|(to, _)| to)
        .collect();
    assert_eq!(asked.len(), 1);
    let (asked, other) = match asked[0] == addr(1) {
        true => (addr(1), addr(2)),
        false => (addr(2), addr(1)),
    };
    // Void after 4 ticks; both are refused-free, so the next Subscribe goes out at once.
    if let Some(s) = tree.stripes.get_mut(1) {
        s.pending = None;
        s.voided = Some(asked);
    }
    tree.on_subscribe_reply(5 * TICK_US, other, 1, true, false, false, &mut out);
    assert_eq!(tree.parent(1), None, "not asked");
    assert_eq!(
        sent(&mut out),
        vec![(other, Message::Unsubscribe { stripe: 1 })]
    );
    tree.on_subscribe_reply(5 * TICK_US, asked, 1, true, false, false, &mut out);
    assert_eq!(tree.parent(1), Some(asked), "late, but ours");
    assert!(sent(&mut out).is_empty());
}

/// A member below a parent that starves it of its stripe takes the seed's offer of a root
/// as a detached one would: a parent that pushed nothing for half a window since it took us,
/// or under half of what the stripe brought in this window, withholds.
#[test]
fn a_parent_that_pushes_too_little_of_its_stripe_withholds() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 0, 1, 4));
    let member_of_0 = Place {
        member: Some(0),
        ..LEAF_OF_1
    };
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    tree.maintain(0, false, &member_of_0, &ns, &mut Rng::new(1), &mut out);
    assert!(sent(&mut out).contains(&(addr(1), Message::Subscribe { stripe: 0 })));
    tree.on_subscribe_reply(0, addr(1), 0, true, false, false, &mut out);
    assert_eq!(tree.parent(0), Some(addr(1)));
    assert!(
        !tree.parent_withholds(0, 10 * STALL_US),
        "before the stream flows every parent pushes nothing"
    );
    let flows = 2 * STALL_US;
    tree.heard(1, 1, flows); // another stripe's first chunk
    assert!(
        !tree.parent_withholds(0, flows + STALL_US / 2 - 1),
        "not yet"
    );
    assert!(
        tree.parent_withholds(0, flows + STALL_US / 2),
        "nothing for half a window of a flowing stream"
    );
    tree.pushed(0, addr(1));
    assert!(!tree.parent_withholds(0, flows + STALL_US / 2), "it pushed");
    for seq in 0..8 {
        tree.heard(0, seq * 4, flows + 100);
    }
    assert!(
        tree.parent_withholds(0, flows + STALL_US / 2),
        "1 push of 8 new chunks: the rest came from others"
    );
    assert!(
        !tree.parent_withholds(1, STALL_US / 2),
        "no parent in stripe 1"
    );
}
