//! The repair budget alone, and whom a request goes to.

use super::*;
use crate::core::neighbours::HaveSummary;

/// A chunk every peer lost, older than the Haves' 128-seq bitmaps, so presumed held by
/// every peer: the seed is asked on try [`SEED_AFTER_TRIES`] and again at every doubling
/// of the tries (it may have left the first ask unanswered, beyond its budget), unless a
/// peer's bitmap shows the chunk.
#[test]
fn a_chunk_only_presumed_held_by_peers_is_asked_of_the_seed_at_doubling_tries() {
    let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], 9000 + i));
    let (seed, peer) = (addr(1), addr(2));
    let mut ns = Neighbours::default();
    ns.insert(seed, Neighbour::new(Role::Seed, 0, None, 0));
    let mut p = Neighbour::new(Role::Peer, 5, Some(1), 0);
    // Holds 0..=1000 but the newest 128 only as the bitmap says: nothing of them.
    p.have = Some(HaveSummary {
        first: 0,
        highest: 1000,
        recent: 0,
    });
    ns.insert(peer, p);
    let mut rng = Rng::new(1);
    let mut ask = |seq: u64, tries: u32, ns: &Neighbours| {
        pick_source(Seq(seq), tries, None, Some(seed), None, ns, &mut rng).0
    };
    let old = 800; // 200 behind the peer's newest: presumed held
    assert_eq!(ask(old, SEED_AFTER_TRIES - 1, &ns), Some(peer));
    assert_eq!(ask(old, SEED_AFTER_TRIES, &ns), Some(seed));
    assert_eq!(ask(old, SEED_AFTER_TRIES + 1, &ns), Some(peer));
    assert_eq!(ask(old, 2 * SEED_AFTER_TRIES - 1, &ns), Some(peer));
    assert_eq!(ask(old, 2 * SEED_AFTER_TRIES, &ns), Some(seed));
    assert_eq!(ask(old, 4 * SEED_AFTER_TRIES, &ns), Some(seed));
    assert_eq!(ask(old, 4 * SEED_AFTER_TRIES + 2, &ns), Some(peer));
    // A peer whose bitmap shows it: peers only.
    if let Some(n) = ns.get_mut(&peer) {
        n.have = Some(HaveSummary {
            first: 0,
            highest: 850,
            recent: 1 << 50,
        });
    }
    assert_eq!(ask(old, SEED_AFTER_TRIES, &ns), Some(peer));
}

#[test]
fn a_peer_serves_what_its_pushes_leave_of_its_upload_and_at_least_half() {
    let mut budget = RepairBudget {
        new_chunks: 10,
        ..RepairBudget::default()
    };
    // 2 copies of upload, feeding 4 subscriptions of 4 stripes (1 copy): 1 copy left.
    budget.refill(Role::Peer, 2.0, 4, 4);
    assert_eq!(budget.credit, 10.0 * 1.0 + 2.0);
    assert_eq!(budget.new_chunks, 0, "the rate is counted afresh each tick");
    let served = std::iter::repeat_with(|| budget.spend(false))
        .take(100)
        .filter(|s| *s)
        .count();
    assert_eq!(served, 12);
    // Feeding 8 subscriptions (2 copies): the floor of half the upload still holds.
    let mut full = RepairBudget {
        new_chunks: 10,
        ..RepairBudget::default()
    };
    full.refill(Role::Peer, 2.0, 8, 4);
    assert_eq!(full.credit, 10.0 * 1.0 + 2.0);
}

#[test]
fn unused_budget_keeps_only_a_little_while() {
    let mut budget = RepairBudget::default();
    for _ in 0..10 {
        budget.new_chunks = 10;
        budget.refill(Role::Peer, 2.0, 0, 4);
    }
    assert_eq!(budget.credit, 4.0 * (10.0 * 2.0 + 2.0));
}

#[test]
fn a_child_may_overdraw_and_the_seed_owes_unpushed_chunks_first() {
    let mut budget = RepairBudget::default();
    assert!(!budget.spend(false), "an empty budget serves no stranger");
    let overdraft = (0..100).filter(|_| budget.spend(true)).count();
    assert_eq!(overdraft as f64, CHILD_OVERDRAFT);
    // The seed's share is a quarter of its upload.
    let mut seed = RepairBudget {
        new_chunks: 100,
        ..RepairBudget::default()
    };
    seed.refill(Role::Seed, 2.0, 0, 4);
    assert_eq!(seed.credit, 100.0 * 2.0 * REPAIR_SHARE_SEED + 2.0);
    seed.credit = 0.0;
    seed.owe_unpushed();
    seed.owe_unpushed();
    assert!(seed.spend(false) && seed.spend(false) && !seed.spend(false));
}

/// A Reject brings forward the next try of what we asked of its sender, and of nothing
/// else: a neighbour cannot move the asks we sent to others.
#[test]
fn a_reject_retries_at_once_only_what_was_asked_of_its_sender() {
    let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], 9100 + i));
    let (asked, other) = (addr(1), addr(2));
    let mut repair = Repair::default();
    let mut timers = Timers::default();
    let now = Micros(1_000_000);
    let later = now + 300_000;
    for seq in [5, 6, 7] {
        repair.missing.note(Seq(seq), now, Arrival::Lost);
    }
    let to = |to| Some(Asked { to, at: now });
    repair.missing.tried(Seq(5), later, to(asked));
    repair.missing.tried(Seq(6), later, to(other));
    repair.missing.tried(Seq(7), later, to(asked));
    let next = |r: &Repair, seq| r.missing.get(Seq(seq)).map(|m| m.next_try);
    let at = now + 1_000;
    repair.on_reject(at, asked, &[5, 6, 99], &mut timers);
    assert_eq!(next(&repair, 5), Some(at), "asked of it: tried again now");
    assert_eq!(next(&repair, 6), Some(later), "asked of another: untouched");
    assert_eq!(
        next(&repair, 7),
        Some(later),
        "not in the Reject: untouched"
    );
    assert_eq!(timers.get(Timer::Repair), Some(at));
    // Someone else rejecting seq 7 moves nothing.
    repair.on_reject(at, other, &[7], &mut timers);
    assert_eq!(next(&repair, 7), Some(later));
}

/// The Requests in `out`, by whom they go to.
fn requests(out: &mut Outbox) -> BTreeMap<SocketAddr, Vec<u64>> {
    std::iter::from_fn(|| out.pop_transmit())
        .filter_map(|t| match t.message {
            Message::Request { seqs } => Some((t.to, seqs)),
            _ => None,
        })
        .collect()
}

/// When a seed dies, every peer's Have presumes the chunks of its stripes held (they are
/// older than the bitmaps) though nobody has them. A Reject for such a chunk corrects the
/// presumption and counts nothing against its sender; one for a chunk its bitmap showed
/// counts once, as a silence does. Either way the retry goes to someone else, and only the
/// first Reject of a chunk brings its retry forward.
#[test]
fn a_reject_counts_only_against_a_claim_the_bitmap_made_and_the_retry_goes_elsewhere() {
    let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], 9200 + i));
    let peers = [addr(1), addr(2)];
    let (presumed, shown) = (800, 950);
    let mut ns = Neighbours::default();
    for p in peers {
        let mut n = Neighbour::new(Role::Peer, 5, Some(1), 0);
        // Holds 0..=1000; of the newest 128 seqs the bitmap shows 950 only.
        n.have = Some(HaveSummary {
            first: 0,
            highest: 1000,
            recent: 1 << (1000 - shown),
        });
        ns.insert(p, n);
    }
    let (mut repair, mut timers, mut out) =
        (Repair::default(), Timers::default(), Outbox::default());
    let mut rng = Rng::new(1);
    let now = Micros(1_000_000);
    for seq in [presumed, shown] {
        repair.missing.note(Seq(seq), now, Arrival::Lost);
    }
    timers.set_earlier(Timer::Repair, repair.missing.earliest());
    let mut round = |repair: &mut Repair, ns: &mut Neighbours, at: Micros, timers: &mut Timers| {
        repair.request_due(at, None, |_| None, 4, ns, &mut rng, timers, &mut out);
        let mut asked_of = BTreeMap::new();
        for (to, seqs) in requests(&mut out) {
            for seq in seqs {
                asked_of.insert(seq, to);
            }
        }
        asked_of
    };
    let first = round(&mut repair, &mut ns, now, &mut timers);
    assert_eq!(first.len(), 2, "both asked of a peer: {first:?}");
    let at = now + 1_000;
    for (&seq, &to) in &first {
        repair.on_reject(at, to, &[seq], &mut timers);
    }
    let second = round(&mut repair, &mut ns, at, &mut timers);
    for (&seq, &to) in &first {
        assert_ne!(
            second.get(&seq),
            Some(&to),
            "seq {seq} asked again of its rejecter"
        );
        assert!(second.contains_key(&seq), "seq {seq} retried at once");
    }
    let ignored = |ns: &Neighbours, p| ns.get(&p).map(|n| n.ignored);
    for p in peers {
        let shown_rejected = first.get(&shown) == Some(&p);
        assert_eq!(
            ignored(&ns, p),
            Some(u8::from(shown_rejected)),
            "{p}: {first:?}"
        );
    }
    // Rejected again: retried when the wait runs out, not at once.
    let again = at + 1_000;
    for (&seq, &to) in &second {
        repair.on_reject(again, to, &[seq], &mut timers);
        let next_try = repair.missing.get(Seq(seq)).map(|m| m.next_try);
        assert!(
            next_try.is_some_and(|t| t > again),
            "seq {seq}: {next_try:?}"
        );
    }
}

/// The seed serves a chunk once per [`SEED_SPREAD_US`] to peers outside its root slots: a
/// second stranger asking within that time is left to the first and the tree, while a root
/// child of the chunk's stripe is always served, and a peer serves everyone it can.
#[test]
fn the_seed_serves_a_chunk_to_one_stranger_at_a_time_and_its_root_children_always() {
    use std::sync::Arc;

    use crate::core::history::History;
    use crate::media::chunk::Chunk;
    use crate::media::identity::StreamKey;

    let key = StreamKey::from_seed([3; 32]);
    let mut history = History::new(64);
    let mut payload = vec![0u8; 188];
    payload[0] = 0x47;
    history.insert(Arc::new(Chunk::sign(&key, 8, 1, 0, payload)));
    let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], 9200 + i));
    let mut roots = StripeSet::EMPTY;
    roots.insert(stripe_of(8, 4));
    let served = |role: Role, asks: &[(u16, StripeSet, u64)]| -> (Vec<u16>, u64) {
        let mut repair = Repair::default();
        repair.budget.credit = 100.0;
        let mut out = Outbox::default();
        let mut got = Vec::new();
        for &(who, feeds, at) in asks {
            repair.serve(
                at,
                addr(who),
                vec![8],
                false,
                (feeds, 0),
                50_000,
                &history,
                4,
                role,
                &mut out,
            );
            got.extend(
                std::iter::from_fn(|| out.pop_transmit())
                    .filter_map(|t| matches!(t.message, Message::Chunk(_)).then_some(who)),
            );
        }
        (got, out.stats.counters.repairs_spread)
    };
    let none = StripeSet::EMPTY;
    let t0 = 1_000_000;
    let asks = [
        (1, none, t0),
        (2, none, t0 + 1_000),
        (3, roots, t0 + 2_000),
        (4, none, t0 + SEED_SPREAD_US - 1),
        (5, none, t0 + SEED_SPREAD_US),
    ];
    assert_eq!(
        served(Role::Seed, &asks),
        (vec![1, 3, 5], 2),
        "strangers 2 and 4 asked within the spread of 1's copy"
    );
    assert_eq!(served(Role::Peer, &asks), (vec![1, 2, 3, 4, 5], 0));
}
