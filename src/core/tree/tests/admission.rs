//! Admission at the seed and at peers: whom a node takes as a child, whom it lets go, and
//! the seed's extra roots.

use super::*;
use crate::core::config::{ADOPTION_HEADROOM, HANDOVER_US, MEMBER_DISPLACED_EVERY_US};

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
        false,
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
    let me = MEMBER_OF_2;
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
        "another stripe is adopted only below a parent in it, and with room to spare"
    );
    assert!(!subscribe(&mut tree, 0, addr(3), 2, &me, &mut ns, &mut out).accepted);
    assert!(subscribe(&mut tree, 0, addr(2), 2, &me, &mut ns, &mut out).accepted);
    assert!(
        ns.get(&addr(1)).is_some_and(|n| n.children.is_empty()),
        "the leaf made room"
    );
    assert_eq!(tree.take_children(2, &ns), vec![addr(2)]);
}

/// A full member with no leaf to let go takes a member of its stripe that lost a place as
/// high as its own (detached now, its last placed depth no deeper than ours): its youngest
/// member child younger than the requester goes, once per [`MEMBER_DISPLACED_EVERY_US`]. A
/// root the seed let go as it settled had no older member with room, and its subtree lived
/// on repairs. A joiner never placed, a member placed deeper, and one whose Haves say it is
/// placed (a withholder claims depth 1) displace nobody.
#[test]
fn a_full_member_lets_its_youngest_member_child_go_for_a_member_that_lost_a_place_as_high() {
    let me = MEMBER_OF_2; // index 10
    let seed = addr(9);
    let mut ns = Neighbours::default();
    ns.insert(seed, Neighbour::new(Role::Seed, 0, None, 0));
    ns.insert(addr(1), peer(60, 2, 2, 0)); // a younger member child
    let mut tree = StripeTree::new(4, 0);
    let mut rng = Rng::new(1);
    let mut out = Outbox::default();
    // We are a root: the seed feeds us stripe 2 (depth 1).
    tree.maintain(0, false, &me, &ns, &DETACHED, &mut rng, &mut out);
    tree.on_subscribe_reply(0, seed, 2, true, true, false, &mut out);
    assert_eq!(tree.depth(&me, &ns), 1);
    // max_upload 0.25: one slot, taken by the younger member.
    assert!(subscribe(&mut tree, 0, addr(1), 2, &me, &mut ns, &mut out).accepted);
    let t = 10 * MEMBER_DISPLACED_EVERY_US;
    // Everyone was heard from lately: no child is silent, so none is let go for that.
    let heard = |ns: &mut Neighbours, now: u64| {
        for n in ns.values_mut() {
            n.last_heard = now;
        }
    };
    let asker = |ns: &mut Neighbours, a: u16, index: u64, depth: u8, attached: u8| {
        let mut n = peer(index, 2, depth, 0);
        n.attached_depth = attached;
        ns.insert(addr(a), n);
        heard(ns, t);
    };
    let fed = |ns: &Neighbours, a: u16| ns.get(&addr(a)).is_some_and(|n| n.children.contains(2));
    asker(&mut ns, 2, 20, u8::MAX, u8::MAX);
    assert!(
        !subscribe(&mut tree, t, addr(2), 2, &me, &mut ns, &mut out).accepted,
        "a joiner never placed"
    );
    asker(&mut ns, 2, 20, u8::MAX, 2);
    assert!(
        !subscribe(&mut tree, t, addr(2), 2, &me, &mut ns, &mut out).accepted,
        "placed deeper than we are"
    );
    asker(&mut ns, 2, 20, 1, 1);
    assert!(
        !subscribe(&mut tree, t, addr(2), 2, &me, &mut ns, &mut out).accepted,
        "its Haves say it is placed"
    );
    asker(&mut ns, 4, 70, u8::MAX, 1);
    assert!(
        !subscribe(&mut tree, t, addr(4), 2, &me, &mut ns, &mut out).accepted,
        "younger than every member child"
    );
    assert!(fed(&ns, 1));
    sent(&mut out);
    asker(&mut ns, 2, 20, u8::MAX, 1);
    assert!(subscribe(&mut tree, t, addr(2), 2, &me, &mut ns, &mut out).accepted);
    assert!(fed(&ns, 2) && !fed(&ns, 1), "the younger member made room");
    assert!(sent(&mut out).contains(&(addr(1), Message::Unsubscribe { stripe: 2 })));
    // Another that lost its place, older than addr(2): once per spell.
    asker(&mut ns, 3, 15, u8::MAX, 1);
    let soon = t + MEMBER_DISPLACED_EVERY_US - 1;
    heard(&mut ns, soon);
    assert!(!subscribe(&mut tree, soon, addr(3), 2, &me, &mut ns, &mut out).accepted);
    heard(&mut ns, soon + 1);
    assert!(subscribe(&mut tree, soon + 1, addr(3), 2, &me, &mut ns, &mut out).accepted);
    assert!(fed(&ns, 3) && !fed(&ns, 2));
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
        tree.on_subscribe(now, addr(2), 2, false, false, false, &SEED, 0.25, ns, out)
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
        tree.on_subscribe(now, addr(2), 2, false, false, false, &me, 0.25, ns, out)
    };
    alive(&mut ns, heard_lately);
    assert!(!ask_me(&mut tree, &mut ns, &mut out, heard_lately).accepted);
    alive(&mut ns, silent);
    assert!(ask_me(&mut tree, &mut ns, &mut out, silent).accepted);
    assert!(sent(&mut out).contains(&(addr(1), Message::Unsubscribe { stripe: 2 })));
    assert_eq!(tree.take_children(2, &ns), vec![addr(2)]);
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
        tree.on_subscribe(1_000, addr(a), 0, false, false, extra, &SEED, 0.25, ns, out)
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

/// The seed lets a root of a stripe it took an extra root for go only while it feeds more
/// than its budget and the stripe keeps another root: the one it ranks worst (here the
/// younger), told with an Unsubscribe and still pushed the stripe for [`HANDOVER_US`].
#[test]
fn a_seed_lets_its_worst_root_of_a_stripe_go_only_beyond_its_budget_and_never_the_last() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 0, 255, 0)); // stripe 0's oldest member, made an extra root
    ns.insert(addr(2), peer(20, 0, 1, 0)); // stripe 0's root
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    // max_upload 0.25: one subscription in the budget.
    assert!(subscribe(&mut tree, 0, addr(2), 0, &SEED, &mut ns, &mut out).accepted);
    assert_eq!(
        tree.offer_extra_root(1_000, addr(1), 0, &SEED, 0.25, &mut ns, &mut out),
        Some(true)
    );
    sent(&mut out);
    let release = |tree: &mut StripeTree, ns: &mut Neighbours, out: &mut Outbox, stripe, max| {
        tree.release_extra_root(3_000, stripe, &SEED, max, ns, out)
    };
    assert_eq!(
        release(&mut tree, &mut ns, &mut out, 1, 0.25),
        None,
        "no root"
    );
    assert_eq!(
        release(&mut tree, &mut ns, &mut out, 0, 1.0),
        None,
        "budget 4"
    );
    assert_eq!(
        tree.release_extra_root(3_000, 0, &LEAF_OF_1, 0.25, &mut ns, &mut out),
        None,
        "only the seed"
    );
    assert!(sent(&mut out).is_empty());
    assert_eq!(
        release(&mut tree, &mut ns, &mut out, 0, 0.25),
        Some(addr(2)),
        "the younger root, not the extra root itself"
    );
    assert_eq!(
        sent(&mut out),
        vec![(addr(2), Message::Unsubscribe { stripe: 0 })]
    );
    // Still pushed the stripe while it finds a parent, then no more.
    let mut fed = tree.take_children(0, &ns);
    fed.sort();
    assert_eq!(fed, vec![addr(1), addr(2)]);
    tree.put_back_children(0, fed);
    tree.forget_expired_refusals(3_000 + HANDOVER_US - 1);
    let fed = tree.take_children(0, &ns);
    assert_eq!(fed.len(), 2);
    tree.put_back_children(0, fed);
    tree.forget_expired_refusals(3_000 + HANDOVER_US);
    assert_eq!(tree.take_children(0, &ns), vec![addr(1)]);
    // Beyond the budget through another stripe, a stripe's last root is kept.
    ns.insert(addr(3), peer(30, 1, 1, 0));
    assert_eq!(
        tree.offer_extra_root(4_000, addr(3), 1, &SEED, 0.25, &mut ns, &mut out),
        Some(true)
    );
    assert_eq!(release(&mut tree, &mut ns, &mut out, 0, 0.25), None);
    assert_eq!(release(&mut tree, &mut ns, &mut out, 1, 0.25), None);
}

/// A settled seed's budget holds one root per stripe: a second member of a stripe is no
/// longer taken as an ordinary slot, the fifth root is beyond the budget (so it may be let
/// go), its Have shows no room, and extra roots still go up to K beyond the whole budget.
#[test]
fn a_settled_seed_keeps_one_root_per_stripe_and_extra_roots_up_to_k_beyond_its_whole_budget() {
    // max_upload 1.25 × 4 stripes: five slots while the swarm forms.
    let max = 1.25;
    let mut ns = Neighbours::default();
    for stripe in 0..4u8 {
        ns.insert(
            addr(u16::from(stripe) + 1),
            peer(u64::from(stripe) + 1, stripe, 1, 0),
        );
    }
    ns.insert(addr(5), peer(5, 0, 255, 0)); // a second member of stripe 0
    ns.insert(addr(6), peer(6, 1, 255, 0)); // a second member of stripe 1
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    let ask = |tree: &mut StripeTree, ns: &mut Neighbours, out: &mut Outbox, i: u16, stripe| {
        tree.on_subscribe(0, addr(i), stripe, false, false, false, &SEED, max, ns, out)
            .accepted
    };
    for stripe in 0..4u8 {
        assert!(ask(
            &mut tree,
            &mut ns,
            &mut out,
            u16::from(stripe) + 1,
            stripe
        ));
    }
    assert_eq!(tree.spare_slots(&SEED, max, &ns), 1);
    tree.settle_roots(true);
    assert_eq!(tree.spare_slots(&SEED, max, &ns), 0);
    assert!(
        !ask(&mut tree, &mut ns, &mut out, 6, 1),
        "no fifth slot once settled"
    );
    tree.settle_roots(false);
    assert!(ask(&mut tree, &mut ns, &mut out, 5, 0), "the fifth slot");
    assert!(!tree.beyond_budget(&SEED, max, &ns));
    tree.settle_roots(true);
    assert!(tree.beyond_budget(&SEED, max, &ns));
    // Extra roots: four beyond the whole budget of five, nine root slots in all.
    for i in 7..=11u16 {
        ns.insert(addr(i), peer(u64::from(i), 2, 255, 0));
    }
    let offered: Vec<Option<bool>> = (7..=11u16)
        .map(|i| tree.offer_extra_root(1_000, addr(i), 2, &SEED, max, &mut ns, &mut out))
        .collect();
    let beyond = Some(true);
    assert_eq!(offered, vec![beyond, beyond, beyond, beyond, None]);
    // Let go while settled: the worst root of stripe 0, and then no more of it.
    assert!(tree
        .release_extra_root(2_000, 0, &SEED, max, &mut ns, &mut out)
        .is_some());
    assert_eq!(
        tree.release_extra_root(2_000, 0, &SEED, max, &mut ns, &mut out),
        None,
        "a stripe's last root"
    );
}

/// A root the seed let go is pushed the stripe while it finds a parent; its Unsubscribe, once
/// it has one, ends that at once: what the seed would still push are duplicates.
#[test]
fn a_released_roots_unsubscribe_ends_its_handover() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 0, 255, 0));
    ns.insert(addr(2), peer(20, 0, 1, 0));
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    assert!(subscribe(&mut tree, 0, addr(2), 0, &SEED, &mut ns, &mut out).accepted);
    tree.offer_extra_root(1_000, addr(1), 0, &SEED, 0.25, &mut ns, &mut out);
    let released = tree.release_extra_root(3_000, 0, &SEED, 0.25, &mut ns, &mut out);
    assert_eq!(released, Some(addr(2)));
    // While handed over, the seed names it an older root of its stripe when it asks for peers.
    assert_eq!(tree.handed_over(addr(2)), Some(0));
    assert_eq!(tree.handed_over(addr(1)), None);
    let fed = tree.take_children(0, &ns);
    assert_eq!(fed.len(), 2, "handed over");
    tree.put_back_children(0, fed);
    // Another stripe's Unsubscribe ends nothing.
    tree.on_unsubscribe(3_100, addr(2), 1, &mut ns);
    let fed = tree.take_children(0, &ns);
    assert_eq!(fed.len(), 2);
    tree.put_back_children(0, fed);
    tree.on_unsubscribe(3_200, addr(2), 0, &mut ns);
    assert_eq!(tree.take_children(0, &ns), vec![addr(1)]);
    assert_eq!(tree.handed_over(addr(2)), None);
}

#[test]
fn a_full_seed_gives_a_stripe_without_members_the_slot_of_a_leaf_a_member_can_feed() {
    // max_upload 0.25: one subscription in the budget, and the first child of each stripe.
    let mut ns = Neighbours::default();
    // Nobody is a member of stripe 3. addr(1), younger than addr(2), would be let go first
    // were it not that its stripe-1 slot has no member with room to go to.
    ns.insert(addr(1), peer(40, 0, 1, 2)); // a member of stripe 0 with room
    ns.insert(addr(2), peer(20, 1, 1, 0)); // a member of stripe 1, full
    ns.insert(addr(3), peer(50, 2, 1, 2)); // the youngest, a member of stripe 2
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    for (child, stripe) in [(addr(2), 0), (addr(1), 1), (addr(1), 3)] {
        assert!(subscribe(&mut tree, 0, child, stripe, &SEED, &mut ns, &mut out).accepted);
    }
    sent(&mut out);
    // Stripe 1 has a member: a leaf asking for it displaces nobody.
    assert!(!subscribe(&mut tree, 0, addr(3), 1, &SEED, &mut ns, &mut out).accepted);
    // Stripe 3 has none: only the seed can feed it. Its leaf addr(2) gives up stripe 0,
    // whose member has room; addr(1) keeps stripe 1, whose member is full.
    let taken = subscribe(&mut tree, 0, addr(3), 3, &SEED, &mut ns, &mut out);
    assert!(taken.accepted);
    let messages = sent(&mut out);
    assert!(messages.contains(&(addr(2), Message::Unsubscribe { stripe: 0 })));
    assert!(!messages
        .iter()
        .any(|(to, m)| *to == addr(1) && matches!(m, Message::Unsubscribe { .. })));
    assert!(ns.get(&addr(2)).is_some_and(|n| n.children.is_empty()));
    assert!(ns.get(&addr(1)).is_some_and(|n| n.children.contains(1)));
}

/// Adoption: a peer with room feeds a leaf of a stripe not its own, but only below a member
/// of that stripe whose pushes flow (so no chain of adopters closes a loop), never a member
/// of that stripe (it belongs in its own tree), and keeping [`ADOPTION_HEADROOM`] slots free;
/// a member of its own stripe takes an adopted leaf's slot first.
#[test]
fn a_peer_with_room_adopts_a_leaf_of_another_stripe_below_a_member_of_it() {
    let me = MEMBER_OF_2;
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(50, 0, 3, 0)); // a leaf of stripe 1
    ns.insert(addr(2), peer(5, 1, 1, 0)); // a member of stripe 1: our parent in it
    ns.insert(addr(3), peer(60, 3, 2, 0)); // a member of stripe 3: an adopter of ours
    ns.insert(addr(4), peer(70, 1, 3, 0)); // a member of stripe 1
    ns.insert(addr(5), peer(80, 2, 3, 0)); // a younger member of our stripe
    ns.insert(addr(6), peer(90, 3, 3, 0)); // another leaf of stripe 1
    ns.insert(addr(7), peer(95, 0, 3, 0)); // a third leaf of stripe 1
    ns.insert(addr(8), peer(97, 0, 3, 0)); // a fourth leaf of stripe 1
    ns.insert(addr(9), peer(99, 2, 3, 0)); // the youngest member of our stripe
    let now = 1_000_000;
    for (_, n) in ns.iter_mut() {
        n.last_heard = now;
    }
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    // max_upload 1.0 × 4 stripes: four slots, of which adoption leaves one free.
    // A Subscribe from addr(from) for `stripe`, asking to be held or not: taken or not.
    let mut ask =
        |tree: &mut StripeTree, ns: &mut Neighbours, from: u16, stripe: u8, hold, taken, why| {
            let outcome = tree.on_subscribe(
                now,
                addr(from),
                stripe,
                hold,
                false,
                false,
                &me,
                1.0,
                ns,
                &mut out,
            );
            assert_eq!(outcome.accepted, taken, "{why}");
        };
    // No parent in stripe 1.
    ask(&mut tree, &mut ns, 1, 1, false, false, "no parent");
    tree.stripes[1].parent = Some(addr(2));
    // Its parent in stripe 1 has pushed nothing yet.
    ask(&mut tree, &mut ns, 1, 1, false, false, "not flowing");
    tree.heard(1, 1, now);
    // A member of stripe 1 belongs in its own tree.
    ask(&mut tree, &mut ns, 4, 1, false, false, "a member");
    tree.stripes[1].parent = Some(addr(3));
    // Below an adopter: its chain might come back to us.
    ask(&mut tree, &mut ns, 1, 1, false, false, "below an adopter");
    tree.stripes[1].parent = Some(addr(2));
    // A joiner waiting for a keyframe is left to members and the seed.
    ask(&mut tree, &mut ns, 1, 1, true, false, "held");
    // Below a member of stripe 1: adopted.
    ask(&mut tree, &mut ns, 1, 1, false, true, "adopted");
    ask(&mut tree, &mut ns, 6, 1, false, true, "");
    ask(&mut tree, &mut ns, 7, 1, false, true, "");
    assert!([1, 6, 7]
        .iter()
        .all(|i| ns.get(&addr(*i)).is_some_and(|n| n.children.contains(1))));
    assert_eq!(ADOPTION_HEADROOM, 1);
    // The last slot is kept for our own stripe and repairs.
    ask(&mut tree, &mut ns, 8, 1, false, false, "headroom");
    // Our own stripe takes the last slot.
    ask(&mut tree, &mut ns, 5, 2, false, true, "own stripe");
    // Full: a member of our stripe takes the youngest adopted leaf's slot.
    ask(&mut tree, &mut ns, 9, 2, false, true, "");
    assert!(ns.get(&addr(7)).is_some_and(|n| n.children.is_empty()));
    assert!([1, 6]
        .iter()
        .all(|i| ns.get(&addr(*i)).is_some_and(|n| n.children.contains(1))));
    assert!(sent(&mut out).contains(&(addr(7), Message::Unsubscribe { stripe: 1 })));
}

/// Before the stream, no parent pushes, so "its pushes flow" cannot be judged: a peer the
/// seed told the stream had not begun adopts below a member of the stripe as soon as it has
/// one. Judged on pushes, nobody adopted before the stream, and a leaf that every member
/// refused stayed without the stripe until a second after it began (bl-sim, 50 peers × 8 s,
/// the stream at 2 s, seed 7: one leaf refused by 11 peers from 0.9 s on asked for 63
/// repairs). Once a chunk has come, a quiet parent stops adoption again.
#[test]
fn before_the_stream_a_peer_adopts_below_a_member_of_the_stripe() {
    let me = MEMBER_OF_2;
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(50, 0, 3, 0)); // a leaf of stripe 1
    ns.insert(addr(2), peer(5, 1, 1, 0)); // a member of stripe 1: our parent in it
    ns.insert(addr(3), peer(60, 0, 3, 0)); // another leaf of stripe 1
    let now = 1_000_000;
    let mut tree = StripeTree::new(4, 0);
    tree.stripes[1].parent = Some(addr(2));
    let mut out = Outbox::default();
    let mut ask = |tree: &mut StripeTree, ns: &mut Neighbours, from: u16, now: u64| {
        tree.on_subscribe(
            now,
            addr(from),
            1,
            false,
            false,
            false,
            &me,
            1.0,
            ns,
            &mut out,
        )
        .accepted
    };
    assert!(
        !ask(&mut tree, &mut ns, 1, now),
        "not told the stream is ahead"
    );
    tree.set_told_unbegun(true);
    assert!(ask(&mut tree, &mut ns, 1, now), "before the stream");
    // The stream began a while ago (a chunk of stripe 0 came), and stripe 1 is quiet.
    tree.heard(0, 0, now);
    let later = now + 1_000_000;
    assert!(
        !ask(&mut tree, &mut ns, 3, later),
        "a quiet parent, once it began"
    );
}
