//! The node as a whole: two and three cores wired together in virtual time (net.rs).

use super::*;
use crate::core::config::SEED_SPREAD_US;
use crate::media::chunk::FLAG_KEYFRAME;
use crate::media::identity::StreamKey;
use crate::proto::wire::MAX_REQUEST_SEQS;

mod climbing;
mod contacts;
mod ending;
mod holds;
mod liars;
mod lost_pushes;
mod nearness;
mod net;
mod replays;
mod starts;
mod tree;

use net::*;

#[test]
fn a_welcome_naming_seqs_at_the_end_of_u64_does_not_overflow() {
    // A hostile neighbour's Welcome names the keyframe and newest chunk to start from.
    let key = StreamKey::from_seed([3; 32]);
    let mut peer = Node::new(Config::new(Role::Peer, key.id()), T0);
    let (start, last) = peer
        .playout
        .choose_start(Some(Seq(u64::MAX - 2)), Some(Seq(u64::MAX)))
        .unwrap();
    peer.set_play_from(T0, start, last);
    assert_eq!(peer.playout.play_from(), Some(Seq(u64::MAX - 2)));
    assert_eq!(peer.repair.missing.len(), 3);
}

#[test]
fn two_peers_play_every_chunk_in_order() {
    let key = StreamKey::from_seed([1; 32]);
    let mut net = Net::new(&key, 2);
    net.run_until(T0 + 300_000); // handshakes, peer exchange, subscriptions
    stream(&mut net, &key, 0..200);
    end_stream(&mut net, &key, 200);
    let now = net.now;
    net.run_until(now + 5_000_000);
    for i in 1..=2 {
        let played = &net.played[&addr(i)];
        assert_eq!(
            played,
            &(0..=200).collect::<Vec<_>>(),
            "peer {i}: the end record last"
        );
        assert!(
            net.nodes[i as usize].1.is_finished(),
            "peer {i} must finish after the end"
        );
    }
    // Peers forward to each other: the seed did not send every copy.
    let seed_chunks = net.nodes[0].1.stats().sent.get("chunk").datagrams;
    assert!(
        seed_chunks < 2 * 200,
        "seed sent {seed_chunks} chunk datagrams for 2 peers"
    );
}

#[test]
fn a_chunk_playout_gave_up_on_is_no_longer_asked_for() {
    let key = StreamKey::from_seed([1; 32]);
    let mut net = Net::new(&key, 1);
    // Chunk 0 never reaches the peer, however often it asks.
    let peer = addr(1);
    let asked_late = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let (asked, clock) = (
        asked_late.clone(),
        std::rc::Rc::new(std::cell::Cell::new(0)),
    );
    let now_seen = clock.clone();
    net.filter = Box::new(move |from, to, bytes| match wire::decode(bytes) {
        Ok(Message::Chunk(c) | Message::ChunkPrevPushed(c)) => !(to == peer && c.seq == 0),
        Ok(Message::Request { seqs }) if from == peer && seqs.contains(&0) => {
            if now_seen.get() > 0 {
                asked.set(asked.get() + 1);
            }
            true
        }
        _ => true,
    });
    // It joins before the stream begins, so its playout starts at chunk 0.
    net.run_until(T0 + 300_000);
    let history = net.nodes[1].1.cfg.tuning.history as u64;
    stream(&mut net, &key, 0..history + 200);
    // Playout gave up on chunk 0 (latency 0.5 s), started at keyframe 50 and has since
    // moved a whole history past it.
    clock.set(1);
    stream(&mut net, &key, history + 200..history + 300);
    let node = &net.nodes[1].1;
    assert_eq!(net.played[&peer].first(), Some(&50));
    assert!(
        !node.repair.missing.contains(Seq(0)),
        "chunk 0 is still noted missing"
    );
    let span = node.repair.missing.span() as u64;
    assert!(span <= history + 100, "missing set spans {span} seqs");
    assert_eq!(
        asked_late.get(),
        0,
        "requests for chunk 0 after playout passed it"
    );
}

#[test]
fn a_chunk_nobody_holds_any_longer_is_not_asked_for() {
    let key = StreamKey::from_seed([1; 32]);
    let mut net = Net::new(&key, 1);
    // From chunk 200 on nothing reaches the peer: its playout stops at 200 for good
    // while the seed's Haves tell it how far the stream has gone.
    let peer = addr(1);
    let lowest_asked = std::rc::Rc::new(std::cell::Cell::new(u64::MAX));
    let (lowest, counting) = (
        lowest_asked.clone(),
        std::rc::Rc::new(std::cell::Cell::new(false)),
    );
    let count_now = counting.clone();
    net.filter = Box::new(move |from, to, bytes| match wire::decode(bytes) {
        Ok(Message::Chunk(c) | Message::ChunkPrevPushed(c)) => !(to == peer && c.seq >= 200),
        Ok(Message::Request { seqs }) if from == peer && count_now.get() => {
            let least = seqs.iter().copied().min().unwrap_or(u64::MAX);
            lowest.set(lowest.get().min(least));
            true
        }
        _ => true,
    });
    net.run_until(T0 + 300_000);
    let history = net.nodes[1].1.cfg.tuning.history as u64;
    stream(&mut net, &key, 0..200 + history + 500);
    assert!(
        !net.nodes[1].1.repair.missing.is_empty(),
        "the peer must be missing chunks"
    );
    // Every seed and peer has by now forgotten chunk 200 and the next 500.
    counting.set(true);
    stream(&mut net, &key, 200 + history + 500..200 + history + 800);
    let node = &net.nodes[1].1;
    assert_eq!(net.played[&peer].last(), Some(&199));
    assert!(
        !node.repair.missing.contains(Seq(200)),
        "chunk 200 is still noted missing"
    );
    let span = node.repair.missing.span() as u64;
    assert!(span <= history, "missing set spans {span} seqs");
    assert!(
        lowest_asked.get() < u64::MAX,
        "the peer must still ask for what it lacks"
    );
    // Seqs from 701 on are still held; the peer learns the newest seq from Haves sent
    // every few hundred ms (tens of chunks here), so it may ask a little below that.
    assert!(
        lowest_asked.get() > 600,
        "asked for chunk {} after every history had dropped it",
        lowest_asked.get()
    );
}

#[test]
fn lost_datagrams_are_repaired_by_pull() {
    let key = StreamKey::from_seed([1; 32]);
    let mut net = Net::new(&key, 3);
    // Lose every 7th chunk datagram on every link; Requests recover them.
    let counter = std::cell::Cell::new(0u32);
    net.filter = Box::new(move |_, _, bytes| {
        if matches!(
            wire::decode(bytes),
            Ok(Message::Chunk(_) | Message::ChunkPrevPushed(_))
        ) {
            counter.set(counter.get() + 1);
            return counter.get() % 7 != 0;
        }
        true
    });
    net.run_until(T0 + 300_000);
    stream(&mut net, &key, 0..300);
    net.run_until(net.now + 2_000_000);
    for i in 1..=3u16 {
        let played = &net.played[&addr(i)];
        assert_eq!(
            played,
            &(0..300).collect::<Vec<_>>(),
            "peer {i} must play all despite loss"
        );
        let stats = net.nodes[i as usize].1.stats();
        assert_eq!(stats.counters.chunks_skipped, 0);
    }
}

#[test]
fn a_child_asking_again_for_a_lost_push_is_served_when_catch_ups_spent_the_budget() {
    let key = StreamKey::from_seed([1; 32]);
    let mut net = Net::new(&key, 2);
    net.run_until(T0 + 300_000);
    stream(&mut net, &key, 0..200);
    let seed_addr = addr(0);
    let child_of_seed = |net: &Net, peer: usize, stripe: usize| {
        net.nodes[peer].1.parents()[stripe] == Some(seed_addr)
    };
    // A stripe in which peer 1 is the seed's child and peer 2 is not.
    let stripe = (0..4)
        .find(|&s| child_of_seed(&net, 1, s) && !child_of_seed(&net, 2, s))
        .expect("the seed splits its slots between the two peers") as u64;
    let in_stripe = |from: u64| (from..200).filter(|q| q % 4 == stripe);
    // Peer 2 asks the seed for a catch-up in that stripe, again and again (each time after
    // the seed's spread of its last copies, which would otherwise leave it to the tree).
    let mut now = net.now;
    for _ in 0..4 {
        let catch_up = wire::encode(&Message::Request {
            seqs: in_stripe(100).take(MAX_REQUEST_SEQS).collect(),
        })
        .unwrap();
        net.seed().handle_datagram(now, addr(2), &catch_up);
        now += SEED_SPREAD_US;
    }
    let spent = net.seed().stats().counters;
    assert!(spent.repairs_refused > 0, "the budget is spent");
    // Peer 1 lost its push of a recent chunk of the stripe (asking after later pushes came,
    // as a child does: a request within an RTT of the push crossed it and is not answered):
    // the seed sends it again.
    let lost = in_stripe(170).next().unwrap();
    let again = wire::encode(&Message::Request { seqs: vec![lost] }).unwrap();
    net.seed().handle_datagram(now, addr(1), &again);
    let after = net.seed().stats().counters;
    assert_eq!(
        (after.repairs_served, after.repairs_refused),
        (spent.repairs_served + 1, spent.repairs_refused)
    );
    // ... while peer 2's next catch-up request is still refused.
    let one = wire::encode(&Message::Request { seqs: vec![lost] }).unwrap();
    net.seed().handle_datagram(now, addr(2), &one);
    let last = net.seed().stats().counters;
    assert_eq!(
        (last.repairs_served, last.repairs_refused),
        (after.repairs_served, after.repairs_refused + 1)
    );
}

#[test]
fn chunks_the_seed_pushed_to_nobody_reach_early_joiners_beyond_its_repair_budget() {
    let key = StreamKey::from_seed([1; 32]);
    let mut net = Net::new(&key, 3);
    // The seed reads a burst of 50 chunks before the joiners' Hellos arrive (an
    // encoder's first GOP): it has no children for them, so the joiners fetch all 50
    // by request before its repair budget has refilled.
    let now = net.now;
    for seq in 0..50 {
        net.seed().handle_chunk(now, chunk(&key, seq, now));
    }
    net.run_until(now + 20_000);
    // Then a slow stream (one chunk per 20 ms): its refills are small.
    for seq in 50..100 {
        let now = net.now;
        net.seed().handle_chunk(now, chunk(&key, seq, now));
        net.collect();
        net.run_until(now + 20_000);
    }
    net.run_until(net.now + 2_000_000);
    for i in 1..=3u16 {
        let played = &net.played[&addr(i)];
        assert_eq!(
            played.first(),
            Some(&0),
            "peer {i} starts at the first keyframe"
        );
        let stats = net.nodes[i as usize].1.stats();
        assert_eq!(stats.counters.chunks_skipped, 0, "peer {i}");
    }
}

#[test]
fn forged_chunk_gets_the_sender_banned_and_is_not_played() {
    let key = StreamKey::from_seed([1; 32]);
    let forger = StreamKey::from_seed([2; 32]);
    let mut net = Net::new(&key, 2);
    net.run_until(T0 + 300_000);
    stream(&mut net, &key, 0..20);
    // Peer 2 turns rogue: it sends peer 1 a chunk signed by another key.
    let bad = wire::encode(&Message::Chunk(chunk(&forger, 20, net.now).into())).unwrap();
    let now = net.now;
    net.nodes[1].1.handle_datagram(now, addr(2), &bad);
    let stats = net.nodes[1].1.stats();
    assert_eq!(
        (stats.counters.chunks_forged, stats.counters.peers_banned),
        (1, 1)
    );
    stream(&mut net, &key, 20..40);
    net.run_until(net.now + 1_000_000);
    let played = &net.played[&addr(1)];
    assert_eq!(
        played,
        &(0..40).collect::<Vec<_>>(),
        "the genuine seq 20 plays, the forged one never"
    );
    // Everything the rogue sends later is dropped.
    let before = net.nodes[1].1.stats().counters.datagrams_dropped;
    net.nodes[1].1.handle_datagram(net.now, addr(2), &bad);
    assert_eq!(
        net.nodes[1].1.stats().counters.datagrams_dropped,
        before + 1
    );
}

#[test]
fn strangers_get_nothing_but_a_welcome_no_larger_than_their_hello() {
    let key = StreamKey::from_seed([1; 32]);
    let mut net = Net::new(&key, 0);
    let stranger = addr(99);
    // Unpadded hello: ignored. Any other message: ignored.
    let small = wire::encode(&Message::Hello(Box::new(wire::Hello {
        stream: key.id(),
        nonce: 1,
        role: Role::Peer,
        index: None,
        member: None,
        padding: vec![],
    })))
    .unwrap();
    let now = net.now;
    net.seed().handle_datagram(now, stranger, &small);
    net.seed().handle_datagram(
        now,
        stranger,
        &wire::encode(&Message::Request {
            seqs: vec![0, 1, 2],
        })
        .unwrap(),
    );
    net.seed().handle_datagram(
        now,
        stranger,
        &wire::encode(&Message::GetPeers { token: 0 }).unwrap(),
    );
    // One byte short of the padding: ignored too.
    let Message::Hello(mut short) = wire::hello(key.id(), 1, Role::Peer, None, None) else {
        unreachable!("wire::hello makes a Hello")
    };
    short.padding.pop();
    let short = wire::encode(&Message::Hello(short)).unwrap();
    assert_eq!(short.len(), wire::HELLO_MIN_SIZE - 1);
    net.seed().handle_datagram(now, stranger, &short);
    assert!(drain(net.seed()).0.is_empty());
    let hello = wire::encode(&wire::hello(key.id(), 1, Role::Peer, None, None)).unwrap();
    net.seed().handle_datagram(now, stranger, &hello);
    let replies = drain(net.seed()).0;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert!(replies[0].len <= hello.len());
    assert_eq!(net.seed().stats().counters.datagrams_dropped, 4);
}

#[test]
fn a_joiner_that_knows_only_a_peer_numbers_itself_after_it_and_plays() {
    let key = StreamKey::from_seed([22; 32]);
    let mut net = Net::new(&key, 2);
    net.run_until(T0 + 300_000);
    stream(&mut net, &key, 0..120);
    // A tracker named peer 1 only: the seed never hears of the joiner.
    let mut cfg = Config::new(Role::Peer, key.id());
    cfg.bootstrap = vec![addr(1)];
    cfg.rng_seed = 9;
    cfg.tuning.latency_us = 500_000;
    let mut joiner = Node::new(cfg, net.now);
    joiner.set_local_addr(addr(3));
    net.nodes.push((addr(3), joiner));
    net.collect();
    stream(&mut net, &key, 120..300);
    end_stream(&mut net, &key, 300);
    let now = net.now;
    net.run_until(now + 5_000_000);
    let joiner = &net.nodes[3].1;
    let older = net.nodes[1].1.index().max(net.nodes[2].1.index());
    assert!(
        joiner.index() > older,
        "joined later, numbered {} after {older}",
        joiner.index()
    );
    assert!(joiner.member().is_some());
    assert!(!net.nodes[0].1.neighbours.contains_key(&addr(3)));
    let played = &net.played[&addr(3)];
    let first = played[0];
    assert!(
        first <= 150,
        "started at {first}: the newest keyframe peer 1 named"
    );
    assert_eq!(played, &(first..=300).collect::<Vec<_>>());
}

#[test]
fn a_lost_confirm_is_sent_again_so_the_link_is_not_half_open() {
    let key = StreamKey::from_seed([23; 32]);
    let mut net = Net::new(&key, 1);
    let lost = std::cell::Cell::new(false);
    net.filter = Box::new(move |from, _, bytes| {
        let confirm = matches!(wire::decode(bytes), Ok(Message::Confirm { .. }));
        if confirm && from == addr(1) && !lost.get() {
            lost.set(true);
            return false;
        }
        true
    });
    net.run_until(T0 + 2_000_000);
    assert!(net.nodes[1].1.neighbours.contains_key(&addr(0)));
    assert!(
        net.nodes[0].1.neighbours.contains_key(&addr(1)),
        "the peer counts the seed as a neighbour, the seed never heard of the peer"
    );
}

#[test]
fn joiners_turned_away_by_a_full_seed_still_get_its_peers() {
    let key = StreamKey::from_seed([21; 32]);
    let mut net = Net::new(&key, 4);
    // A seed with room for one neighbour: the other joiners get its Goodbye, then the
    // answer to their GetPeers.
    let mut cfg = Config::new(Role::Seed, key.id());
    cfg.rng_seed = 1;
    cfg.tuning.max_neighbours = 1;
    let mut seed = Node::new(cfg, T0);
    seed.set_local_addr(addr(0));
    net.nodes[0].1 = seed;
    net.collect();
    net.run_until(T0 + 50_000);
    assert_eq!(net.seed().neighbour_count(), 1);
    for (a, node) in net.nodes.iter().skip(1) {
        assert!(node.neighbour_count() >= 1, "{a} has no neighbour");
        assert_eq!(node.stats().counters.datagrams_dropped, 0, "{a} dropped");
    }
}

#[test]
fn only_the_stream_key_ends_a_stream() {
    let key = StreamKey::from_seed([1; 32]);
    let other = StreamKey::from_seed([2; 32]);
    let mut net = Net::new(&key, 2);
    net.run_until(T0 + 300_000);
    stream(&mut net, &key, 0..40);
    let now = net.now;
    // Peer 2 turns rogue: it sends peer 1 an end record signed by another key. Banned,
    // nothing ends.
    let forged = wire::encode(&Message::Chunk(Chunk::end_record(&other, 40, now).into())).unwrap();
    net.nodes[1].1.handle_datagram(now, addr(2), &forged);
    assert_eq!(net.nodes[1].1.stats().counters.peers_banned, 1);
    stream(&mut net, &key, 40..80);
    net.run_until(net.now + 1_000_000);
    assert!(!net.nodes[1].1.is_finished(), "peer 1 ended early");
    assert!(
        !net.nodes[2].1.is_finished(),
        "the rogue's own stream did not end either"
    );
    assert_eq!(net.played[&addr(1)], (0..80).collect::<Vec<_>>());
    // The genuine end: peer 1 plays to it and finishes well.
    end_stream(&mut net, &key, 80);
    let now = net.now;
    net.run_until(now + 5_000_000);
    assert_eq!(net.finished.get(&addr(1)), Some(&Finish::Done));
    assert_eq!(net.played[&addr(1)].last(), Some(&80));
}

#[test]
fn a_peer_with_nobody_answering_says_so_and_gives_up() {
    let key = StreamKey::from_seed([4; 32]);
    let mut cfg = Config::new(Role::Peer, key.id());
    cfg.bootstrap = vec![addr(9)];
    cfg.tuning.give_up_us = Some(8_000_000);
    let mut peer = Node::new(cfg, T0);
    let mut warnings = Vec::new();
    let mut finish = None;
    let mut now = T0;
    while finish.is_none() && now < T0 + 20_000_000 {
        now += 100_000;
        peer.handle_timeout(now);
        for e in drain(&mut peer).1 {
            match e {
                Event::Warning(w) => warnings.push((now - T0, w)),
                Event::Finished(how) => finish = Some((now - T0, how)),
                _ => {}
            }
        }
    }
    assert!(
        warnings
            .iter()
            .any(|(_, w)| w == "no answer from 127.0.0.1:7009 yet"),
        "{warnings:?}"
    );
    let (at, how) = finish.expect("gave up");
    assert!((8_000_000..9_000_000).contains(&at), "gave up at {at} µs");
    assert_eq!(
        how,
        Finish::GaveUp("no answer from 127.0.0.1:7009 in 8 s".into())
    );
}

#[test]
fn a_link_to_another_stream_is_refused_at_once() {
    let key = StreamKey::from_seed([1; 32]);
    let wrong = StreamKey::from_seed([5; 32]);
    let mut net = Net::new(&key, 0);
    let mut cfg = Config::new(Role::Peer, wrong.id());
    cfg.bootstrap = vec![addr(0)];
    net.nodes.push((addr(1), Node::new(cfg, T0)));
    net.collect();
    net.run_until(T0 + 50_000);
    match net.finished.get(&addr(1)) {
        Some(Finish::GaveUp(why)) => assert!(why.contains("another stream"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The Refuse is smaller than the Hello it answers.
    let refuse = wire::encoded_len(&Message::Refuse {
        nonce: 1,
        stream: key.id(),
    });
    assert!(refuse < wire::HELLO_MIN_SIZE);
}

#[test]
fn an_end_record_replayed_from_an_earlier_broadcast_ends_nothing() {
    use std::cell::Cell;
    use std::rc::Rc;
    let key = StreamKey::from_seed([1; 32]);
    let mut net = Net::new(&key, 2);
    // Chunk 35 never reaches peer 1 while `hold` is set: it stays missing there.
    let hold = Rc::new(Cell::new(true));
    let held = hold.clone();
    net.filter = Box::new(move |_, to, bytes| {
        let is_35 = matches!(wire::decode(bytes), Ok(Message::Chunk(c) | Message::ChunkPrevPushed(c)) if c.seq == 35);
        !(held.get() && to == addr(1) && is_35)
    });
    net.run_until(T0 + 300_000);
    stream(&mut net, &key, 0..40);
    assert!(
        net.nodes[1].1.history.get(35).is_none(),
        "peer 1 lacks chunk 35"
    );
    // An end record of an earlier broadcast under the same key, at seq 35: genuinely signed,
    // but chunks after it exist. Without the check, peer 1 would end its stream at 35.
    let now = net.now;
    let replay = wire::encode(&Message::Chunk(Chunk::end_record(&key, 35, now).into())).unwrap();
    net.nodes[1].1.handle_datagram(now, addr(2), &replay);
    assert_eq!(net.nodes[1].1.playout.lifecycle, Lifecycle::Live);
    hold.set(false);
    stream(&mut net, &key, 40..80);
    net.run_until(net.now + 1_000_000);
    assert!(!net.nodes[1].1.is_finished());
    let played = &net.played[&addr(1)];
    assert_eq!(played.last(), Some(&79), "{played:?}");
}

#[test]
fn a_have_naming_the_end_of_u64_drops_nothing_and_asks_for_little() {
    use std::cell::Cell;
    use std::rc::Rc;
    let key = StreamKey::from_seed([1; 32]);
    let mut net = Net::new(&key, 2);
    // Chunk 30 does not reach peer 1 for now: it is missing there.
    let hold = Rc::new(Cell::new(true));
    let held = hold.clone();
    net.filter = Box::new(move |_, to, bytes| {
        let is_30 = matches!(wire::decode(bytes), Ok(Message::Chunk(c) | Message::ChunkPrevPushed(c)) if c.seq == 30);
        !(held.get() && to == addr(1) && is_30)
    });
    net.run_until(T0 + 300_000);
    stream(&mut net, &key, 0..50);
    net.run_until(net.now + 400_000);
    assert!(net.nodes[1].1.repair.missing.contains(Seq(30)));
    // Peer 2 lies: it holds everything up to the end of u64.
    let lie = wire::encode(&Message::Have {
        first: 0,
        highest: u64::MAX,
        recent: u128::MAX,
        children: 0,
        spare: 255,
        depth: 0,
    })
    .unwrap();
    let now = net.now;
    net.nodes[1].1.handle_datagram(now, addr(2), &lie);
    let node = &net.nodes[1].1;
    assert!(
        node.repair.missing.contains(Seq(30)),
        "the lie cleared the missing set"
    );
    let history = node.cfg.tuning.history;
    assert!(
        node.repair.missing.len() <= history / 4 + 1,
        "{} chunks noted missing on one neighbour's word",
        node.repair.missing.len()
    );
    hold.set(false);
    stream(&mut net, &key, 50..100);
    net.run_until(net.now + 1_000_000);
    assert_eq!(net.played[&addr(1)], (0..100).collect::<Vec<_>>());
}

#[test]
fn peers_lists_nobody_asked_for_are_dropped() {
    let key = StreamKey::from_seed([1; 32]);
    let mut net = Net::new(&key, 2);
    net.run_until(T0 + 3_000_000);
    let nobodies: Vec<wire::PeerInfo> = (0..24)
        .map(|i| wire::PeerInfo {
            addr: SocketAddr::from(([127, 0, 0, 2], 9000 + i)),
            index: 1,
            member: 0,
            lan: None,
        })
        .collect();
    let list = wire::encode(&Message::Peers { peers: nobodies }).unwrap();
    let before = net.nodes[1].1.stats().counters.datagrams_dropped;
    let now = net.now;
    net.nodes[1].1.handle_datagram(now, addr(2), &list);
    assert_eq!(
        net.nodes[1].1.stats().counters.datagrams_dropped,
        before + 1
    );
    assert_eq!(net.nodes[1].1.membership.greetings(), 0, "greeted a nobody");
}

/// A neighbour sends the seed a chunk of an earlier broadcast under the same key, at a seq
/// its input has not reached: the seed keeps its input's chunk at that seq and serves it.
#[test]
fn a_seed_keeps_its_input_over_a_replayed_chunk_ahead_of_it() {
    let key = StreamKey::from_seed([9; 32]);
    let mut net = Net::new(&key, 1);
    net.run_until(T0 + 1_000_000);
    stream(&mut net, &key, 0..10);
    let now = net.now;
    let old = Chunk::sign(&key, 12, T0 - 3_600_000_000, 0, chunk(&key, 12, T0).payload);
    let bytes = wire::encode(&Message::Chunk(old.into())).unwrap();
    net.seed().handle_datagram(now, addr(1), &bytes);
    stream(&mut net, &key, 10..20);
    net.run_until(net.now + 500_000);
    let held = net.seed().history.get(12).map(|c| c.capture_us);
    assert!(
        held.is_some_and(|t| t >= T0),
        "the seed holds its input's chunk 12"
    );
    assert_eq!(net.played[&addr(1)], (0..20).collect::<Vec<_>>());
    assert_eq!(net.nodes[1].1.stats().counters.chunks_forged, 0);
}

/// Mid-stream, a neighbour replays an earlier broadcast under the same key ahead of ours:
/// its end record and a chunk, numbered past the newest we hold but captured an hour
/// before it. Neither ends the stream nor gets the genuine chunk's sender banned.
#[test]
fn chunks_of_an_earlier_broadcast_replayed_ahead_of_ours_change_nothing() {
    let key = StreamKey::from_seed([10; 32]);
    let mut net = Net::new(&key, 2);
    net.run_until(T0 + 300_000);
    stream(&mut net, &key, 0..40);
    let now = net.now;
    let hour_ago = now - 3_600_000_000;
    let old_chunk = Chunk::sign(&key, 45, hour_ago, 0, chunk(&key, 45, hour_ago).payload);
    for replay in [Chunk::end_record(&key, 44, hour_ago), old_chunk] {
        let bytes = wire::encode(&Message::Chunk(replay.into())).unwrap();
        net.nodes[1].1.handle_datagram(now, addr(2), &bytes);
    }
    stream(&mut net, &key, 40..80);
    net.run_until(net.now + 1_000_000);
    let peer = &net.nodes[1].1;
    assert!(
        !peer.is_finished(),
        "the replayed end record ended the stream"
    );
    assert_eq!(
        peer.stats().counters.chunks_forged,
        0,
        "a genuine chunk looked forged"
    );
    assert!(!peer.guard.is_banned(&addr(0)) && !peer.guard.is_banned(&addr(2)));
    assert_eq!(net.played[&addr(1)], (0..80).collect::<Vec<_>>());
}

/// Waiting for the stream to begin, a peer is sent the end record of an earlier broadcast
/// under the same key: it keeps waiting, then plays the stream and ends at its own end.
#[test]
fn an_earlier_broadcasts_end_record_does_not_end_a_peer_waiting_for_the_stream() {
    let key = StreamKey::from_seed([11; 32]);
    let mut net = Net::new(&key, 2);
    net.run_until(T0 + 1_000_000);
    let now = net.now;
    let replay = Chunk::end_record(&key, 500, now - 3_600_000_000);
    let bytes = wire::encode(&Message::Chunk(replay.into())).unwrap();
    net.nodes[1].1.handle_datagram(now, addr(2), &bytes);
    net.run_until(net.now + 500_000);
    assert!(
        !net.nodes[1].1.is_finished(),
        "the replayed end record ended the peer"
    );
    stream(&mut net, &key, 0..60);
    end_stream(&mut net, &key, 60);
    net.run_until(net.now + 3_000_000);
    for i in 1..=2u16 {
        assert_eq!(
            net.played[&addr(i)],
            (0..=60).collect::<Vec<_>>(),
            "peer {i}"
        );
        assert!(
            matches!(net.finished.get(&addr(i)), Some(Finish::Done)),
            "peer {i} ended"
        );
    }
}
