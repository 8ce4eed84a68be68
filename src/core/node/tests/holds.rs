//! Holds (`core::tree::hold`): a joiner's parents push it nothing of the stripes it only
//! plays before the keyframe it waits for.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::core::stripes::stripe_of;

/// Eight peers watch a stream with a keyframe every 200 chunks (1 s); a ninth joins 100
/// chunks after one, so it waits for the next. No peer pushes it a chunk of a stripe it only
/// plays before that keyframe (they were half a GOP of chunks thrown away per join), and it
/// plays every chunk from the keyframe to the end, in order.
#[test]
fn a_joiner_is_pushed_nothing_it_only_plays_before_the_keyframe_it_waits_for() {
    let key = StreamKey::from_seed([29; 32]);
    let mut net = Net::new(&key, 8);
    let joiner = addr(9);
    // Every chunk a peer sent the joiner: (from, seq).
    let received = Rc::new(RefCell::new(Vec::new()));
    let log = received.clone();
    net.filter = Box::new(move |from, to, bytes| {
        if let (true, Ok(Message::Chunk(c) | Message::ChunkPrevPushed(c))) =
            (to == joiner, wire::decode(bytes))
        {
            log.borrow_mut().push((from, c.seq));
        }
        true
    });
    let (played, first) = join_mid_gop(&mut net, &key, joiner);
    assert_eq!(played, (first..=1000).collect::<Vec<_>>());
    let Some((_, node)) = net.nodes.iter().find(|(a, _)| *a == joiner) else {
        panic!("the joiner is gone");
    };
    let member = node.place.member;
    let stripes = node.place.stripes;
    let plays_only = |seq: u64| Some(stripe_of(seq, stripes)) != member;
    let early: Vec<(SocketAddr, u64)> = received
        .borrow()
        .iter()
        .filter(|(from, seq)| *from != addr(0) && *seq < first && plays_only(*seq))
        .copied()
        .collect();
    assert!(early.is_empty(), "pushed before the keyframe: {early:?}");
    // Peers did hold for it: they released it at the keyframe.
    let released: u64 = net
        .nodes
        .iter()
        .map(|(_, n)| n.stats().counters.holds_released)
        .sum();
    assert!(released >= 1, "no peer held for the joiner");
}

/// A Subscribe from a child already fed the stripe (its reply was lost, or it asks again on
/// purpose) settles no hold again: asking to be held until a keyframe long past fetches
/// nothing, however often it asks. Honoured, each such Subscribe fetched the newest keyframe
/// and the stripe's chunks from it.
#[test]
fn asking_again_while_fed_fetches_no_keyframe_and_no_backlog() {
    let key = StreamKey::from_seed([31; 32]);
    let mut net = Net::new(&key, 8);
    net.run_until(T0 + 1_500_000);
    stream(&mut net, &key, 0..120);
    // A peer that feeds another peer a stripe.
    let fed = net
        .nodes
        .iter()
        .enumerate()
        .skip(1)
        .find_map(|(i, (_, n))| {
            n.neighbours
                .iter()
                .find(|(a, c)| **a != addr(0) && !c.children.is_empty())
                .map(|(a, c)| (i, *a, c.children.iter().next()))
        });
    let Some((parent, child, Some(stripe))) = fed else {
        panic!("no peer feeds another");
    };
    let now = net.now;
    let _ = drain(&mut net.nodes[parent].1);
    let again = wire::encode(&Message::Subscribe {
        stripe,
        hold_after: Some(0),
    })
    .unwrap();
    for _ in 0..20 {
        net.nodes[parent].1.handle_datagram(now, child, &again);
    }
    let (sent, _) = drain(&mut net.nodes[parent].1);
    let chunks = sent
        .iter()
        .filter(|t| {
            t.to == child && matches!(t.message, Message::Chunk(_) | Message::ChunkPrevPushed(_))
        })
        .count();
    assert_eq!(chunks, 0, "a repeated Subscribe fetched {chunks} chunks");
    let replies = sent
        .iter()
        .filter(|t| t.to == child && matches!(t.message, Message::SubscribeReply { .. }))
        .count();
    assert_eq!(replies, 20, "each Subscribe is answered");
}

/// The keyframe a joiner waits for starts its playout, and the gap from it on is noted
/// missing before the keyframe is kept: it was noted too, and asked of one neighbour after
/// another, each copy a duplicate, until playout left it a history behind (bl-sim, 50
/// peers, no loss, seed 1: five joiners asked for their keyframe 13-19 times each over
/// 4.5 s, the seed among those asked).
#[test]
fn a_joiner_never_asks_for_the_keyframe_it_started_at() {
    let key = StreamKey::from_seed([31; 32]);
    let mut net = Net::new(&key, 8);
    let joiner = addr(9);
    // Every seq the joiner asked for.
    let asked = Rc::new(RefCell::new(Vec::new()));
    let log = asked.clone();
    net.filter = Box::new(move |from, _, bytes| {
        if let (true, Ok(Message::Request { seqs })) = (from == joiner, wire::decode(bytes)) {
            log.borrow_mut().extend(seqs);
        }
        true
    });
    let (_, first) = join_mid_gop(&mut net, &key, joiner);
    let Some((_, node)) = net.nodes.iter().find(|(a, _)| *a == joiner) else {
        panic!("the joiner is gone");
    };
    let duplicates = node.stats().counters.chunks_duplicate;
    let asked = asked.borrow();
    assert!(
        !asked.contains(&first),
        "asked for keyframe {first}, held since it started playout ({} asks, {duplicates} duplicates)",
        asked.iter().filter(|s| **s == first).count()
    );
}

/// A stream with a keyframe every 200 chunks (1 s); `joiner` joins 100 chunks after the one
/// at 200, so it waits for the next, at 400, and must start there. Returns what it played
/// and where it started.
fn join_mid_gop(net: &mut Net, key: &StreamKey, joiner: SocketAddr) -> (Vec<u64>, u64) {
    net.run_until(T0 + 300_000);
    gop_stream(net, key, 0..300);
    join_peer(net, key, joiner);
    gop_stream(net, key, 300..1000);
    end_stream(net, key, 1000);
    let now = net.now;
    net.run_until(now + 3_000_000);
    let played = net.played.get(&joiner).cloned().unwrap_or_default();
    let first = *played.first().expect("the joiner never started playing");
    assert_eq!(
        first, 400,
        "started at {first}, not at the keyframe after its join"
    );
    (played, first)
}
