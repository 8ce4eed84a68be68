//! The example of docs/ARCHITECTURE.md ("Driving the core from a test"): a seed and a peer
//! wired together in virtual time through the real encoding, no sockets. The peer plays
//! every chunk the seed read, in order.

use std::net::SocketAddr;

use bl::chunk::{Chunk, FLAG_KEYFRAME};
use bl::core::node::{Config, Event, Node, Output};
use bl::identity::StreamKey;
use bl::wire::{self, Role};

/// Delivers everything `a` (at `a_addr`) wants sent to `b`, runs `a`'s due timers, and notes
/// what `a` played.
fn pump(now: u64, a_addr: SocketAddr, a: &mut Node, b: &mut Node, played: &mut Vec<u64>) {
    loop {
        match a.poll_output() {
            Output::Transmit(t) => {
                let bytes = wire::encode(&t.message).expect("the core sizes what it sends");
                b.handle_datagram(now, a_addr, &bytes);
            }
            Output::Event(Event::Play(chunk)) => played.push(chunk.seq),
            Output::Event(_) => {}
            Output::Timeout(at) if at <= now => a.handle_timeout(now),
            Output::Timeout(_) => return,
        }
    }
}

#[test]
fn a_seed_and_a_peer_in_virtual_time_play_every_chunk() {
    let key = StreamKey::from_seed([7; 32]);
    let t0 = 1_700_000_000_000_000; // µs since the UNIX epoch
    let seed_addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let peer_addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let mut seed = Node::new(Config::new(Role::Seed, key.id()), t0);
    let mut cfg = Config::new(Role::Peer, key.id());
    cfg.bootstrap = vec![seed_addr];
    cfg.tuning.latency_us = 500_000;
    let mut peer = Node::new(cfg, t0);

    let (mut played, mut seed_played) = (Vec::new(), Vec::new());
    let mut now = t0;
    for step in 0..5_000u64 {
        now += 1_000;
        // A chunk every 5 ms for the first two seconds, a keyframe every 50.
        if step % 5 == 0 && step < 2_000 {
            let seq = step / 5;
            let mut payload = vec![seq as u8; 188 * 6];
            for packet in payload.chunks_exact_mut(188) {
                packet[0] = 0x47;
            }
            let flags = if seq % 50 == 0 { FLAG_KEYFRAME } else { 0 };
            seed.handle_chunk(now, Chunk::sign(&key, seq, now, flags, payload));
        }
        if step == 2_000 {
            // The end, as bl-chunk writes it: a signed end record after the last chunk.
            seed.handle_chunk(now, Chunk::end_record(&key, 400, now));
            seed.handle_input_end(now);
        }
        pump(now, seed_addr, &mut seed, &mut peer, &mut seed_played);
        pump(now, peer_addr, &mut peer, &mut seed, &mut played);
    }
    assert!(seed_played.is_empty(), "the seed plays nothing");
    assert_eq!(
        played,
        (0..=400).collect::<Vec<u64>>(),
        "every chunk, then the end"
    );
    assert!(
        peer.is_finished(),
        "the peer finished after the seed's End and its linger"
    );
}
