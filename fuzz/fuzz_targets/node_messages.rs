//! A peer's core fed arbitrary datagrams from a few addresses, interleaved with time steps:
//! it never panics, and its buffers stay within their bounds.
//!
//! Input: a sequence of records `[op, from, len_lo, len_hi, bytes…]`. `op` even: a datagram
//! of `len` bytes from address `from % 4`; odd: `op` × 7 ms pass and timers run. Some records
//! are turned into well-formed messages (a Have, Peers, a chunk of the stream or of an
//! earlier broadcast under its key) so the fuzzer reaches past the decoder.
#![no_main]

use std::net::SocketAddr;

use bl::core::node::{Config, Node, Output};
use bl::wire::{self, Message, Role};
use libfuzzer_sys::fuzz_target;

const T0: u64 = 1_700_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let key = bl::identity::StreamKey::from_seed([9; 32]);
    let addrs: Vec<SocketAddr> = (0..4u16)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 7000 + i)))
        .collect();
    let mut cfg = Config::new(Role::Peer, key.id());
    cfg.bootstrap = vec![addrs[0]];
    let history = cfg.tuning.history;
    let max_neighbours = cfg.tuning.max_neighbours;
    let mut node = Node::new(cfg, T0);
    let mut now = T0;
    let mut rest = data;
    while let [op, from, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let from = addrs[usize::from(*from) % addrs.len()];
        if op % 2 == 1 {
            now += u64::from(*op) * 7_000;
            node.handle_timeout(now);
        } else {
            let datagram = match op % 8 {
                2 if bytes.len() >= 16 => {
                    let n = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
                    wire::encode(&Message::Have {
                        first: n(0),
                        highest: n(8),
                        recent: u128::MAX,
                        children: 1,
                        spare: 255,
                        depth: bytes[0],
                    })
                    .unwrap()
                }
                4 if bytes.len() >= 8 => {
                    let seq = u64::from_le_bytes(bytes[..8].try_into().unwrap()) % 100_000;
                    // Some chunks are of an earlier broadcast under the key (captured up to
                    // two hours back): replays, which the peer must tell from the stream.
                    let back = match bytes.get(8..16) {
                        Some(b) if b[0] % 2 == 1 => {
                            u64::from_le_bytes(b.try_into().unwrap()) % 7_200_000_000
                        }
                        _ => 0,
                    };
                    let mut payload = vec![0u8; 188];
                    payload[0] = 0x47;
                    let flags = u8::from(seq % 50 == 0);
                    let chunk = bl::chunk::Chunk::sign(&key, seq, now - back, flags, payload);
                    wire::encode(&Message::Chunk(chunk.into())).unwrap()
                }
                _ => bytes.to_vec(),
            };
            node.handle_datagram(now, from, &datagram);
        }
        loop {
            match node.poll_output() {
                Output::Transmit(t) => assert!(t.len <= bl::chunk::MAX_DATAGRAM),
                Output::Event(_) => {}
                Output::Timeout(_) => break,
            }
        }
        let b = node.buffered();
        assert!(b.history <= history);
        assert!(b.missing <= 2 * history && b.missing_span <= 2 * history);
        assert!(b.playout <= history);
        assert!(b.neighbours <= max_neighbours);
    }
});
