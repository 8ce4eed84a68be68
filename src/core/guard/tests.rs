//! The seed's audit of its stripe children, alone.

use super::*;
use crate::media::identity::StreamKey;
use crate::proto::wire::Role;

/// A stripe child that announces children but leaves the seed's audits unanswered (a
/// withholder in a root slot) is barren after three in a row; its answer clears the count.
#[test]
fn a_stripe_child_that_leaves_three_audits_unanswered_is_barren() {
    let key = StreamKey::from_seed([7; 32]);
    let mut history = History::new(1024);
    for seq in 0..700 {
        history.insert(Arc::new(Chunk::sign(&key, seq, seq, 0, vec![0x47; 188])));
    }
    let child = SocketAddr::from(([127, 0, 0, 1], 9001));
    let mut ns = Neighbours::default();
    let mut n = Neighbour::new(Role::Peer, 5, Some(1), 0);
    n.children.insert(1);
    n.feeding = 13; // what it claims
    ns.insert(child, n);
    let now = BARREN_AFTER_US;
    let mut out = Outbox::default();
    // One audit a round, each a second (here 40 seqs) later than the last.
    let mut round = 0;
    let mut audit = |ns: &mut Neighbours| {
        round += 1;
        Guard::audit(ns, &history, Some(Seq(500 + 40 * round)), 4, &mut out);
        ns.get(&child).map(|n| (n.audit, is_barren(n, now)))
    };
    let (first, barren) = audit(&mut ns).expect("the child");
    let first = first.expect("an audit");
    assert_eq!(first % 4, 1, "a chunk of its stripe");
    assert!(!barren);
    assert_eq!(audit(&mut ns).map(|a| a.1), Some(false), "one unanswered");
    assert_eq!(audit(&mut ns).map(|a| a.1), Some(false), "two unanswered");
    assert_eq!(audit(&mut ns).map(|a| a.1), Some(true), "three: barren");
    let n = ns.get_mut(&child).expect("the child");
    audit_answered(n, first);
    assert!(
        is_barren(n, now),
        "a late answer to an old audit changes nothing"
    );
    let last = n.audit.expect("an audit outstanding");
    audit_answered(n, last);
    assert!(!is_barren(n, now), "it answered: it forwards");
}

/// A member whose Have says depth 255 and shows its own stripe missing while the others
/// arrive.
fn member(stripe: u8, starved: bool, now: u64) -> Neighbour {
    let mut n = Neighbour::new(Role::Peer, 50, Some(stripe), now);
    let highest = 1_000u64;
    let mut recent = u128::MAX;
    if starved {
        for back in 0..128u64 {
            if (highest - back) % 4 == u64::from(stripe) {
                recent &= !(1u128 << back);
            }
        }
        n.depth = u8::MAX;
    } else {
        n.depth = 3;
    }
    n.have = Some(crate::core::neighbours::HaveSummary {
        first: 0,
        highest,
        recent,
    });
    n
}

fn at(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000 + i))
}

/// A seed's guard, and five members of stripe 1 among its neighbours (at(0) to at(4)):
/// the first three starved of it, the other two fed.
fn three_of_five_starved_of_stripe_one() -> (Guard, Neighbours) {
    let key = StreamKey::from_seed([7; 32]);
    let guard = Guard::new(key.id(), None);
    let mut ns = Neighbours::default();
    for i in 0..3 {
        ns.insert(at(i), member(1, true, 0));
    }
    for i in 3..5 {
        ns.insert(at(i), member(1, false, 0));
    }
    (guard, ns)
}

/// A stripe starved while most of its starved members have no parent looks forming, and so
/// does one with under two thirds of them below a parent (an honest stripe's chains still
/// filling while 10,000 peers a second join). One starved while two thirds of them hang below
/// a parent looks withheld once that has held for [`WITHHELD_HELD_US`], at every tick it
/// could be judged (an honest stripe at 100,000 peers reached two thirds at the one tick it
/// could be judged before its extra root); three quarters, at once. A tick at which the
/// stripe is not starved, or may not be judged, starts the wait again.
#[test]
fn a_stripe_looks_withheld_when_two_thirds_of_its_starved_members_hang_below_a_parent() {
    let (mut guard, mut ns) = three_of_five_starved_of_stripe_one();
    // Every member heard just now, so that only the shares change from tick to tick.
    let judge = |guard: &mut Guard, ns: &mut Neighbours, now: u64| {
        for n in ns.values_mut() {
            n.last_heard = now;
        }
        guard.note_starved_stripes(ns, 4, now);
    };
    for i in 5..11 {
        ns.insert(at(i), member(1, true, 0));
    }
    judge(&mut guard, &mut ns, 0);
    assert!(
        guard.starved_now().contains(1) && !guard.looks_withheld(1),
        "forming"
    );
    let below_a_parent = |ns: &mut Neighbours, members: &[u16]| {
        for i in members {
            if let Some(n) = ns.get_mut(&at(*i)) {
                n.depth = 2;
            }
        }
    };
    // 4 of the 9 starved.
    below_a_parent(&mut ns, &[0, 1, 2, 5]);
    judge(&mut guard, &mut ns, 50);
    assert!(
        guard.starved_now().contains(1) && !guard.looks_withheld(1),
        "under half below a parent: still forming"
    );
    // 6 of the 9: two thirds, not yet for a tick.
    below_a_parent(&mut ns, &[6, 7]);
    judge(&mut guard, &mut ns, 100);
    assert!(!guard.looks_withheld(1), "two thirds at one tick");
    // Back under two thirds (6 of 11) for a tick: the wait starts again.
    ns.insert(at(20), member(1, true, 0));
    ns.insert(at(21), member(1, true, 0));
    judge(&mut guard, &mut ns, 100 + WITHHELD_HELD_US);
    assert!(!guard.looks_withheld(1), "6 of 11");
    ns.remove(&at(20));
    ns.remove(&at(21));
    // Two thirds again, then a tick not starved (9 starved of 18): the wait starts again.
    let t = 100 + 2 * WITHHELD_HELD_US;
    judge(&mut guard, &mut ns, t);
    for i in 11..18 {
        ns.insert(at(i), member(1, false, 0));
    }
    judge(&mut guard, &mut ns, t + WITHHELD_HELD_US);
    for i in 11..18 {
        ns.remove(&at(i));
    }
    judge(&mut guard, &mut ns, t + 2 * WITHHELD_HELD_US);
    assert!(
        !guard.looks_withheld(1),
        "two thirds, after a tick not starved"
    );
    // An extra root taken in that tick: the next is within EXTRA_ROOT_GAP_US of it, and
    // the wait starts again.
    let t = t + 2 * WITHHELD_HELD_US;
    guard.extra_root_taken(1, t);
    judge(&mut guard, &mut ns, t + WITHHELD_HELD_US);
    assert!(
        !guard.looks_withheld(1),
        "within the gap after an extra root"
    );
    let again = t + WITHHELD_JUDGED_AFTER_US;
    judge(&mut guard, &mut ns, again);
    assert!(!guard.looks_withheld(1), "two thirds again, at one tick");
    judge(&mut guard, &mut ns, again + WITHHELD_HELD_US);
    assert!(
        guard.looks_withheld(1) && !guard.looks_withheld(0),
        "two thirds for a tick"
    );
    // Until the stripe is fed again: 9 starved of 18.
    for i in 11..18 {
        ns.insert(at(i), member(1, false, 0));
    }
    judge(&mut guard, &mut ns, again + 2 * WITHHELD_HELD_US);
    assert!(guard.starved_now().is_empty() && !guard.looks_withheld(1));
    // Starved again (the fed ones gone) with 7 of its 9 starved below a parent: at once.
    for i in 11..18 {
        ns.remove(&at(i));
    }
    below_a_parent(&mut ns, &[8]);
    judge(&mut guard, &mut ns, again + 3 * WITHHELD_HELD_US);
    assert!(guard.looks_withheld(1), "three quarters at once");
}

/// The members an extra root just took hang below it while their Haves still show the
/// starvation it ends: within [`WITHHELD_JUDGED_AFTER_US`] of the first extra root of the
/// starved spell, and [`EXTRA_ROOT_GAP_US`] of the last, they do not make the stripe look
/// withheld (honest stripes still forming kept their extra roots for good so: bl-sim, 1,000
/// peers × 20 s, seed 2, and 100,000 peers joining 10,000 a second, judged 2 s after the
/// first); starved below a parent after that, they do. A second offer in the spell does not
/// start the longer wait again, or offers every 2 s would put the judgement off for good.
#[test]
fn members_just_taken_by_an_extra_root_do_not_make_the_stripe_look_withheld() {
    let (mut guard, mut ns) = three_of_five_starved_of_stripe_one();
    for i in 5..7 {
        ns.insert(at(i), member(1, true, 0));
    }
    guard.note_starved_stripes(&ns, 4, 0);
    assert!(guard.starved_now().contains(1) && !guard.looks_withheld(1));
    guard.extra_root_taken(1, 100);
    // Five starved and two fed, all now below a parent.
    let mut judge = |guard: &mut Guard, now: u64| {
        for i in 0..7 {
            if let Some(n) = ns.get_mut(&at(i)) {
                n.depth = 2;
                n.last_heard = now;
            }
        }
        guard.note_starved_stripes(&ns, 4, now);
        assert!(guard.starved_now().contains(1));
        guard.looks_withheld(1)
    };
    assert!(!judge(&mut guard, 100 + EXTRA_ROOT_GAP_US), "2 s after");
    let second = 100 + EXTRA_ROOT_GAP_US + 500_000;
    guard.extra_root_taken(1, second);
    assert!(!judge(&mut guard, 100 + WITHHELD_JUDGED_AFTER_US));
    assert!(!judge(&mut guard, second + EXTRA_ROOT_GAP_US - 1));
    assert!(
        judge(&mut guard, second + EXTRA_ROOT_GAP_US),
        "still starved below a parent, 4 s after the spell's first extra root"
    );
}

/// Members whose Haves span too few of the stripe's chunks to tell (they have only just
/// joined) count neither way: with four of them beside three starved members and two fed,
/// the stripe is starved. Counted as fed, they kept a stripe below a liar in a root slot
/// from looking starved until 1.7 s into the stream (bl-sim, 1,000 peers, 5 % liars, seed
/// 10: half its members had joined within the last 32 seqs).
#[test]
fn members_that_only_just_joined_do_not_hide_a_starved_stripe() {
    let (mut guard, mut ns) = three_of_five_starved_of_stripe_one();
    // Everything since it joined 30 seqs ago: its judged seqs (16 back and older) hold
    // three of stripe 1's chunks, one short of STARVED_JUDGED_CHUNKS.
    let just_joined = || {
        let mut n = member(1, false, 0);
        n.have = Some(crate::core::neighbours::HaveSummary {
            first: 1_000 - 30,
            highest: 1_000,
            recent: (1u128 << 31) - 1,
        });
        n
    };
    for i in 5..9 {
        ns.insert(at(i), just_joined());
    }
    guard.note_starved_stripes(&ns, 4, 0);
    guard.note_starved_stripes(&ns, 4, STARVED_FOR_US);
    assert!(
        guard.is_starved(1, STARVED_FOR_US),
        "3 of the 5 that can tell"
    );
    // One seq more and it can tell: fed, so 3 of 6 is no longer more than half.
    let mut n = just_joined();
    n.have = Some(crate::core::neighbours::HaveSummary {
        first: 1_000 - 31,
        highest: 1_000,
        recent: (1u128 << 32) - 1,
    });
    ns.insert(at(5), n);
    let later = 10 * STARVED_FOR_US;
    guard.note_starved_stripes(&ns, 4, later);
    guard.note_starved_stripes(&ns, 4, later + STARVED_FOR_US);
    assert!(!guard.is_starved(1, later + STARVED_FOR_US), "3 of 6");
}

/// More than half of a stripe's members at the seed starved of it, detached or still
/// below a parent, for STARVED_FOR_US: the stripe is starved, and stops being so once they
/// are fed. Members merely joining (detached, but holding nothing) do not count, nor do
/// members of other stripes.
#[test]
fn a_stripe_is_starved_when_most_of_its_members_lack_it_attached_or_not() {
    let (mut guard, mut ns) = three_of_five_starved_of_stripe_one();
    // Joining: detached, nothing held yet.
    let mut joining = Neighbour::new(Role::Peer, 60, Some(1), 0);
    joining.have = Some(crate::core::neighbours::HaveSummary {
        first: 0,
        highest: 1_000,
        recent: 0,
    });
    ns.insert(at(5), joining);
    for i in 6..12 {
        ns.insert(at(i), member(2, false, 0));
    }
    guard.note_starved_stripes(&ns, 4, 0);
    assert!(
        !guard.is_starved(1, STARVED_FOR_US),
        "3 of 6 is not more than half"
    );
    // Still below a parent that claims a path to the seed: it counts all the same.
    let mut attached = member(1, true, 0);
    attached.depth = 2;
    ns.insert(at(12), attached);
    guard.note_starved_stripes(&ns, 4, 100);
    assert!(!guard.is_starved(1, 100), "not yet for long");
    guard.note_starved_stripes(&ns, 4, STARVED_FOR_US);
    assert!(
        !guard.is_starved(1, STARVED_FOR_US),
        "starved since 100 µs only"
    );
    guard.note_starved_stripes(&ns, 4, STARVED_FOR_US + 100);
    assert!(
        guard.is_starved(1, STARVED_FOR_US + 100),
        "4 of 7, for long enough"
    );
    assert!(!guard.is_starved(2, STARVED_FOR_US + 100));
    // Offered at once to its oldest starved member heard lately, still below a parent or
    // not: not to one silent for long, nor to one barred, nor to one fed.
    let starved = |index: u64, last_heard: u64| {
        let mut n = member(1, true, last_heard);
        n.index = index;
        n
    };
    // Asked when the members heard at STARVED_FOR_US are still heard lately, and the one
    // heard at 0 no longer is.
    let pick = STARVED_FOR_US + CHILD_SILENT_US;
    ns.insert(at(20), starved(5, 0)); // oldest, but silent since 0
    ns.insert(at(21), starved(7, STARVED_FOR_US));
    ns.insert(at(22), starved(6, STARVED_FOR_US)); // barred
    ns.insert(at(23), starved(8, STARVED_FOR_US));
    let mut fed = member(1, false, STARVED_FOR_US);
    fed.index = 2;
    ns.insert(at(24), fed);
    guard.bar(at(22), pick + crate::core::config::BARRED_US);
    assert_eq!(guard.extra_root_candidate(&ns, 1, 4, pick), Some(at(21)));
    // Below a withholder, an older member is starved but attached: it is the one, as
    // the members younger than it could be its children and it could be none of theirs.
    let mut below_a_withholder = starved(4, STARVED_FOR_US);
    below_a_withholder.depth = 2;
    ns.insert(at(25), below_a_withholder);
    assert_eq!(guard.extra_root_candidate(&ns, 1, 4, pick), Some(at(25)));
    assert_eq!(guard.extra_root_candidate(&ns, 2, 4, pick), None);
    guard.extra_root_taken(1, pick);
    assert_eq!(
        guard.extra_root_candidate(&ns, 1, 4, pick + 100),
        None,
        "one at a time"
    );
    for i in 20..26 {
        ns.remove(&at(i));
    }
    assert!(!guard.is_starved(1, pick + 100), "not again before the gap");
    // One tick in which it did not look starved does not shorten the gap.
    let taken = pick;
    let stripe_1 = |starved: bool, at_us: u64| {
        let mut table = Neighbours::default();
        for i in 0..5u16 {
            table.insert(at(100 + i), member(1, starved, at_us));
        }
        table
    };
    guard.note_starved_stripes(&stripe_1(false, taken + 100), 4, taken + 100);
    guard.note_starved_stripes(&stripe_1(true, taken + 200), 4, taken + 200);
    let later = taken + 200 + STARVED_FOR_US;
    guard.note_starved_stripes(&stripe_1(true, later), 4, later);
    assert!(
        !guard.is_starved(1, later),
        "starved again, but within the gap"
    );
    let gap_over = taken + crate::core::config::EXTRA_ROOT_GAP_US;
    guard.note_starved_stripes(&stripe_1(true, gap_over), 4, gap_over);
    assert!(guard.is_starved(1, gap_over), "after the gap");
    guard.note_starved_stripes(&stripe_1(false, gap_over), 4, gap_over);
    // Fed again: no longer starved.
    for i in [0u16, 1] {
        ns.insert(at(i), member(1, false, 0));
    }
    let fed = STARVED_FOR_US + 300;
    guard.note_starved_stripes(&ns, 4, fed);
    assert!(!guard.is_starved(1, fed + STARVED_FOR_US));
    // Members not heard from lately do not count either way.
    for i in [0u16, 1] {
        ns.insert(at(i), member(1, true, 0));
    }
    let late = STARVED_HEARD_US + 1;
    guard.note_starved_stripes(&ns, 4, late);
    assert!(!guard.is_starved(1, late + STARVED_FOR_US));
}

/// A member made a root of a starved stripe is sent the stripe's chunks of the last
/// BACKLOG_US that its Have does not show, oldest first: not those of other stripes, not
/// older ones, not the end record, not those it holds, no more than BACKLOG_MAX_CHUNKS,
/// and only once per stripe.
#[test]
fn a_new_root_of_a_starved_stripe_gets_the_stripes_recent_chunks_it_lacks() {
    use crate::core::config::{BACKLOG_MAX_CHUNKS, BACKLOG_US};
    use crate::core::neighbours::HaveSummary;
    let key = StreamKey::from_seed([7; 32]);
    // Chunks 10 ms apart; the newest (999, and the end record after it) captured at
    // 10.99 s, so the window starts at 8.99 s: seq 799 (stripe 3) exactly, while 795,
    // the stripe's chunk before it, is 1 µs too old.
    let capture = |seq: u64| match seq {
        795..=798 => 8_990_000 - 1,
        1_003 => 10_990_000,
        _ => 1_000_000 + seq * 10_000,
    };
    assert_eq!(capture(999) - BACKLOG_US, capture(799));
    let mut history = History::new(4096);
    for seq in 0..1_000u64 {
        history.insert(Arc::new(Chunk::sign(
            &key,
            seq,
            capture(seq),
            0,
            vec![0x47; 188],
        )));
    }
    history.insert(Arc::new(Chunk::end_record(&key, 1_003, capture(1_003))));
    let fresh = || Neighbour::new(Role::Peer, 5, Some(3), 0);
    let seqs = |n: &mut Neighbour| -> Vec<u64> {
        starved_backlog(&history, n, 3, 4)
            .iter()
            .map(|c| c.seq)
            .collect()
    };
    let all: Vec<u64> = (799..1_000).filter(|s| s % 4 == 3).collect();
    assert!(
        all.len() <= BACKLOG_MAX_CHUNKS,
        "the test's window fits the cap"
    );
    // No Have yet: the stripe's whole window, oldest first, from its very edge.
    let mut n = fresh();
    assert_eq!(seqs(&mut n), all);
    // Once per stripe: a second offer of the same stripe sends nothing.
    assert!(seqs(&mut n).is_empty(), "sent once already");
    // It holds the stripe's newest 16 seqs and every other stripe's: those are not sent.
    let highest = 999u64;
    let mut recent = u128::MAX;
    for back in 16..128u64 {
        if (highest - back) % 4 == 3 {
            recent &= !(1u128 << back);
        }
    }
    let mut n = fresh();
    n.have = Some(HaveSummary {
        first: 0,
        highest,
        recent,
    });
    let lacked: Vec<u64> = all.iter().copied().filter(|s| *s < 984).collect();
    assert_eq!(seqs(&mut n), lacked);
    // A faster stream: only the newest BACKLOG_MAX_CHUNKS of the window.
    let mut fast = History::new(4096);
    for seq in 0..2_000u64 {
        let capture = 1_000_000 + seq * 1_000;
        fast.insert(Arc::new(Chunk::sign(
            &key,
            seq,
            capture,
            0,
            vec![0x47; 188],
        )));
    }
    let sent: Vec<u64> = starved_backlog(&fast, &mut fresh(), 1, 4)
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(sent.len(), BACKLOG_MAX_CHUNKS);
    assert_eq!(sent.last(), Some(&1_997));
    assert!(
        sent.windows(2).all(|w| w[0] + 4 == w[1]),
        "oldest first, all of stripe 1"
    );
    // Nothing held: nothing sent.
    assert!(starved_backlog(&History::new(16), &mut fresh(), 1, 4).is_empty());
}
