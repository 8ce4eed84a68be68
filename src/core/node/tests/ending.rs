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

/// The end record, flooded by the seed to every neighbour, outruns the tree's pushes of the
/// last chunks of its own stripe too: from anyone but that stripe's parent it does not make
/// them look late upstream, and they are waited for, not asked for. Taken for the stripe's
/// newest push, it had them asked for 50–100 ms later: 71 of the 257 requests of a 50-peer
/// bl-sim run without loss.
#[test]
fn the_last_chunks_of_the_end_records_stripe_on_their_way_are_not_asked_for() {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    let key = StreamKey::from_seed([5; 32]);
    let mut net = Net::new(&key, 6);
    let stripes = u64::from(net.nodes[1].1.place.stripes);
    let end = 200;
    assert_eq!(end % stripes, 0, "the end record in stripe 0");
    // From the last chunk of the end record's stripe on, pushes between peers (the tree
    // below the roots) are held back 150 ms, as over far links; the seed's are not.
    let holding = Rc::new(Cell::new(false));
    // (from, to, datagram)
    type Held = Vec<(SocketAddr, SocketAddr, Vec<u8>)>;
    let held: Rc<RefCell<Held>> = Rc::default();
    let asked = Rc::new(Cell::new(0u32));
    let (h, kept, a) = (holding.clone(), held.clone(), asked.clone());
    net.filter = Box::new(move |from, to, bytes| match wire::decode(bytes) {
        Ok(m @ (Message::Chunk(_) | Message::ChunkPrevPushed(_)))
            if h.get() && from != addr(0) && m.chunk().is_some_and(|c| c.seq >= end - stripes) =>
        {
            kept.borrow_mut().push((from, to, bytes.to_vec()));
            false
        }
        Ok(Message::Request { seqs }) if seqs.iter().any(|s| *s >= end - stripes) => {
            a.set(a.get() + 1);
            true
        }
        _ => true,
    });
    net.run_until(T0 + 1_500_000);
    stream(&mut net, &key, 0..end - stripes);
    holding.set(true);
    stream(&mut net, &key, end - stripes..end);
    end_stream(&mut net, &key, end);
    net.run_until(net.now + 150_000);
    holding.set(false);
    let now = net.now;
    let late: Vec<_> = held.borrow_mut().drain(..).collect();
    let below_a_peer = late.iter().filter(|(_, to, _)| *to != addr(0)).count();
    assert!(below_a_peer > 0, "no push between peers was held back");
    for (from, to, bytes) in late {
        if let Some((_, node)) = net.nodes.iter_mut().find(|(a, _)| *a == to) {
            node.handle_datagram(now, from, &bytes);
        }
    }
    net.collect();
    net.run_until(now + 2_000_000);
    assert_eq!(asked.get(), 0, "requests for the last chunks on their way");
    for (addr, played) in &net.played {
        assert_eq!(played, &(0..=end).collect::<Vec<_>>(), "{addr}");
    }
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
