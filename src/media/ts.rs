//! MPEG-TS packets: finding and keeping sync, and the header fields bl cares about.
//!
//! bl never rewrites TS packets; it only needs to know where they start, which PID they
//! belong to and whether a packet begins a random-access point (keyframe). Everything here is
//! parsed from untrusted bytes and is total: no input makes it panic.

/// Size of one transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// The sync byte every packet starts with.
pub const SYNC_BYTE: u8 = 0x47;
/// How many packets at 188-byte spacing must start with 0x47 before a sync is trusted after
/// garbage. Three in a row is what demuxers such as ffmpeg's use; a random 0x47 survives
/// that with probability 2^-24.
pub const SYNC_CONFIRM_PACKETS: usize = 3;

/// Header fields of one 188-byte packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    pub transport_error: bool,
    pub payload_unit_start: bool,
    pub pid: u16,
    pub continuity_counter: u8,
    pub has_payload: bool,
    pub random_access: bool,
    /// Program clock reference in 27 MHz ticks, when the adaptation field carries one.
    pub pcr: Option<u64>,
}

impl PacketHeader {
    /// Parses the header of a packet. Returns `None` when `packet` is not 188 bytes or does
    /// not start with the sync byte.
    pub fn parse(packet: &[u8]) -> Option<PacketHeader> {
        if packet.len() != PACKET_SIZE || packet[0] != SYNC_BYTE {
            return None;
        }
        let adaptation_field_control = (packet[3] >> 4) & 0b11;
        let has_adaptation = adaptation_field_control & 0b10 != 0;
        let mut random_access = false;
        let mut pcr = None;
        if has_adaptation {
            let af_len = packet[4] as usize;
            if af_len > 0 && 5 + af_len <= PACKET_SIZE {
                let flags = packet[5];
                random_access = flags & 0x40 != 0;
                if flags & 0x10 != 0 && af_len >= 7 {
                    let b = &packet[6..12];
                    let base = (u64::from(b[0]) << 25)
                        | (u64::from(b[1]) << 17)
                        | (u64::from(b[2]) << 9)
                        | (u64::from(b[3]) << 1)
                        | (u64::from(b[4]) >> 7);
                    let ext = (u64::from(b[4] & 1) << 8) | u64::from(b[5]);
                    pcr = Some(base * 300 + ext);
                }
            }
        }
        Some(PacketHeader {
            transport_error: packet[1] & 0x80 != 0,
            payload_unit_start: packet[1] & 0x40 != 0,
            pid: (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]),
            continuity_counter: packet[3] & 0x0f,
            has_payload: adaptation_field_control & 0b01 != 0,
            random_access,
            pcr,
        })
    }
}

/// The payload of a packet (after header and adaptation field), if any.
pub fn payload(packet: &[u8]) -> Option<&[u8]> {
    let header = PacketHeader::parse(packet)?;
    if !header.has_payload {
        return None;
    }
    let start = if (packet[3] >> 4) & 0b10 != 0 {
        5 + packet[4] as usize
    } else {
        4
    };
    packet.get(start..)
}

/// The presentation time stamp (90 kHz, 33 bits) of the PES that starts in this packet, if
/// it starts one and carries a PTS.
pub fn pes_pts(packet: &[u8]) -> Option<u64> {
    if !PacketHeader::parse(packet)?.payload_unit_start {
        return None;
    }
    let pes = payload(packet)?;
    // Start code 00 00 01, stream id, length (2), flags (2), header length, then the PTS.
    if pes.get(..3)? != [0, 0, 1] || pes.get(7)? & 0x80 == 0 {
        return None;
    }
    let b = pes.get(9..14)?;
    Some(
        (u64::from(b[0] & 0x0e) << 29)
            | (u64::from(b[1]) << 22)
            | (u64::from(b[2] & 0xfe) << 14)
            | (u64::from(b[3]) << 7)
            | (u64::from(b[4]) >> 1),
    )
}

/// Streaming packet aligner: bytes in, whole 188-byte packets out, garbage counted.
///
/// While locked it trusts a packet only when the next packet also starts with 0x47, so a
/// truncated packet followed by a good one is dropped rather than glued to its neighbour;
/// when the input pauses, [`PacketAligner::take_paused`] releases a whole last packet
/// without that check (a truncated one cannot be told from it until more input comes).
/// After losing sync it needs [`SYNC_CONFIRM_PACKETS`] aligned sync bytes to lock again.
#[derive(Debug, Default)]
pub struct PacketAligner {
    buf: Vec<u8>,
    /// Read position in `buf`; bytes before it are consumed (compacted lazily).
    pos: usize,
    locked: bool,
    skipped_bytes: u64,
    /// Garbage bytes dropped since the last call to [`PacketAligner::take_new_skips`].
    new_skips: u64,
    packets: u64,
}

impl PacketAligner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Total garbage bytes skipped so far.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped_bytes
    }

    /// Total packets emitted so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Garbage bytes skipped since the last call, so callers can warn once per run of garbage.
    pub fn take_new_skips(&mut self) -> u64 {
        std::mem::take(&mut self.new_skips)
    }

    /// Appends input bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn skip(&mut self, n: usize) {
        self.pos += n;
        self.skipped_bytes += n as u64;
        self.new_skips += n as u64;
    }

    fn is_sync_at(&self, offset: usize) -> bool {
        self.buf.get(self.pos + offset) == Some(&SYNC_BYTE)
    }

    /// Does a packet start at `offset` (from the read position), confirmed by the sync bytes
    /// of the packets after it? Near the end of the buffer, every aligned position that exists
    /// must agree and at least one whole packet must be there.
    fn confirmed_sync_at(&self, offset: usize) -> bool {
        let available = (self.buf.len() - self.pos).saturating_sub(offset);
        let whole = available / PACKET_SIZE;
        whole >= 1
            && (0..SYNC_CONFIRM_PACKETS.min(whole))
                .all(|k| self.is_sync_at(offset + k * PACKET_SIZE))
    }

    /// The input paused with exactly one whole packet waiting for the byte after it (the
    /// look-ahead of [`PacketAligner::next_packet`]): it is released. An encoder writes a
    /// frame and then waits, so the last packet of every write waited for the next write:
    /// 50–170 ms on loopback with ffmpeg -re (markers from the encoder's pipe to bl-chunk's
    /// output, p50). A packet cut short is still held: it is not whole.
    pub fn take_paused(&mut self) -> Option<&[u8]> {
        if !self.holds_paused_packet() {
            return None;
        }
        let start = self.pos;
        self.pos += PACKET_SIZE;
        self.packets += 1;
        self.buf.get(start..start + PACKET_SIZE)
    }

    /// Whether a whole packet waits for the byte after it ([`PacketAligner::take_paused`]
    /// would release it).
    pub fn holds_paused_packet(&self) -> bool {
        self.locked && self.buf.len() - self.pos == PACKET_SIZE && self.is_sync_at(0)
    }

    /// Returns the next whole packet, or `None` when more input is needed. With `at_eof`,
    /// trailing bytes that cannot form a packet are counted as skipped and dropped.
    pub fn next_packet(&mut self, at_eof: bool) -> Option<&[u8]> {
        loop {
            let available = self.buf.len() - self.pos;
            if available == 0 {
                return None;
            }
            if self.locked {
                if !self.is_sync_at(0) {
                    self.locked = false;
                    continue;
                }
                if available < PACKET_SIZE {
                    if at_eof {
                        self.skip(available);
                    }
                    return None;
                }
                // Look one packet ahead so a truncated packet is not glued to the next one:
                // the next packet's first byte is all it takes.
                let next_is_sync = if available > PACKET_SIZE {
                    self.is_sync_at(PACKET_SIZE)
                } else if at_eof {
                    true
                } else {
                    return None;
                };
                if !next_is_sync {
                    // Either this packet was cut short and a new one starts inside it, or a
                    // whole packet is followed by garbage. Only a confirmed sync inside the
                    // packet's span tells the first case from the second.
                    if available < PACKET_SIZE * (1 + SYNC_CONFIRM_PACKETS) && !at_eof {
                        return None;
                    }
                    self.locked = false;
                    if (1..PACKET_SIZE).any(|offset| self.confirmed_sync_at(offset)) {
                        self.skip(1);
                        continue;
                    }
                }
                let start = self.pos;
                self.pos += PACKET_SIZE;
                self.packets += 1;
                return self.buf.get(start..start + PACKET_SIZE);
            }
            // Unlocked: find a 0x47 confirmed at 188-byte spacing.
            let window = &self.buf[self.pos..];
            match window.iter().position(|&b| b == SYNC_BYTE) {
                None => {
                    self.skip(available);
                    return None;
                }
                Some(0) => {}
                Some(i) => {
                    self.skip(i);
                    continue;
                }
            }
            let needed = SYNC_CONFIRM_PACKETS * PACKET_SIZE;
            if available < needed && !at_eof {
                return None;
            }
            // At the end of the input fewer than three packets can confirm nothing: a 0x47 in
            // the last bytes of garbage made a "packet" of them. They are taken only as a whole
            // short input (nothing skipped or emitted before).
            let pristine = self.packets == 0 && self.skipped_bytes == 0;
            let confirmed = self.confirmed_sync_at(0) && (available >= needed || pristine);
            if confirmed {
                self.locked = true;
            } else {
                self.skip(1);
            }
        }
    }
}

/// PIDs with fixed meaning.
pub const PID_PAT: u16 = 0x0000;
pub const PID_SDT: u16 = 0x0011;

/// Tracks the program tables (PAT → PMT) to learn which PIDs carry video, so that only a video
/// random-access point counts as a keyframe (ffmpeg also flags audio packets as random access).
#[derive(Debug, Default)]
pub struct ProgramTables {
    pmt_pids: Vec<u16>,
    video_pids: Vec<u16>,
}

/// Stream types (ISO 13818-1 table 2-34 and registered extensions) that carry video.
fn is_video_stream_type(stream_type: u8) -> bool {
    matches!(
        stream_type,
        0x01 | 0x02 | 0x10 | 0x1b | 0x20 | 0x24 | 0x33 | 0x42 | 0xd1 | 0xea
    )
}

impl ProgramTables {
    pub fn new() -> Self {
        Self::default()
    }

    /// True for PAT, SDT and PMT packets: the tables a player needs before it can decode.
    pub fn is_table_pid(&self, pid: u16) -> bool {
        pid == PID_PAT || pid == PID_SDT || self.pmt_pids.contains(&pid)
    }

    /// True for a PID the PMT declared as video.
    pub fn is_video_pid(&self, pid: u16) -> bool {
        self.video_pids.contains(&pid)
    }

    /// True once a PMT declared at least one video stream.
    pub fn has_video(&self) -> bool {
        !self.video_pids.is_empty()
    }

    /// Is this packet the start of a random-access point a viewer can join at? Video RAPs
    /// when the stream has video; any RAP otherwise (audio-only streams).
    pub fn is_keyframe(&self, header: &PacketHeader) -> bool {
        header.random_access && (!self.has_video() || self.video_pids.contains(&header.pid))
    }

    /// Feeds one packet; parses PAT and PMT sections that start in it.
    pub fn observe(&mut self, packet: &[u8]) {
        let Some(header) = PacketHeader::parse(packet) else {
            return;
        };
        if !header.payload_unit_start
            || !(header.pid == PID_PAT || self.pmt_pids.contains(&header.pid))
        {
            return;
        }
        let Some(section) = payload(packet).and_then(section_after_pointer) else {
            return;
        };
        if header.pid == PID_PAT {
            self.parse_pat(section);
        } else {
            self.parse_pmt(section);
        }
    }

    fn parse_pat(&mut self, section: &[u8]) {
        let Some(body) = section_body(section, 0x00) else {
            return;
        };
        let mut pids = Vec::new();
        for entry in body.chunks_exact(4) {
            let program = u16::from_be_bytes([entry[0], entry[1]]);
            let pid = (u16::from(entry[2] & 0x1f) << 8) | u16::from(entry[3]);
            if program != 0 {
                pids.push(pid);
            }
        }
        self.pmt_pids = pids;
    }

    fn parse_pmt(&mut self, section: &[u8]) {
        let Some(body) = section_body(section, 0x02) else {
            return;
        };
        // body: PCR_PID(2) program_info_length(2) descriptors, then ES loop.
        let Some(info_len) = body
            .get(2..4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]) & 0x0fff))
        else {
            return;
        };
        let mut es = body.get(4 + info_len..).unwrap_or(&[]);
        let mut video = Vec::new();
        while es.len() >= 5 {
            let stream_type = es[0];
            let pid = (u16::from(es[1] & 0x1f) << 8) | u16::from(es[2]);
            let es_info_len = usize::from(u16::from_be_bytes([es[3], es[4]]) & 0x0fff);
            if is_video_stream_type(stream_type) {
                video.push(pid);
            }
            es = es.get(5 + es_info_len..).unwrap_or(&[]);
        }
        // Keep the union: several programs may each have a PMT.
        for pid in video {
            if !self.video_pids.contains(&pid) {
                self.video_pids.push(pid);
            }
        }
    }
}

fn section_after_pointer(payload: &[u8]) -> Option<&[u8]> {
    let pointer = *payload.first()? as usize;
    payload.get(1 + pointer..)
}

/// The part of a long-form PSI section between the 8-byte header and the CRC, if the section
/// has the expected table id and fits in the bytes given (multi-packet sections are ignored).
fn section_body(section: &[u8], table_id: u8) -> Option<&[u8]> {
    if *section.first()? != table_id {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*section.get(1)?, *section.get(2)?]) & 0x0fff);
    // section_length counts from after the length field through the CRC.
    if len < 9 {
        return None;
    }
    section.get(8..3 + len - 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, fill: u8) -> Vec<u8> {
        let mut p = vec![fill; PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1] = (pid >> 8) as u8 & 0x1f;
        p[2] = pid as u8;
        p[3] = 0x10;
        p
    }

    fn drain(a: &mut PacketAligner, eof: bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(p) = a.next_packet(eof) {
            out.push(p.to_vec());
        }
        out
    }

    #[test]
    fn aligns_clean_stream_in_odd_pieces() {
        let stream: Vec<u8> = (0..10).flat_map(|i| packet(i, 0)).collect();
        let mut a = PacketAligner::new();
        let mut got = Vec::new();
        for piece in stream.chunks(77) {
            a.push(piece);
            got.extend(drain(&mut a, false));
        }
        got.extend(drain(&mut a, true));
        assert_eq!(got.concat(), stream);
        assert_eq!(a.skipped_bytes(), 0);
    }

    #[test]
    fn skips_garbage_and_truncated_packet() {
        let mut stream = vec![0x47, 1, 2, 3, 0x47];
        let good: Vec<Vec<u8>> = (0..6).map(|i| packet(i, 0x11)).collect();
        stream.extend(good[..3].concat());
        stream.extend(&packet(99, 0x22)[..100]); // truncated
        stream.extend(good[3..].concat());
        stream.extend([0x47, 9, 9]); // truncated tail
        let mut a = PacketAligner::new();
        a.push(&stream);
        let got = drain(&mut a, true);
        assert_eq!(got, good);
        assert_eq!(a.skipped_bytes(), 5 + 100 + 3);
    }

    #[test]
    fn whole_packet_followed_by_garbage_is_kept() {
        let good: Vec<Vec<u8>> = (0..8).map(|i| packet(i, 0x11)).collect();
        let mut stream = good[..4].concat();
        stream.extend([1, 2, 3, 4, 5, 6, 7]);
        stream.extend(good[4..].concat());
        let mut a = PacketAligner::new();
        a.push(&stream);
        assert_eq!(drain(&mut a, true), good);
        assert_eq!(a.skipped_bytes(), 7);
    }

    /// A 0x47 in garbage a packet's length from the end is not a packet: after garbage, sync
    /// needs three packets. A clean input of one packet is one.
    #[test]
    fn a_sync_byte_a_packet_before_the_end_of_garbage_is_not_a_packet() {
        let mut stream: Vec<u8> = (0..50u8).map(|b| b | 0x80).collect();
        stream.extend(packet(1, 0x11));
        let mut a = PacketAligner::new();
        a.push(&stream);
        assert!(drain(&mut a, true).is_empty());
        assert_eq!(a.skipped_bytes(), stream.len() as u64);
        let mut clean = PacketAligner::new();
        clean.push(&packet(2, 0x11));
        assert_eq!(drain(&mut clean, true), vec![packet(2, 0x11)]);
    }

    /// The last packet of a write waits for the byte after it; when the input pauses it is
    /// released whole, and a packet cut short is not.
    #[test]
    fn a_whole_packet_is_released_when_the_input_pauses() {
        let good: Vec<Vec<u8>> = (0..4).map(|i| packet(i, 0x11)).collect();
        let mut a = PacketAligner::new();
        a.push(&good[..3].concat());
        assert_eq!(
            drain(&mut a, false),
            good[..2].to_vec(),
            "the last one waits"
        );
        assert!(a.holds_paused_packet());
        assert_eq!(a.take_paused().map(<[u8]>::to_vec), Some(good[2].clone()));
        assert!(a.take_paused().is_none() && !a.holds_paused_packet());
        a.push(&good[3][..100]);
        assert!(a.take_paused().is_none(), "a packet cut short is held");
        a.push(&good[3][100..]);
        assert_eq!(a.take_paused().map(<[u8]>::to_vec), Some(good[3].clone()));
        assert_eq!(a.skipped_bytes(), 0);
    }

    #[test]
    fn header_fields() {
        let mut p = packet(0x100, 0);
        p[1] |= 0x40;
        p[3] = 0x35; // adaptation + payload, cc 5
        p[4] = 7;
        p[5] = 0x50; // RAI + PCR
        p[6..12].copy_from_slice(&[0, 0, 0, 1, 0x80, 3]);
        let h = PacketHeader::parse(&p).unwrap();
        assert!(h.payload_unit_start && h.random_access && h.has_payload);
        assert_eq!((h.pid, h.continuity_counter), (0x100, 5));
        assert_eq!(h.pcr, Some(3 * 300 + 3));
    }
}
