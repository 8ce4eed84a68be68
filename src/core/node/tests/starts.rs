//! Where a peer starts playing: at the stream's first chunk when it joined before the
//! stream, at a keyframe when it joins one that flows.

use super::*;
use crate::core::config::CATCH_UP_MAX_CHUNKS;

#[test]
fn a_joiner_awaiting_a_keyframe_whose_push_is_lost_fetches_it_and_plays() {
    let key = StreamKey::from_seed([23; 32]);
    let mut net = Net::new(&key, 2);
    let joiner = addr(3);
    // Every keyframe's first copy to the joiner is lost: it must ask for one.
    let lost = std::rc::Rc::new(std::cell::RefCell::new(std::collections::BTreeSet::new()));
    net.filter = Box::new(move |_, to, bytes| match wire::decode(bytes) {
        Ok(Message::Chunk(c) | Message::ChunkPrevPushed(c)) if to == joiner && c.is_keyframe() => {
            !lost.borrow_mut().insert(c.seq)
        }
        _ => true,
    });
    // A keyframe every 200 chunks (1 s): joining 100 chunks after one, the joiner waits for
    // the next rather than fetching the backlog.
    net.run_until(T0 + 300_000);
    gop_stream(&mut net, &key, 0..100);
    join_peer(&mut net, &key, joiner);
    gop_stream(&mut net, &key, 100..1200);
    end_stream(&mut net, &key, 1200);
    let now = net.now;
    net.run_until(now + 3_000_000);
    let played = net.played.get(&joiner).cloned().unwrap_or_default();
    let first = *played.first().expect("the joiner never started playing");
    assert_eq!(first % 200, 0, "started at {first}, not at a keyframe");
    assert!(first <= 1000, "started only at {first}");
    assert_eq!(
        played,
        (first..=1200).collect::<Vec<_>>(),
        "the end record plays last"
    );
}

/// Peers that joined before the stream play its first chunk, seq 0, as soon as it arrives:
/// the start is certain, no wait to learn it (it was 300 ms, and the first 1.5 % of chunks
/// played that late). A seq 0 captured long ago (replayed from an earlier broadcast under
/// the same key) does not start anyone.
#[test]
fn joiners_before_the_stream_play_its_first_chunk_at_once() {
    let key = StreamKey::from_seed([7; 32]);
    let mut net = Net::new(&key, 3);
    net.run_until(T0 + 2_000_000);
    stream(&mut net, &key, 0..200);
    net.run_until(net.now + 500_000);
    for (addr, node) in net.nodes.iter().skip(1) {
        let latency = &node.stats().latency_us;
        assert_eq!(latency.count(), 200, "{addr} played every chunk");
        assert!(
            latency.max() < 50_000,
            "{addr}: a chunk played {} ms after its capture",
            latency.max() / 1000
        );
    }

    let mut net = Net::new(&key, 1);
    net.run_until(T0 + 2_000_000);
    let old = Chunk::sign(
        &key,
        0,
        T0 - 60_000_000,
        FLAG_KEYFRAME,
        chunk(&key, 0, T0).payload,
    );
    let now = net.now;
    net.nodes[1].1.handle_datagram(
        now,
        addr(0),
        &wire::encode(&Message::Chunk(old.into())).unwrap(),
    );
    assert_eq!(
        net.nodes[1].1.playout.start,
        crate::core::playout::Start::Unknown,
        "an old seq 0 sets no start"
    );
}

/// A peer that joined before the stream, when the stream's first chunk is lost on its way to
/// it and to everyone around (their oldest chunk is seq 1): it starts at seq 0 all the same,
/// fetched as any gap, not at seq 1, mid-GOP.
#[test]
fn a_joiner_before_the_stream_starts_at_its_first_chunk_when_no_one_around_got_it() {
    let key = StreamKey::from_seed([25; 32]);
    let mut peer = Node::new(Config::new(Role::Peer, key.id()), T0);
    peer.set_local_addr(addr(3));
    peer.playout.joined_before_stream = true;
    let began = T0 + 2_000_000;
    for seq in 1..=20 {
        let at = began + seq * 5_000;
        peer.on_chunk(at, Source::Input, chunk(&key, seq, at).into(), false);
    }
    assert_eq!(peer.playout.play_from(), None, "no start before the wait");
    peer.start_early(began + 400_000);
    assert_eq!(peer.playout.play_from(), Some(Seq(0)));
    assert!(
        peer.repair.missing.contains(Seq(0)),
        "seq 0 is fetched as a gap"
    );
}

/// The seed tells a peer the stream has not begun; the peer gets its first chunks, but not
/// seq 0 (the push went to a parent that had let it go); before it has waited the early
/// start's time, a member's Welcome names the stream's first keyframe with more than a
/// catch-up's chunks after it. The peer still starts at the stream's first chunk: taken, the
/// Welcome sent it to the next keyframe, a GOP lost (bl-sim, 50 peers, the stream after the
/// last join: 18 of 200 seeds). A peer the seed told nothing takes the Welcome's position.
#[test]
fn a_welcome_does_not_send_a_peer_that_waited_for_the_stream_to_its_next_keyframe() {
    for told_by_seed in [true, false] {
        let key = StreamKey::from_seed([12; 32]);
        let mut net = Net::new(&key, 0);
        let (first, second, me) = (addr(9), addr(8), addr(3));
        let mut cfg = Config::new(Role::Peer, key.id());
        cfg.bootstrap = vec![first, second];
        cfg.rng_seed = 12;
        cfg.tuning.latency_us = 500_000;
        let mut joiner = Node::new(cfg, T0);
        joiner.set_local_addr(me);
        let (hellos, _) = drain(&mut joiner);
        let nonce = |to: SocketAddr| {
            hellos
                .iter()
                .find_map(|t| match &t.message {
                    Message::Hello(h) if t.to == to => Some(h.nonce),
                    _ => None,
                })
                .expect("a Hello to each bootstrap address")
        };
        let welcome = |to, role, position: Option<(u64, u64)>| {
            let welcome = Message::Welcome(Box::new(wire::Welcome {
                nonce: nonce(to),
                token: 1,
                role,
                index: if role == Role::Seed { 0 } else { 6 },
                member: (role == Role::Peer).then_some(1),
                stripes: 4,
                assigned: (role == Role::Seed).then_some((5, 1)),
                latest_keyframe: position.map(|p| p.0),
                latest_seq: position.map(|p| p.1),
                observed: me,
            }));
            wire::encode(&welcome).unwrap()
        };
        net.nodes.push((me, joiner));
        net.run_until(T0 + 100_000);
        let now = net.now;
        let role = if told_by_seed { Role::Seed } else { Role::Peer };
        net.nodes[1]
            .1
            .handle_datagram(now, first, &welcome(first, role, None));
        net.run_until(T0 + 1_000_000);
        let send = |net: &mut Net, seq: u64| {
            let now = net.now;
            let bytes = wire::encode(&Message::Chunk(chunk(&key, seq, now).into())).unwrap();
            net.nodes[1].1.handle_datagram(now, first, &bytes);
            net.run_until(now + 2_000);
        };
        for seq in 1..=70 {
            send(&mut net, seq);
        }
        let now = net.now;
        let told = CATCH_UP_MAX_CHUNKS + 6;
        let late = welcome(second, Role::Peer, Some((0, told)));
        net.nodes[1].1.handle_datagram(now, second, &late);
        send(&mut net, 0);
        for seq in 71..200 {
            send(&mut net, seq);
        }
        let start = if told_by_seed { 0 } else { 100 };
        assert_eq!(
            net.played[&me].first(),
            Some(&start),
            "told by the seed the stream had not begun: {told_by_seed}"
        );
    }
}
