//! The stream's end: what a peer does once it learns the end from the signed end record.

use super::*;

/// The end record is flooded to every neighbour and can outrun the tree's push of the last
/// chunks: a chunk still on its way is waited for, not asked for again.
#[test]
fn the_last_chunk_pushed_after_the_end_record_is_not_asked_for() {
    let key = StreamKey::from_seed([1; 32]);
    let mut net = Net::new(&key, 1);
    let peer = addr(1);
    let asked = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let counted = asked.clone();
    net.filter = Box::new(move |from, to, bytes| match wire::decode(bytes) {
        // The seed's push of chunk 199 is "still on its way" (delivered by hand below).
        Ok(Message::Chunk(c) | Message::ChunkPrevPushed(c)) => !(to == peer && c.seq == 199),
        Ok(Message::Request { seqs }) if from == peer && seqs.contains(&199) => {
            counted.set(counted.get() + 1);
            true
        }
        _ => true,
    });
    net.run_until(T0 + 300_000);
    stream(&mut net, &key, 0..200);
    end_stream(&mut net, &key, 200);
    let now = net.now;
    net.run_until(now + 100_000);
    let now = net.now;
    let late = Message::Chunk(chunk(&key, 199, now - 100_000).into());
    let bytes = wire::encode(&late).unwrap();
    net.nodes[1].1.handle_datagram(now, addr(0), &bytes);
    net.collect();
    net.run_until(now + 2_000_000);
    assert_eq!(asked.get(), 0, "requests for a chunk on its way");
    assert_eq!(net.played[&peer], (0..=200).collect::<Vec<_>>());
}

/// The end record is flooded to every neighbour, so it comes from neighbours that do not
/// feed us its stripe: that is no stray feed, and none is told to stop. Taken for one, it
/// sent an Unsubscribe to every neighbour at the end of every run (loopback, 50 peers: 20–40
/// from each peer, all for the end record's stripe, in the stream's last second).
#[test]
fn the_flooded_end_record_stops_no_feed() {
    let key = StreamKey::from_seed([2; 32]);
    let mut net = Net::new(&key, 6);
    let unsubscribes = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let counted = unsubscribes.clone();
    net.filter = Box::new(move |_, _, bytes| {
        if matches!(wire::decode(bytes), Ok(Message::Unsubscribe { .. })) {
            counted.set(counted.get() + 1);
        }
        true
    });
    net.run_until(T0 + 1_500_000);
    stream(&mut net, &key, 0..200);
    let strays = |net: &Net| -> u64 {
        let nodes = net.nodes.iter().map(|(_, node)| node.stats().counters);
        nodes.map(|c| c.stray_feeds_stopped).sum()
    };
    let (strays_before, unsubscribes_before) = (strays(&net), unsubscribes.get());
    end_stream(&mut net, &key, 200);
    let now = net.now;
    net.run_until(now + 2_000_000);
    assert_eq!(
        strays(&net) - strays_before,
        0,
        "stray feeds stopped at the end"
    );
    // Each peer leaves its four parents when the stream is over, and that is all.
    assert!(unsubscribes.get() - unsubscribes_before <= 6 * 4);
    for p in 1..=6u16 {
        assert_eq!(
            net.played[&addr(p)].last(),
            Some(&200),
            "peer {p} played the end"
        );
    }
}
