//! The stripe tree alone: no node, no network, a hand-made neighbour table.

use super::*;
use crate::core::config::{BARREN_AFTER_US, CHILD_SILENT_US, MEMBER_SILENT_FOR_LEAF_US};
use crate::core::neighbours::HaveSummary;

/// A Have as a node without a parent in its member stripe sends it (`maintain`).
const DETACHED: Message = Message::Have {
    first: 0,
    highest: 0,
    recent: 0,
    children: 0,
    spare: 0,
    depth: u8::MAX,
};

/// One upkeep of `tree` as a node of `place` among `ns`, with a fresh seeded Rng.
fn upkeep(
    tree: &mut StripeTree,
    now: u64,
    moved_on: bool,
    place: &Place,
    ns: &Neighbours,
    out: &mut Outbox,
) {
    tree.maintain(now, moved_on, place, ns, &DETACHED, &mut Rng::new(1), out);
}

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
    tree.on_subscribe(now, from, stripe, false, false, false, place, 0.25, ns, out)
}

const SEED: Place = Place {
    role: Role::Seed,
    index: 0,
    member: None,
    stripes: 4,
};

/// A peer of join index 10, member of stripe 2.
const MEMBER_OF_2: Place = Place {
    role: Role::Peer,
    index: 10,
    member: Some(2),
    stripes: 4,
};

const LEAF_OF_1: Place = Place {
    role: Role::Peer,
    index: 100,
    member: Some(0),
    stripes: 4,
};

#[test]
fn a_parent_is_a_member_with_room_then_an_adopter_then_a_full_member_then_the_seed() {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 1, 3, 2));
    ns.insert(addr(2), peer(11, 1, 1, 0)); // shallowest, but full
    ns.insert(addr(3), peer(12, 1, 2, 1)); // room, and shallower than addr(1)
    ns.insert(addr(4), Neighbour::new(Role::Seed, 0, None, 0));
    ns.insert(addr(5), peer(13, 2, 1, 9)); // another stripe's member, room to spare
    ns.insert(addr(6), peer(14, 3, 1, 1)); // another's, no room beyond its headroom
    ns.insert(addr(7), peer(15, 3, u8::MAX, 9)); // another's, detached
    let mut tree = StripeTree::new(4, 0);
    let mut rng = Rng::new(1);
    let pick = |tree: &StripeTree, rng: &mut Rng| tree.choose_parent(0, 1, &LEAF_OF_1, &ns, rng);
    assert_eq!(pick(&tree, &mut rng), Some(addr(3)));
    // A refusal keeps it out of the running for a while.
    tree.refused.insert((addr(3), 1), REFUSAL_BACKOFF_US);
    assert_eq!(pick(&tree, &mut rng), Some(addr(1)));
    tree.refused.insert((addr(1), 1), REFUSAL_BACKOFF_US);
    tree.set_hold_after(Some(7));
    assert_eq!(
        pick(&tree, &mut rng),
        Some(addr(2)),
        "a joiner waiting for a keyframe asks no adopter: adopters do not hold"
    );
    tree.set_hold_after(None);
    assert_eq!(
        pick(&tree, &mut rng),
        Some(addr(5)),
        "an attached peer of another stripe with room may adopt us: before a full member"
    );
    tree.refused.insert((addr(5), 1), REFUSAL_BACKOFF_US);
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

/// A leaf of stripe 0 whose only neighbour, `addr(1)`, is a member of stripe 1 at `depth`
/// with `spare` room: its first maintenance asked `addr(1)` for stripe 1.
fn leaf_asking_a_member_of_stripe_1(depth: u8, spare: u8) -> (Neighbours, StripeTree, Rng, Outbox) {
    let mut ns = Neighbours::default();
    ns.insert(addr(1), peer(10, 1, depth, spare));
    let mut tree = StripeTree::new(4, 0);
    let mut rng = Rng::new(1);
    let mut out = Outbox::default();
    tree.maintain(0, false, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
    assert!(sent(&mut out).contains(&(
        addr(1),
        Message::Subscribe {
            stripe: 1,
            hold_after: None
        }
    )));
    (ns, tree, rng, out)
}

/// Stripe 1 flows at 50 chunks a second (20 ms apart), over 4 s. Its parent (`addr(1)`, the
/// only candidate) sends the share of them `from_parent` picks, and a Have every 200 ms;
/// whether it was replaced is returned.
fn parent_replaced(from_parent: impl Fn(u64) -> bool) -> bool {
    let (mut ns, mut tree, mut rng, mut out) = leaf_asking_a_member_of_stripe_1(1, 4);
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
            tree.maintain(now, false, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
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

/// A viewer waiting for a broadcast to begin took its parent 2 s before the stream. When the
/// stream begins, its neighbours' Haves may announce the first chunks before its parent's
/// first push comes: that parent has not gone quiet. It is replaced only if it then sends
/// nothing of the stripe for a whole [`STALL_US`], whether other stripes flow or no chunk
/// comes at all (a liar that took every stripe and forwards nothing); for half of one if it
/// claims to be the seed, which pushes a child it takes at once.
#[test]
fn a_parent_taken_before_the_stream_is_kept_when_the_stream_begins_elsewhere_first() {
    for (claims_seed, other_stripes_flow) in [(false, false), (false, true), (true, false)] {
        let (mut ns, mut tree, mut rng, mut out) = leaf_asking_a_member_of_stripe_1(1, 4);
        if let Some(n) = ns.get_mut(&addr(1)).filter(|_| claims_seed) {
            n.role = Role::Seed;
        }
        tree.on_subscribe_reply(0, addr(1), 1, true, false, false, &mut out);
        let dropped =
            |out: &mut Outbox| sent(out).contains(&(addr(1), Message::Unsubscribe { stripe: 1 }));
        let mut now = 0;
        // Before the stream: the parent's Haves come, nothing else happens.
        while now < 2_000_000 {
            now += TICK_US;
            if let Some(n) = ns.get_mut(&addr(1)) {
                n.last_heard = now;
            }
            tree.maintain(now, false, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
            assert!(!dropped(&mut out), "dropped at {now} µs before the stream");
        }
        // The stream began: neighbours announce seqs we lack (moved on), no chunk of stripe 1
        // came yet.
        now += TICK_US;
        let began = now;
        tree.maintain(now, true, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
        assert!(!dropped(&mut out), "dropped the tick the stream began");
        assert_eq!(tree.parent(1), Some(addr(1)));
        // The parent keeps sending Haves and nothing of its stripe.
        let mut seq = 0;
        loop {
            now += TICK_US;
            if other_stripes_flow {
                seq += 4;
                tree.heard(0, seq, now);
            }
            if let Some(n) = ns.get_mut(&addr(1)) {
                n.last_heard = now;
            }
            tree.maintain(now, true, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
            if dropped(&mut out) {
                break;
            }
            assert!(now < began + STALL_US + 2 * TICK_US, "kept a silent parent");
        }
        let after = match claims_seed {
            true => STALL_US / 2,
            false => STALL_US,
        };
        assert!(
            (began + after..began + after + 2 * TICK_US).contains(&now),
            "replaced {} µs after the stream began (claims to be the seed: {claims_seed})",
            now - began
        );
    }
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
        tree.maintain(0, false, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
        assert!(sent(&mut out).contains(&(
            addr(1),
            Message::Subscribe {
                stripe: 1,
                hold_after: None
            }
        )));
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
            tree.maintain(now, false, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
        }
        assert!(now <= PARENT_GONE_US + TICK_US, "replaced after {now} µs");
        sent(&mut out)
            .into_iter()
            .find(|(_, m)| {
                *m == Message::Subscribe {
                    stripe: 1,
                    hold_after: None,
                }
            })
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

/// A root the seed let go tells the member it asks for a place that it is detached, before
/// it asks: admission judges its claim to a place by its last Have, which a neighbour
/// outside our tree gets only every few ticks (the stripe's other root refused it on a Have
/// that still said depth 1). A member never placed, or in a leaf stripe, asks without one.
#[test]
fn a_root_the_seed_let_go_sends_its_have_before_it_asks_a_member_for_a_place() {
    let seed = addr(4);
    let mut ns = Neighbours::default();
    ns.insert(seed, Neighbour::new(Role::Seed, 0, None, 0));
    let mut tree = StripeTree::new(4, 0);
    let mut out = Outbox::default();
    let mut rng = Rng::new(1);
    // The seed feeds us stripe 0, our own: we are its root.
    tree.maintain(0, false, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
    tree.on_subscribe_reply(0, seed, 0, true, true, false, &mut out);
    assert_eq!(tree.parent(0), Some(seed));
    ns.insert(addr(1), peer(10, 0, 1, 0)); // the stripe's other root, older, full
    ns.insert(addr(2), peer(11, 1, 1, 2)); // a member of stripe 1 with room
    sent(&mut out);
    // A member never placed asks without a Have.
    let mut fresh = StripeTree::new(4, 0);
    fresh.maintain(0, false, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
    let asked = sent(&mut out);
    assert!(asked.contains(&(
        addr(1),
        Message::Subscribe {
            stripe: 0,
            hold_after: None
        }
    )));
    assert!(!asked.iter().any(|(_, m)| matches!(m, Message::Have { .. })));
    // The seed lets us go, and the tree says so; a stranger's Unsubscribe says nothing.
    assert!(!tree.on_unsubscribe(TICK_US, addr(9), 0, &mut ns));
    assert!(tree.on_unsubscribe(TICK_US, seed, 0, &mut ns));
    tree.maintain(
        2 * TICK_US,
        false,
        &LEAF_OF_1,
        &ns,
        &DETACHED,
        &mut rng,
        &mut out,
    );
    let to_root: Vec<Message> = sent(&mut out)
        .into_iter()
        .filter(|(to, _)| *to == addr(1))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        to_root,
        vec![
            DETACHED,
            Message::Subscribe {
                stripe: 0,
                hold_after: None
            }
        ]
    );
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
    tree.maintain(0, false, &member_of_0, &ns, &DETACHED, &mut rng, &mut out);
    let asked = sent(&mut out);
    let Some((first, _)) = asked.iter().find(|(_, m)| {
        *m == Message::Subscribe {
            stripe: 0,
            hold_after: None,
        }
    }) else {
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
    tree.maintain(0, false, &LEAF_OF_1, &ns, &DETACHED, &mut rng, &mut out);
    let asked: Vec<SocketAddr> = sent(&mut out)
        .into_iter()
        .filter(|(_, m)| {
            *m == Message::Subscribe {
                stripe: 1,
                hold_after: None,
            }
        })
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
        s.voided = Some(PendingSubscribe {
            to: asked,
            sent: 0,
            hold: false,
        });
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
    upkeep(&mut tree, 0, false, &member_of_0, &ns, &mut out);
    assert!(sent(&mut out).contains(&(
        addr(1),
        Message::Subscribe {
            stripe: 0,
            hold_after: None
        }
    )));
    tree.on_subscribe_reply(0, addr(1), 0, true, false, false, &mut out);
    assert_eq!(tree.parent(0), Some(addr(1)));
    assert!(
        !tree.parent_withholds(0, 10 * STALL_US),
        "before the stream flows every parent pushes nothing"
    );
    // No chunk has come at all, but the neighbours announce seqs we lack: the stream flows.
    let mut chunkless = StripeTree::new(4, 0);
    upkeep(&mut chunkless, 0, false, &member_of_0, &ns, &mut out);
    chunkless.on_subscribe_reply(0, addr(1), 0, true, false, false, &mut out);
    if let Some(n) = ns.get_mut(&addr(1)) {
        n.last_heard = STALL_US;
    }
    upkeep(&mut chunkless, STALL_US, true, &member_of_0, &ns, &mut out);
    assert_eq!(chunkless.parent(0), Some(addr(1)));
    assert!(!chunkless.parent_withholds(0, STALL_US + STALL_US / 2));
    assert!(
        chunkless.parent_withholds(0, STALL_US + STALL_US / 2 + 1),
        "nothing for half a window since the neighbours' announcements"
    );
    let flows = 2 * STALL_US;
    tree.heard(1, 1, flows); // another stripe's first chunk
    let half = flows + STALL_US / 2;
    assert!(!tree.parent_withholds(0, half), "not yet");
    assert!(
        tree.parent_withholds(0, half + 1),
        "nothing for half a window of a flowing stream"
    );
    tree.pushed(0, addr(1));
    assert!(!tree.parent_withholds(0, half + 1), "it pushed");
    for seq in 0..8 {
        tree.heard(0, seq * 4, flows + 100);
    }
    assert!(
        tree.parent_withholds(0, half + 1),
        "1 push of 8 new chunks: the rest came from others"
    );
    assert!(
        !tree.parent_withholds(1, STALL_US / 2),
        "no parent in stripe 1"
    );
}

/// Another neighbour's push of a stripe is a stray feed only once the stripe's parent has
/// pushed some of it since taking us: before that, the other feed may be all that carries
/// it, and telling it to stop would leave a gap for repairs to fill.
#[test]
fn a_feed_beside_a_parent_that_has_not_yet_pushed_is_let_be() {
    let (_, mut tree, _, mut out) = leaf_asking_a_member_of_stripe_1(1, 4);
    // While we ask addr(1), its pushes and anyone else's are taken.
    assert!(!tree.is_stray_feed(1, addr(1)));
    assert!(!tree.is_stray_feed(1, addr(2)));
    tree.on_subscribe_reply(1_000, addr(1), 1, true, false, false, &mut out);
    assert_eq!(tree.parent(1), Some(addr(1)));
    assert!(
        !tree.is_stray_feed(1, addr(2)),
        "the parent has pushed nothing yet"
    );
    tree.pushed(1, addr(1));
    assert!(tree.is_stray_feed(1, addr(2)), "the parent now feeds us");
    assert!(!tree.is_stray_feed(1, addr(1)));
    assert!(!tree.is_stray_feed(0, addr(2)), "stripe 0 has no parent");
}

#[test]
fn pushes_go_first_to_the_children_that_pass_them_on() {
    let mut ns = Neighbours::default();
    // Fed stripe 2: a leaf (member of 0) that feeds 3 in its own stripe, a member of 2 that
    // feeds nobody, and members of 2 that feed 1 and 4; in address order, leaf first.
    for (i, member, feeding) in [(1u16, 0u8, 3u8), (2, 2, 0), (3, 2, 1), (4, 2, 4)] {
        let mut n = peer(u64::from(i), member, 2, 0);
        n.feeding = feeding;
        n.children.insert(2);
        ns.insert(addr(i), n);
    }
    let mut tree = StripeTree::new(4, 0);
    let order = tree.take_children(2, &ns);
    assert_eq!(order, vec![addr(4), addr(3), addr(2), addr(1)]);
    tree.put_back_children(2, order);
    // The member that fed nobody now feeds 5: it comes first once the lists are rebuilt.
    if let Some(n) = ns.get_mut(&addr(2)) {
        n.feeding = 5;
    }
    tree.children_changed();
    assert_eq!(
        tree.take_children(2, &ns),
        vec![addr(2), addr(4), addr(3), addr(1)]
    );
}

mod admission;
mod hold;
mod moving_up;
