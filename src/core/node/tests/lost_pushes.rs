//! A push lost on the link to a child, and how soon the child asks for it.

use std::cell::Cell;
use std::rc::Rc;

use super::*;

/// The seed holds chunk 82 when it pushes 86, the next chunk of its stripe, so 86 goes as a
/// ChunkPrevPushed; the peer that lost 82 on its link asks for it the moment 86 comes, not
/// `LATE_UPSTREAM_WAIT_US` (100 ms) later, and the seed answers at once: a request for a chunk
/// pushed in order crossed no push.
#[test]
fn a_push_lost_on_the_link_is_asked_for_when_the_next_one_says_the_parent_held_it() {
    let key = StreamKey::from_seed([4; 32]);
    let mut net = Net::new(&key, 1);
    let peer = addr(1);
    let stripes = u64::from(net.nodes[1].1.place.stripes);
    // Past the peer's first 300 ms of chunks: a peer that joined before the stream began asks
    // for no gap until then (Node::start_early), which a lost chunk 42 fell in.
    let (lost, next) = (82, 82 + stripes);
    // The clock as the filter sees it (one 1 ms step behind at most), when the push of
    // `next` left the seed, when the peer asked for `lost`, and how `next` went.
    let clock = Rc::new(Cell::new(0u64));
    let (next_sent, asked, next_prev_pushed) = (
        Rc::new(Cell::new(None::<u64>)),
        Rc::new(Cell::new(None::<u64>)),
        Rc::new(Cell::new(false)),
    );
    let (c, n, a, p) = (
        clock.clone(),
        next_sent.clone(),
        asked.clone(),
        next_prev_pushed.clone(),
    );
    let dropped = Cell::new(false);
    net.filter = Box::new(move |from, to, bytes| match wire::decode(bytes) {
        Ok(m @ (Message::Chunk(_) | Message::ChunkPrevPushed(_))) if to == peer => {
            let seq = m.chunk().map_or(0, |c| c.seq);
            if seq == next && n.get().is_none() {
                n.set(Some(c.get()));
                p.set(matches!(m, Message::ChunkPrevPushed(_)));
            }
            // The first copy of `lost` is lost.
            seq != lost || dropped.replace(true)
        }
        Ok(Message::Request { seqs }) if from == peer && seqs.contains(&lost) => {
            if a.get().is_none() {
                a.set(Some(c.get()));
            }
            true
        }
        _ => true,
    });
    net.run_until(T0 + 300_000);
    for seq in 0..100 {
        let now = net.now;
        net.seed().handle_chunk(now, chunk(&key, seq, now));
        net.collect();
        for _ in 0..5 {
            clock.set(net.now);
            net.run_until(net.now + 1_000);
        }
    }
    net.run_until(net.now + 1_000_000);
    assert!(
        next_prev_pushed.get(),
        "the seed held {lost} when it pushed {next}"
    );
    let (Some(sent), Some(asked)) = (next_sent.get(), asked.get()) else {
        panic!(
            "{next} sent at {:?}, {lost} asked at {:?}",
            next_sent.get(),
            asked.get()
        );
    };
    // `next` reaches the peer 1 ms after it left, and the peer asks in that same step.
    assert!(
        asked <= sent + 2_000,
        "asked {} µs after {next} left the seed",
        asked - sent
    );
    assert_eq!(net.played[&peer], (0..100).collect::<Vec<_>>());
    let seed = net.nodes[0].1.stats();
    assert_eq!(
        seed.counters.repairs_crossed, 0,
        "the ask was refused as crossed"
    );
    assert_eq!(seed.counters.repairs_served, 1);
    let peer_stats = net.nodes[1].1.stats();
    assert_eq!(peer_stats.counters.chunks_duplicate, 0);
}
