//! Chunks of an earlier broadcast under the same key, replayed to a peer before the genuine
//! stream reaches it: genuinely signed, so only capture times tell them apart. None may
//! play, and the genuine chunks at their seqs must not look forged.

use super::*;

/// Replays, to peer 1 as if from peer 2, chunks `seqs` of a broadcast captured an hour
/// before `net.now`.
fn replay(net: &mut Net, key: &StreamKey, seqs: std::ops::Range<u64>) {
    let now = net.now;
    let hour_ago = now - 3_600_000_000;
    for seq in seqs {
        let old = chunk(key, seq, hour_ago);
        let bytes = wire::encode(&Message::Chunk(old.into())).unwrap();
        net.nodes[1].1.handle_datagram(now, addr(2), &bytes);
    }
    net.collect();
}

/// Peer 1 played the genuine chunks `expected`, nothing of the replay, and banned nobody.
fn assert_only_the_genuine_stream_played(net: &Net, expected: std::ops::Range<u64>) {
    let peer = &net.nodes[1].1;
    assert_eq!(net.played[&addr(1)], expected.collect::<Vec<_>>());
    let replayed = net.played_captures[&addr(1)]
        .iter()
        .filter(|&&c| c < T0)
        .count();
    assert_eq!(replayed, 0, "chunks of the earlier broadcast played");
    assert_eq!(
        peer.stats().counters.chunks_forged,
        0,
        "a genuine chunk looked forged"
    );
    assert!(!peer.guard.is_banned(&addr(0)) && !peer.guard.is_banned(&addr(2)));
}

/// Waiting for the stream, a peer is sent the first chunks of an earlier broadcast (seq 0
/// on). Before, it held them, played them, and banned the seed whose genuine chunks at those
/// seqs differed.
#[test]
fn a_replay_of_the_streams_first_chunks_before_it_begins_is_forgotten_when_it_comes() {
    let key = StreamKey::from_seed([12; 32]);
    let mut net = Net::new(&key, 2);
    net.run_until(T0 + 300_000);
    replay(&mut net, &key, 0..20);
    net.run_until(net.now + 100_000);
    stream(&mut net, &key, 0..80);
    net.run_until(net.now + 1_000_000);
    assert_only_the_genuine_stream_played(&net, 0..80);
}

/// Replays numbered past where the stream is, before the peer holds any chunk: before, the
/// peer waited at their seqs and played them once the stream got there.
#[test]
fn a_replay_numbered_ahead_of_the_stream_before_any_chunk_changes_nothing() {
    let key = StreamKey::from_seed([13; 32]);
    let mut net = Net::new(&key, 2);
    net.run_until(T0 + 300_000);
    replay(&mut net, &key, 60..70);
    stream(&mut net, &key, 0..100);
    net.run_until(net.now + 1_000_000);
    assert_only_the_genuine_stream_played(&net, 0..100);
}

/// A replay that fills a gap in a stream already flowing: the chunk held before it was
/// captured long after it, so it is dropped; the gap is repaired with the genuine chunk.
#[test]
fn a_replay_filling_a_gap_is_dropped_and_the_gap_repaired() {
    let key = StreamKey::from_seed([14; 32]);
    let mut net = Net::new(&key, 2);
    let hold = hold_chunk_30_from_peer_1(&mut net);
    net.run_until(T0 + 300_000);
    stream(&mut net, &key, 0..40);
    assert!(!net.nodes[1].1.history.contains(30));
    replay(&mut net, &key, 30..31);
    assert!(
        !net.nodes[1].1.history.contains(30),
        "the replay filled the gap"
    );
    hold.set(false);
    stream(&mut net, &key, 40..80);
    net.run_until(net.now + 1_000_000);
    assert_only_the_genuine_stream_played(&net, 0..80);
}
