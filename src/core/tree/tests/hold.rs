//! Holds: a parent pushes a joiner nothing before the keyframe it waits for, within bounds.

use super::*;
use crate::core::config::{KEYFRAME_HOLD_MAX_US, RELEASE_GRACE_US};

/// A member of stripe 2 that took `addr(1)` as a child of it (the Subscribe asked to hold
/// until a keyframe past seq 1,000), holding chunks up to seq 1,010, its newest keyframe 800.
fn parent_holding_for_addr_1(now: u64) -> (StripeTree, Neighbours, HoldStart) {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(20, 0, 255, 0));
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    let taken = tree.on_subscribe(
        now,
        addr(1),
        2,
        true,
        false,
        false,
        &MEMBER_OF_2,
        1.0,
        &mut ns,
        &mut out,
    );
    assert!(taken.accepted);
    let start = tree.hold_for(now, addr(1), Some(1_000), Some(800), Some(1_010), 256);
    (tree, ns, start)
}

#[test]
fn a_held_child_is_pushed_nothing_until_a_keyframe_past_what_it_waits_after() {
    let (mut tree, ns, start) = parent_holding_for_addr_1(0);
    assert_eq!(start, HoldStart::Held);
    assert!(tree.take_children(2, &ns).is_empty(), "pushed while held");
    assert!(
        tree.release_holds(1_000).is_empty(),
        "a keyframe it waits after"
    );
    assert_eq!(tree.release_holds(1_012), vec![addr(1)]);
    assert_eq!(tree.take_children(2, &ns), vec![addr(1)]);
    assert_eq!(tree.held_children(), 0);
}

#[test]
fn a_child_is_released_at_once_if_the_parent_holds_a_keyframe_past_it() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(20, 0, 255, 0));
    let mut tree = StripeTree::new(4, 0);
    let start = tree.hold_for(0, addr(1), Some(700), Some(800), Some(1_010), 256);
    assert_eq!(start, HoldStart::ReleaseAt(800));
    assert_eq!(tree.held_children(), 0);
}

/// Every field of a Subscribe is the sender's word: a hold can neither outlive its bound nor
/// wait for a seq past what the parent believes exists, and asking again without one ends it.
#[test]
fn a_hold_is_bounded_in_time_and_by_what_exists() {
    let (mut tree, ns, _) = parent_holding_for_addr_1(0);
    tree.expire_holds(KEYFRAME_HOLD_MAX_US - 1);
    assert_eq!(tree.held_children(), 1);
    tree.expire_holds(KEYFRAME_HOLD_MAX_US);
    assert_eq!(tree.held_children(), 0, "a hold outlived its bound");
    assert_eq!(tree.take_children(2, &ns), vec![addr(1)]);

    let start = tree.hold_for(0, addr(1), Some(u64::MAX), Some(800), Some(1_010), 256);
    assert_eq!(start, HoldStart::None, "held for a seq nobody will reach");
    assert_eq!(tree.held_children(), 0);

    let (mut tree, ns, _) = parent_holding_for_addr_1(0);
    assert_eq!(
        tree.hold_for(0, addr(1), None, Some(800), Some(1_010), 256),
        HoldStart::None
    );
    assert_eq!(
        tree.take_children(2, &ns),
        vec![addr(1)],
        "asked again without a hold"
    );

    let (mut tree, ns, _) = parent_holding_for_addr_1(0);
    tree.forget(addr(1));
    assert_eq!(tree.held_children(), 0, "a hold outlived its neighbour");
    drop(ns);
}

/// The joiner's side: its Subscribes ask to hold only the stripes it plays, not the one it
/// passes on, and it judges a parent that holds by nothing but being gone until it starts.
#[test]
fn a_joiner_asks_to_hold_only_the_stripes_it_does_not_pass_on() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 1, 1, 4));
    ns.insert(addr(2), peer(11, 0, 1, 4));
    let member_of_0 = Place {
        member: Some(0),
        ..LEAF_OF_1
    };
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    tree.set_hold_after(Some(500));
    upkeep(&mut tree, 0, false, &member_of_0, &ns, &mut out);
    let subscribes = sent(&mut out);
    assert!(subscribes.contains(&(
        addr(1),
        Message::Subscribe {
            stripe: 1,
            hold_after: Some(500)
        }
    )));
    assert!(subscribes.contains(&(
        addr(2),
        Message::Subscribe {
            stripe: 0,
            hold_after: None
        }
    )));
    tree.on_subscribe_reply(0, addr(1), 1, true, false, false, &mut out);
    // The stream flows (other stripes' chunks come), and the parent holds: kept past a
    // stall's time, while the joiner waits.
    let mut now = 0;
    while now < 3 * STALL_US {
        now += TICK_US;
        tree.heard(0, now / 1_000, now);
        if let Some(n) = ns.get_mut(&addr(1)) {
            n.last_heard = now;
        }
        upkeep(&mut tree, now, true, &member_of_0, &ns, &mut out);
    }
    assert_eq!(tree.parent(1), Some(addr(1)), "a holding parent was let go");
    // Started at a keyframe another parent released: this one has the grace a keyframe
    // needs to reach it, then goes, to be asked again after a refusal's back-off (it may
    // be honest and far), not a withholder's.
    tree.started(now);
    let started = now;
    while tree.parent(1) == Some(addr(1)) && now < started + 3 * STALL_US {
        now += TICK_US;
        tree.heard(0, now / 1_000, now);
        if let Some(n) = ns.get_mut(&addr(1)) {
            n.last_heard = now;
        }
        upkeep(&mut tree, now, true, &member_of_0, &ns, &mut out);
    }
    assert_ne!(
        tree.parent(1),
        Some(addr(1)),
        "a parent that never released was kept"
    );
    assert_eq!(
        now,
        started + RELEASE_GRACE_US,
        "let go at the end of its grace"
    );
    assert_eq!(
        tree.refused.get(&(addr(1), 1)),
        Some(&(now + REFUSAL_BACKOFF_US))
    );
}

/// A parent that releases within the grace stays.
#[test]
fn a_parent_that_releases_after_the_start_is_kept() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 1, 1, 4));
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    tree.set_hold_after(Some(500));
    upkeep(&mut tree, 0, false, &LEAF_OF_1, &ns, &mut out);
    tree.on_subscribe_reply(0, addr(1), 1, true, false, false, &mut out);
    tree.started(STALL_US);
    let mut now = STALL_US;
    while now < 4 * STALL_US {
        now += TICK_US;
        for stripe in 0..4 {
            tree.heard(stripe, now / 1_000 + u64::from(stripe), now);
        }
        if now >= STALL_US + RELEASE_GRACE_US - TICK_US {
            tree.pushed(1, addr(1));
        }
        if let Some(n) = ns.get_mut(&addr(1)) {
            n.last_heard = now;
        }
        upkeep(&mut tree, now, true, &LEAF_OF_1, &ns, &mut out);
    }
    assert_eq!(tree.parent(1), Some(addr(1)));
}
