//! Every decoder of outside bytes, fed arbitrary input: no panic, bounded output and memory.

use bl::chunk::{Chunk, MAX_ENCODED_CHUNK};
use bl::frame;
use bl::ts::{PacketAligner, PacketHeader, ProgramTables, PACKET_SIZE};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn ts_header_and_tables_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = PacketHeader::parse(&bytes);
        let _ = bl::ts::payload(&bytes);
        let mut tables = ProgramTables::new();
        for p in bytes.chunks(PACKET_SIZE) {
            tables.observe(p);
        }
    }

    #[test]
    fn aligner_emits_only_whole_packets_from_its_input(
        bytes in proptest::collection::vec(prop_oneof![Just(0x47u8), any::<u8>()], 0..3000),
        split in 1usize..500,
    ) {
        let mut aligner = PacketAligner::new();
        let mut out = 0usize;
        for piece in bytes.chunks(split) {
            aligner.push(piece);
            while let Some(p) = aligner.next_packet(false) {
                prop_assert_eq!(p.len(), PACKET_SIZE);
                prop_assert_eq!(p[0], 0x47);
                out += p.len();
            }
        }
        while let Some(p) = aligner.next_packet(true) {
            prop_assert_eq!(p.len(), PACKET_SIZE);
            out += p.len();
        }
        // Every input byte is either emitted or counted as skipped.
        prop_assert_eq!(out as u64 + aligner.skipped_bytes(), bytes.len() as u64);
    }

    #[test]
    fn chunk_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        if let Ok(chunk) = Chunk::decode(&bytes) {
            prop_assert!(chunk.payload.len() <= MAX_ENCODED_CHUNK);
        }
    }

    #[test]
    fn frame_reader_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..3000), valid_header in any::<bool>()) {
        let mut bytes = Vec::new();
        if valid_header {
            frame::write_header(&mut bytes, &bl::identity::StreamKey::from_seed([5; 32]).id()).unwrap();
        }
        bytes.extend(tail);
        let _ = frame::read_all(&bytes);
    }

    #[test]
    fn length_prefixes_near_the_limit_are_bounded(len in any::<u32>(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = Vec::new();
        frame::write_header(&mut bytes, &bl::identity::StreamKey::from_seed([5; 32]).id()).unwrap();
        bytes.extend(len.to_le_bytes());
        bytes.extend(body);
        // Must not try to allocate `len` bytes: an error or a short read, quickly.
        let _ = frame::read_all(&bytes);
    }
}
