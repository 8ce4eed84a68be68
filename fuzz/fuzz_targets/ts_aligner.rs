//! Any bytes on bl-chunk's stdin, in any split, with or without a pause after the first
//! part: the aligner yields only whole 188-byte packets that start with the sync byte, and
//! never more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split) * rest.len() / 256;
    let paused = split & 1 == 1;
    let (a, b) = rest.split_at(cut);
    let mut aligner = bl::ts::PacketAligner::new();
    let mut out = 0usize;
    let mut check = |packet: &[u8]| {
        assert_eq!(packet.len(), bl::ts::PACKET_SIZE);
        assert_eq!(packet[0], 0x47);
        out += packet.len();
    };
    for (part, eof) in [(a, false), (b, true)] {
        aligner.push(part);
        while let Some(packet) = aligner.next_packet(eof) {
            check(packet);
        }
        // The input paused (bl-chunk's --idle-flush): a whole last packet may go now.
        if paused && !eof {
            if let Some(packet) = aligner.take_paused() {
                check(packet);
            }
            assert!(!aligner.holds_paused_packet());
        }
    }
    assert!(out <= rest.len());
});
