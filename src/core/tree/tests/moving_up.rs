//! Moving up: a fed stripe looks again for a parent nearer the seed (`StripeTree::move_up`).

use super::*;

#[test]
fn a_fed_stripe_moves_up_to_a_shallower_parent_with_room() {
    let (mut ns, mut tree, mut rng, mut out) = leaf_asking_a_member_of_stripe_1(4, 4);
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
            tree.maintain(now, false, &LEAF_OF_1, ns, &DETACHED, &mut rng, &mut out);
            // Stripe 1's only: stripes 2 and 3 ask addr(1) to adopt us, unanswered here.
            messages.extend(sent(&mut out).into_iter().filter(|(_, m)| {
                matches!(
                    m,
                    Message::Subscribe { stripe: 1, .. } | Message::Unsubscribe { stripe: 1 }
                )
            }));
        }
        messages
    };
    let quiet = run(&mut tree, &mut ns, 1, 30);
    assert!(quiet.is_empty(), "moved without a better parent: {quiet:?}");
    assert_eq!(tree.parent(1), Some(addr(1)));
    ns.insert(addr(4), peer(13, 1, 2, 1)); // room, and two hops shallower
                                           // Looked for once a second (last at tick 20): at tick 30, one Subscribe.
    let moving = run(&mut tree, &mut ns, 30, 32);
    assert_eq!(
        moving,
        vec![(
            addr(4),
            Message::Subscribe {
                stripe: 1,
                hold_after: None
            }
        )]
    );
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

/// Before the stream begins a move costs nothing (no chunk is on its way), so a stripe of a
/// peer the seed told so looks for a nearer parent every tick; once the stream flows, or for
/// a peer that joined while it flowed, once a second. Peers that joined a second before the
/// stream first looked just as it began, and the roots let leaves go for them, which then
/// lacked the stripe until another parent took them.
#[test]
fn before_the_stream_a_stripe_moves_up_at_the_next_tick() {
    // The tick of the first Subscribe for stripe 1 to a shallower member with room that
    // appears at tick 3, for a stripe whose parent took it at tick 0.
    let first_move = |told_unbegun: bool, stream: bool| -> Option<u64> {
        let (mut ns, mut tree, mut rng, mut out) = leaf_asking_a_member_of_stripe_1(4, 4);
        tree.set_told_unbegun(told_unbegun);
        tree.on_subscribe_reply(0, addr(1), 1, true, false, false, &mut out);
        sent(&mut out);
        for tick in 1..15 {
            let now = tick * TICK_US;
            if tick == 3 {
                ns.insert(addr(4), peer(13, 1, 2, 1)); // room, two hops shallower
            }
            if stream {
                tree.heard(1, tick * 4 + 1, now);
                tree.pushed(1, addr(1));
            }
            for a in [addr(1), addr(4)] {
                if let Some(n) = ns.get_mut(&a) {
                    n.last_heard = now;
                }
            }
            tree.maintain(now, stream, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
            let asked = Message::Subscribe {
                stripe: 1,
                hold_after: None,
            };
            if sent(&mut out).contains(&(addr(4), asked)) {
                return Some(tick);
            }
        }
        None
    };
    assert_eq!(first_move(true, false), Some(3), "before the stream");
    assert_eq!(first_move(true, true), Some(10), "once it flows");
    // A joiner the seed told the stream flows: the leaves it would displace are fed.
    assert_eq!(first_move(false, false), Some(10), "joined while it flowed");
}

/// An adopted leaf's parent is not in the stripe's tree, and its depth there is unknown: a
/// member of the stripe with room, however deep, is asked as soon as one appears, and an
/// adopter never takes an adopted leaf from a member.
#[test]
fn an_adopted_leaf_moves_to_a_member_of_its_stripe_with_room() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 2, 1, 5)); // a member of stripe 2 with room
    let mut tree = StripeTree::new(4, 0);
    let mut rng = Rng::new(1);
    let mut out = Outbox::default();
    let stripe_1 = |m: &(SocketAddr, Message)| {
        matches!(
            m.1,
            Message::Subscribe { stripe: 1, .. } | Message::Unsubscribe { stripe: 1 }
        )
    };
    tree.maintain(0, false, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
    let asked: Vec<_> = sent(&mut out).into_iter().filter(stripe_1).collect();
    assert_eq!(
        asked,
        vec![(
            addr(1),
            Message::Subscribe {
                stripe: 1,
                hold_after: None
            }
        )],
        "no member of stripe 1 known: the peer of stripe 2 is asked to adopt us"
    );
    tree.on_subscribe_reply(0, addr(1), 1, true, false, false, &mut out);
    assert_eq!(tree.parent(1), Some(addr(1)));
    ns.insert(addr(2), peer(11, 1, 6, 1)); // a deep member of stripe 1, with room
    let mut moved = Vec::new();
    for tick in 1..40 {
        let now = tick * TICK_US;
        tree.heard(1, tick * 4 + 1, now);
        tree.pushed(1, addr(1));
        for a in [addr(1), addr(2)] {
            if let Some(n) = ns.get_mut(&a) {
                n.last_heard = now;
            }
        }
        tree.maintain(now, false, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
        moved.extend(sent(&mut out).into_iter().filter(stripe_1));
        if !moved.is_empty() {
            break;
        }
    }
    assert_eq!(
        moved,
        vec![(
            addr(2),
            Message::Subscribe {
                stripe: 1,
                hold_after: None
            }
        )]
    );
    tree.on_subscribe_reply(4 * TICK_US, addr(2), 1, true, false, false, &mut out);
    assert_eq!(tree.parent(1), Some(addr(2)));
    assert_eq!(
        sent(&mut out),
        vec![(addr(1), Message::Unsubscribe { stripe: 1 })]
    );
}
