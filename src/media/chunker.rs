//! Cuts aligned TS packets into signed chunks (the core of bl-chunk, without I/O or clock).
//!
//! A new chunk starts at every keyframe so a viewer can join at a chunk boundary. ffmpeg writes
//! PAT/PMT right before each video keyframe; those table packets are held back and open the
//! keyframe chunk too, so a joiner gets the program tables with its first picture.

use std::collections::VecDeque;

use crate::media::chunk::{Chunk, FLAG_KEYFRAME, MAX_PAYLOAD};
use crate::media::identity::StreamKey;
use crate::media::ts::{PacketHeader, ProgramTables, PACKET_SIZE};

pub struct Chunker {
    key: StreamKey,
    max_payload: usize,
    tables: ProgramTables,
    next_seq: u64,
    current: Vec<u8>,
    current_flags: u8,
    /// Table packets (PAT/PMT/SDT) not yet placed: they go with a keyframe if one follows.
    held_tables: Vec<u8>,
    /// When the oldest packet not yet in an emitted chunk arrived.
    oldest_pending_us: Option<u64>,
    /// When the newest packet arrived: the capture time of the chunk it ends.
    newest_pending_us: u64,
    ready: VecDeque<Chunk>,
    /// The capture time of the last chunk signed: captures never go back, even when the
    /// wall clock is stepped back, so a viewer can tell a chunk of another broadcast under
    /// the same key (captured before its newest chunk, yet numbered after) from ours.
    last_capture_us: u64,
}

impl Chunker {
    /// `max_payload` is rounded down to whole packets and clamped to 1..=6 packets.
    pub fn new(key: StreamKey, max_payload: usize, first_seq: u64) -> Self {
        let max_payload =
            (max_payload / PACKET_SIZE).clamp(1, MAX_PAYLOAD / PACKET_SIZE) * PACKET_SIZE;
        Chunker {
            key,
            max_payload,
            tables: ProgramTables::new(),
            next_seq: first_seq,
            current: Vec::with_capacity(max_payload),
            current_flags: 0,
            held_tables: Vec::new(),
            oldest_pending_us: None,
            newest_pending_us: 0,
            ready: VecDeque::new(),
            last_capture_us: 0,
        }
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// Adds one 188-byte packet read at `now_us` (µs since the UNIX epoch).
    pub fn push_packet(&mut self, packet: &[u8], now_us: u64) {
        let Some(header) = PacketHeader::parse(packet) else {
            return;
        };
        self.tables.observe(packet);
        self.oldest_pending_us.get_or_insert(now_us);
        if self.tables.is_table_pid(header.pid)
            && self.held_tables.len() + 2 * PACKET_SIZE <= self.max_payload
        {
            self.held_tables.extend_from_slice(packet);
            self.newest_pending_us = now_us;
            return;
        }
        if self.tables.is_keyframe(&header) {
            self.emit_current();
            self.current_flags = FLAG_KEYFRAME;
            let held = std::mem::take(&mut self.held_tables);
            self.current.extend_from_slice(&held);
        } else {
            let held = std::mem::take(&mut self.held_tables);
            for table_packet in held.chunks_exact(PACKET_SIZE) {
                self.append(table_packet);
            }
        }
        self.newest_pending_us = now_us;
        self.append(packet);
    }

    fn append(&mut self, packet: &[u8]) {
        if self.current.len() + PACKET_SIZE > self.max_payload {
            self.emit_current();
        }
        self.current.extend_from_slice(packet);
        if self.current.len() + PACKET_SIZE > self.max_payload {
            self.emit_current();
            // The next packet, not this one, opens the following chunk.
        }
    }

    fn emit_current(&mut self) {
        if self.current.is_empty() {
            return;
        }
        let payload = std::mem::replace(&mut self.current, Vec::with_capacity(self.max_payload));
        self.last_capture_us = self.last_capture_us.max(self.newest_pending_us);
        let chunk = Chunk::sign(
            &self.key,
            self.next_seq,
            self.last_capture_us,
            self.current_flags,
            payload,
        );
        self.next_seq += 1;
        self.current_flags = 0;
        self.oldest_pending_us = if self.held_tables.is_empty() {
            None
        } else {
            Some(self.newest_pending_us)
        };
        self.ready.push_back(chunk);
    }

    /// Emits whatever is pending (partial chunk and held tables), e.g. on a timeout or EOF.
    pub fn flush(&mut self) {
        let held = std::mem::take(&mut self.held_tables);
        for table_packet in held.chunks_exact(PACKET_SIZE) {
            self.append(table_packet);
        }
        self.emit_current();
        self.oldest_pending_us = None;
    }

    /// The input ended at `now_us`: whatever is pending goes out, then the signed end record.
    /// Nothing may be pushed after this.
    pub fn finish(&mut self, now_us: u64) {
        self.flush();
        self.end(now_us);
    }

    /// Ends the stream at `now_us` without what is pending (a partial chunk is dropped):
    /// the signed end record is the next chunk.
    pub fn end(&mut self, now_us: u64) {
        self.current.clear();
        self.held_tables.clear();
        self.oldest_pending_us = None;
        self.last_capture_us = self.last_capture_us.max(now_us);
        self.ready.push_back(Chunk::end_record(
            &self.key,
            self.next_seq,
            self.last_capture_us,
        ));
        self.next_seq += 1;
    }

    /// When pending packets will have waited `max_wait_us`: the caller flushes then.
    pub fn flush_deadline(&self, max_wait_us: u64) -> Option<u64> {
        self.oldest_pending_us
            .map(|t| t.saturating_add(max_wait_us))
    }

    /// The next finished chunk.
    pub fn pop(&mut self) -> Option<Chunk> {
        self.ready.pop_front()
    }

    /// The sequence number the next chunk will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, rai: bool) -> Vec<u8> {
        let mut p = vec![0xffu8; PACKET_SIZE];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8;
        p[2] = pid as u8;
        if rai {
            p[3] = 0x30;
            p[4] = 1;
            p[5] = 0x40;
        } else {
            p[3] = 0x10;
        }
        p
    }

    fn drain(c: &mut Chunker) -> Vec<Chunk> {
        std::iter::from_fn(|| c.pop()).collect()
    }

    #[test]
    fn cuts_at_size_and_keyframes_and_keeps_every_byte() {
        let mut c = Chunker::new(StreamKey::from_seed([1; 32]), MAX_PAYLOAD, 0);
        let mut input = Vec::new();
        for i in 0..20 {
            // PAT just before the keyframe at i == 9: it must open the keyframe chunk.
            let p = if i == 8 {
                packet(0, false)
            } else {
                packet(0x100, i == 9)
            };
            input.extend_from_slice(&p);
            c.push_packet(&p, 1000 + i);
        }
        c.flush();
        let chunks = drain(&mut c);
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.payload.clone()).collect();
        assert_eq!(joined, input);
        let seqs: Vec<u64> = chunks.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (0..chunks.len() as u64).collect::<Vec<_>>());
        let key = chunks.iter().find(|c| c.is_keyframe()).unwrap();
        assert_eq!(&key.payload[..PACKET_SIZE], &packet(0, false)[..]);
        assert_eq!(chunks[0].payload.len(), MAX_PAYLOAD);
        assert_eq!(chunks[0].capture_us, 1005);
    }

    /// The wall clock stepped back 10 s mid-stream: captures stay where they were until it
    /// catches up, and the end record is not captured before the last chunk.
    #[test]
    fn captures_never_go_back() {
        let mut c = Chunker::new(StreamKey::from_seed([1; 32]), PACKET_SIZE, 0);
        for now in [50_000_000, 50_001_000, 40_000_000, 40_001_000, 50_002_000] {
            c.push_packet(&packet(0x100, false), now);
        }
        c.end(45_000_000);
        let captures: Vec<u64> = drain(&mut c).iter().map(|c| c.capture_us).collect();
        assert_eq!(
            captures,
            [50_000_000, 50_001_000, 50_001_000, 50_001_000, 50_002_000, 50_002_000]
        );
    }

    #[test]
    fn deadline_follows_oldest_pending_packet() {
        let mut c = Chunker::new(StreamKey::from_seed([1; 32]), MAX_PAYLOAD, 5);
        assert_eq!(c.flush_deadline(20_000), None);
        c.push_packet(&packet(0x100, false), 1_000);
        c.push_packet(&packet(0x100, false), 9_000);
        assert_eq!(c.flush_deadline(20_000), Some(21_000));
        c.flush();
        let chunks = drain(&mut c);
        assert_eq!(
            (chunks.len(), chunks[0].seq, chunks[0].capture_us),
            (1, 5, 9_000)
        );
        assert_eq!(c.flush_deadline(20_000), None);
    }
}
