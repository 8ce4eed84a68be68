//! The live window an HTTP engine serves from, without I/O: played chunks in, HLS segments,
//! partial segments and playlists out, plus where a new `/stream.ts` client starts.
//!
//! A segment opens at every keyframe chunk (bl-chunk starts a chunk at each keyframe, with
//! the PAT/PMT ahead of it), so every segment decodes on its own, and its target duration is
//! one GOP. Segments are cut into parts of about [`PART_CUT_US`] for low-latency HLS, each
//! ending right before a TS packet that starts a PES: hls.js flushes its demuxer at the end of
//! every part, and a PES cut in two there was a truncated frame and a failed append (seen in
//! Chromium at every part boundary when parts were cut at chunk boundaries). ffmpeg writes
//! each PES whole, so before a PES start no other PES is open. Durations come from the video
//! PTS at the cuts (capture times, which arrive in the encoder's bursts, made parts of 0.33 s
//! against a 0.3 s part target); program date-times from the chunks' signed capture times.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::media::chunk::Chunk;
use crate::media::ts::{pes_pts, PacketHeader, ProgramTables, PACKET_SIZE};

/// Complete segments kept for playlists and segment requests. Six GOPs of 2 s cover hls.js's
/// default live sync (3 target durations back) with room for a slow client's fetch.
pub const WINDOW_SEGMENTS: usize = 6;
/// A segment longer than this (a source that rarely sends keyframes) is closed early: memory
/// stays bounded, and the next segment is marked as not starting at a keyframe.
pub const MAX_SEGMENT_BYTES: usize = 8 << 20;
/// A part closes once the next chunk was captured this long after the part's first chunk.
pub const PART_CUT_US: u64 = 200_000;
/// The part target duration announced in playlists: the cut plus room for the chunk that
/// closes a part late (chunks arrive every few ms at 1.5 Mb/s; 100 ms of slack).
pub const PART_TARGET_US: u64 = 300_000;
/// The shortest duration written: playlists carry milliseconds, and a 0 confuses players.
const MIN_DURATION_US: u64 = 1000;
/// Parts are listed only for this many newest segments (the spec asks for at least the last
/// three target durations; older ones are served whole).
const SEGMENTS_WITH_PARTS: usize = 2;

/// A place in a segment: a chunk and a byte offset in its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub chunk: usize,
    pub offset: usize,
}

/// A byte range of one segment, served as `seg/<msn>.<index>.ts`.
#[derive(Debug, Clone)]
pub struct Part {
    pub start: Pos,
    pub end: Pos,
    pub duration_us: u64,
    /// Starts with a keyframe chunk.
    pub independent: bool,
}

/// Bytes of one chunk's payload, shared.
pub type Slice = (Arc<Chunk>, std::ops::Range<usize>);

#[derive(Debug)]
pub struct Segment {
    /// Media sequence number, counted from 0 at the first keyframe this engine saw.
    pub msn: u64,
    pub chunks: Vec<Arc<Chunk>>,
    pub bytes: usize,
    pub keyframe_start: bool,
    /// Closed parts; the open part (from the last part's end) is not listed yet.
    pub parts: Vec<Part>,
    /// Set when the segment is complete: the sum of its parts.
    pub duration_us: Option<u64>,
    /// The clock where the open part began.
    part_mark: Mark,
}

/// A reading of the stream's clocks at a place in it: the capture time of its chunk and, when
/// a video PES starts there, its presentation time stamp.
#[derive(Debug, Clone, Copy)]
struct Mark {
    capture_us: u64,
    pts: Option<u64>,
}

impl Mark {
    /// Media time from `self` to `later`: by the PTS when both have one (exact frame times),
    /// else by capture time (which comes in bursts as the encoder writes).
    fn until(self, later: Mark) -> u64 {
        match (self.pts, later.pts) {
            (Some(a), Some(b)) => (b.wrapping_sub(a) & PTS_MASK) * 1_000_000 / PTS_HZ,
            _ => later.capture_us.saturating_sub(self.capture_us),
        }
    }
}

/// PTS are 33-bit counts of a 90 kHz clock.
const PTS_HZ: u64 = 90_000;
const PTS_MASK: u64 = (1 << 33) - 1;

impl Segment {
    fn new(msn: u64, first: Arc<Chunk>, mark: Mark) -> Segment {
        Segment {
            msn,
            keyframe_start: first.is_keyframe(),
            bytes: first.payload.len(),
            chunks: vec![first],
            parts: Vec::new(),
            duration_us: None,
            part_mark: mark,
        }
    }

    fn start_us(&self) -> u64 {
        self.chunks.first().map_or(0, |c| c.capture_us)
    }

    /// Where the open part begins.
    fn open_part_start(&self) -> Pos {
        self.parts.last().map_or(
            Pos {
                chunk: 0,
                offset: 0,
            },
            |p| p.end,
        )
    }

    fn close_part(&mut self, end: Pos, mark: Mark) {
        let start = self.open_part_start();
        if end <= start {
            return;
        }
        let duration_us = self.part_mark.until(mark).max(MIN_DURATION_US);
        self.part_mark = mark;
        self.parts.push(Part {
            start,
            end,
            duration_us,
            independent: start.offset == 0
                && self
                    .chunks
                    .get(start.chunk)
                    .is_some_and(|c| c.is_keyframe()),
        });
    }

    /// The end of the segment as a position.
    fn end_pos(&self) -> Pos {
        Pos {
            chunk: self.chunks.len(),
            offset: 0,
        }
    }

    /// The bytes of a closed part.
    pub fn part_slices(&self, index: usize) -> Option<Vec<Slice>> {
        let p = self.parts.get(index)?;
        let mut out = Vec::new();
        for i in p.start.chunk..=p.end.chunk.min(self.chunks.len().saturating_sub(1)) {
            let chunk = self.chunks.get(i)?;
            let from = if i == p.start.chunk {
                p.start.offset
            } else {
                0
            };
            let to = if i == p.end.chunk {
                p.end.offset
            } else {
                chunk.payload.len()
            };
            if from < to {
                out.push((chunk.clone(), from..to));
            }
        }
        Some(out)
    }
}

/// Offsets and PTS of the video PES that start in `payload` at or after `from` (any PES with
/// a PTS when the program tables name no video).
fn video_pes<'a>(
    tables: &'a ProgramTables,
    payload: &'a [u8],
    from: usize,
) -> impl Iterator<Item = (usize, u64)> + 'a {
    (from..payload.len())
        .step_by(PACKET_SIZE)
        .filter_map(move |at| {
            let packet = payload.get(at..at + PACKET_SIZE)?;
            let header = PacketHeader::parse(packet)?;
            let video = tables.is_video_pid(header.pid) || !tables.has_video();
            if !video || tables.is_table_pid(header.pid) {
                return None;
            }
            pes_pts(packet).map(|pts| (at, pts))
        })
}

/// Offset of the first TS packet in `payload` at or after `from` that starts a PES or table.
fn pes_start(payload: &[u8], from: usize) -> Option<usize> {
    (from..payload.len()).step_by(PACKET_SIZE).find(|&at| {
        payload
            .get(at..at + PACKET_SIZE)
            .and_then(PacketHeader::parse)
            .is_some_and(|h| h.payload_unit_start)
    })
}

/// Where the live edge is, for blocking playlist reloads (`_HLS_msn`, `_HLS_part`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// The open segment's msn.
    pub msn: u64,
    /// Closed parts in it.
    pub parts: usize,
}

#[derive(Debug, Default)]
pub struct Live {
    /// Complete segments then the open one (last), oldest first.
    segments: VecDeque<Segment>,
    next_msn: u64,
    ended: bool,
    /// Largest complete segment duration so far, in whole seconds rounded (never shrinks:
    /// the spec forbids the target duration to change; with a fixed GOP it never does, as
    /// segments are timed by their PTS).
    target_s: u64,
    /// Which PIDs carry video, from the PAT and PMT ahead of every keyframe.
    tables: ProgramTables,
}

impl Live {
    pub fn new() -> Live {
        Live::default()
    }

    /// Adds the next played chunk. Returns true when the live edge moved (a part or segment
    /// closed), so blocked playlist requests can be answered.
    pub fn push(&mut self, chunk: Arc<Chunk>) -> bool {
        if self.ended || chunk.is_end() {
            return false;
        }
        for packet in chunk.payload.chunks_exact(PACKET_SIZE) {
            self.tables.observe(packet);
        }
        let mark = Mark {
            capture_us: chunk.capture_us,
            pts: video_pes(&self.tables, &chunk.payload, 0)
                .next()
                .map(|(_, pts)| pts),
        };
        let tables = &self.tables;
        let Some(open) = self.segments.back_mut() else {
            // Before the first keyframe nothing decodes on its own: nothing to serve yet.
            if chunk.is_keyframe() {
                self.open(chunk, mark);
                return true;
            }
            return false;
        };
        if chunk.is_keyframe() || open.bytes + chunk.payload.len() > MAX_SEGMENT_BYTES {
            self.close_open(mark);
            self.open(chunk, mark);
            return true;
        }
        let start = open.open_part_start();
        let last = open.chunks.len();
        let from = if start.chunk == last {
            start.offset + PACKET_SIZE
        } else {
            0
        };
        // The part ends before the first video PES (a frame) at least PART_CUT after its
        // start; without PTS, before the first PES start once capture time says so.
        let cut = match open.part_mark.pts {
            Some(_) => video_pes(tables, &chunk.payload, from)
                .map(|(offset, pts)| {
                    let mark = Mark {
                        capture_us: chunk.capture_us,
                        pts: Some(pts),
                    };
                    (offset, mark)
                })
                .find(|(_, mark)| open.part_mark.until(*mark) >= PART_CUT_US),
            None if open.part_mark.until(mark) >= PART_CUT_US => {
                pes_start(&chunk.payload, from).map(|offset| (offset, mark))
            }
            None => None,
        };
        open.bytes += chunk.payload.len();
        open.chunks.push(chunk);
        match cut {
            Some((offset, mark)) => {
                open.close_part(
                    Pos {
                        chunk: last,
                        offset,
                    },
                    mark,
                );
                true
            }
            None => false,
        }
    }

    /// The stream ended: the open segment completes and playlists say so.
    pub fn end(&mut self) {
        if !self.ended {
            let last = self
                .segments
                .back()
                .and_then(|s| s.chunks.last())
                .map(|c| c.capture_us);
            if let Some(end) = last {
                // The last chunk's own duration is unknown: a 1 ms floor keeps it listed.
                self.close_open(Mark {
                    capture_us: end + MIN_DURATION_US,
                    pts: None,
                });
            }
            self.ended = true;
        }
    }

    /// Whether a segment is complete: before that no playlist can list anything.
    pub fn has_complete(&self) -> bool {
        self.complete().next().is_some()
    }

    /// The announced target duration (one GOP, rounded up to whole seconds).
    pub fn target_us(&self) -> u64 {
        self.target_s.max(1) * 1_000_000
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    fn open(&mut self, first: Arc<Chunk>, mark: Mark) {
        self.segments
            .push_back(Segment::new(self.next_msn, first, mark));
        self.next_msn += 1;
        while self.complete().count() > WINDOW_SEGMENTS {
            self.segments.pop_front();
        }
    }

    fn close_open(&mut self, end: Mark) {
        if let Some(seg) = self.segments.back_mut() {
            if seg.duration_us.is_none() {
                seg.close_part(seg.end_pos(), end);
                let d = seg
                    .parts
                    .iter()
                    .map(|p| p.duration_us)
                    .sum::<u64>()
                    .max(MIN_DURATION_US);
                seg.duration_us = Some(d);
                // The rule: every EXTINF, rounded to the nearest second, is at most the target.
                self.target_s = self.target_s.max((d + 500_000) / 1_000_000);
            }
        }
    }

    fn complete(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(|s| s.duration_us.is_some())
    }

    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.msn == msn)
    }

    /// The bytes of a closed part.
    pub fn part(&self, msn: u64, index: usize) -> Option<Vec<Slice>> {
        self.segment(msn)?.part_slices(index)
    }

    /// A complete segment's chunks.
    pub fn segment_chunks(&self, msn: u64) -> Option<&[Arc<Chunk>]> {
        self.segment(msn)
            .filter(|s| s.duration_us.is_some())
            .map(|s| s.chunks.as_slice())
    }

    /// The live edge: the open segment and its closed parts (after the end: one past the last).
    pub fn edge(&self) -> Edge {
        match self.segments.back() {
            Some(s) if s.duration_us.is_none() => Edge {
                msn: s.msn,
                parts: s.parts.len(),
            },
            _ => Edge {
                msn: self.next_msn,
                parts: 0,
            },
        }
    }

    /// Whether a playlist request for `msn` (and part) can be answered now. Per the LL-HLS
    /// rules, part `p` of segment `m` is there when `p` parts of `m` closed; a request for a
    /// segment with no part asks for the segment to be complete.
    pub fn has(&self, msn: u64, part: Option<usize>) -> bool {
        let edge = self.edge();
        self.ended || msn < edge.msn || (msn == edge.msn && part.is_some_and(|p| p < edge.parts))
    }

    /// Where a new `/stream.ts` client starts: the newest keyframe's chunks up to now, so a
    /// player shows a picture at once (what stdout gives a joining peer, too).
    pub fn from_newest_keyframe(&self) -> impl Iterator<Item = &Arc<Chunk>> {
        let start = self
            .segments
            .iter()
            .rposition(|s| s.keyframe_start)
            .unwrap_or(self.segments.len());
        self.segments
            .iter()
            .skip(start)
            .flat_map(|s| s.chunks.iter())
    }

    /// The media playlist: complete segments with their program date-time, parts of the newest
    /// ones, and the server control for blocking reloads.
    pub fn playlist(&self) -> String {
        let mut m = String::with_capacity(2048);
        let target = self.target_s.max(1);
        let first = self.segments.front().map_or(self.next_msn, |s| s.msn);
        let _ = write!(
            m,
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:{target}\n\
             #EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-PART-INF:PART-TARGET={:.3}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n",
            secs(PART_TARGET_US),
            // The spec's minimum: three part targets.
            secs(3 * PART_TARGET_US),
        );
        let with_parts = self.segments.len().saturating_sub(SEGMENTS_WITH_PARTS + 1);
        for (i, seg) in self.segments.iter().enumerate() {
            let _ = writeln!(m, "#EXT-X-PROGRAM-DATE-TIME:{}", date_time(seg.start_us()));
            if i >= with_parts {
                for (p, part) in seg.parts.iter().enumerate() {
                    let _ = write!(
                        m,
                        "#EXT-X-PART:DURATION={:.3},URI=\"seg/{}.{p}.ts\"",
                        secs(part.duration_us),
                        seg.msn
                    );
                    m.push_str(if part.independent {
                        ",INDEPENDENT=YES\n"
                    } else {
                        "\n"
                    });
                }
            }
            if let Some(d) = seg.duration_us {
                let _ = write!(m, "#EXTINF:{:.3},\nseg/{}.ts\n", secs(d), seg.msn);
            }
        }
        if self.ended {
            m.push_str("#EXT-X-ENDLIST\n");
        } else if let Some(open) = self.segments.back().filter(|s| s.duration_us.is_none()) {
            // Tells the player which part comes next, so it can ask before it exists.
            let _ = writeln!(
                m,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg/{}.{}.ts\"",
                open.msn,
                open.parts.len()
            );
        }
        m
    }
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// ISO 8601 in UTC with milliseconds, as EXT-X-PROGRAM-DATE-TIME wants.
fn date_time(unix_us: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_micros(unix_us - unix_us % 1000);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::chunk::FLAG_KEYFRAME;
    use crate::media::identity::StreamKey;

    fn chunk(key: &StreamKey, seq: u64, ms: u64, keyframe: bool) -> Arc<Chunk> {
        let flags = if keyframe { FLAG_KEYFRAME } else { 0 };
        Arc::new(Chunk::sign(key, seq, ms * 1000, flags, vec![0x47; 188]))
    }

    /// A 2 s GOP at 10 chunks a second, like the tests' ffmpeg streams.
    fn feed(live: &mut Live, key: &StreamKey, seconds: u64) {
        for i in 0..seconds * 10 {
            live.push(chunk(key, i, 1_000_000 + i * 100, i % 20 == 0));
        }
    }

    #[test]
    fn segments_open_at_keyframes_and_the_window_slides() {
        let key = StreamKey::from_seed([1; 32]);
        let mut live = Live::new();
        assert!(
            !live.push(chunk(&key, 0, 0, false)),
            "nothing before a keyframe"
        );
        feed(&mut live, &key, 20);
        assert_eq!(live.complete().count(), WINDOW_SEGMENTS);
        let edge = live.edge();
        assert_eq!(edge.msn, 9, "ten GOPs seen, the tenth open");
        let first = live.segments.front().unwrap().msn;
        assert_eq!(first, 3);
        assert!(live.segment_chunks(2).is_none(), "slid out");
        assert!(live.segment_chunks(9).is_none(), "still open");
        let seg = live.segment_chunks(8).unwrap();
        assert_eq!(seg.len(), 20);
        assert!(seg[0].is_keyframe());
        let pl = live.playlist();
        assert!(pl.contains("#EXT-X-TARGETDURATION:2\n"), "{pl}");
        assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:3\n"));
        assert!(pl.contains("#EXTINF:2.000,\nseg/8.ts\n"));
        assert!(
            !pl.contains("seg/9.ts\n"),
            "the open segment is not listed whole"
        );
        assert!(pl.contains("URI=\"seg/9.0.ts\",INDEPENDENT=YES"), "{pl}");
        assert!(
            pl.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg/9.9.ts\""),
            "{pl}"
        );
        assert!(
            pl.contains("#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:16:58.000Z"),
            "{pl}"
        );
        assert!(!pl.contains("ENDLIST"));
        // Parts of 200 ms: the open segment has 9 closed parts of 2 chunks.
        let open = live.segment(9).unwrap();
        assert_eq!(open.parts.len(), 9);
        let part = open.part_slices(0).unwrap();
        assert_eq!(part.len(), 2, "two whole chunks");
        assert!(part.iter().all(|(c, r)| *r == (0..c.payload.len())));
        assert!(live.has(9, Some(8)) && !live.has(9, Some(9)) && !live.has(9, None));
    }

    #[test]
    fn a_new_client_starts_at_the_newest_keyframe_and_the_end_closes_the_playlist() {
        let key = StreamKey::from_seed([2; 32]);
        let mut live = Live::new();
        feed(&mut live, &key, 5);
        let start: Vec<u64> = live.from_newest_keyframe().map(|c| c.seq).collect();
        assert_eq!(start, (40..50).collect::<Vec<_>>());
        live.end();
        let pl = live.playlist();
        // The last chunk is counted as 1 ms long: 0.9 s after the keyframe, plus 1 ms.
        assert!(
            pl.ends_with("#EXTINF:0.901,\nseg/2.ts\n#EXT-X-ENDLIST\n"),
            "{pl}"
        );
        assert!(live.has(100, None), "after the end nothing blocks");
        assert!(
            !live.push(chunk(&key, 50, 6_000, true)),
            "nothing after the end"
        );
    }

    /// Six TS packets; `pes` marks which start a PES (payload_unit_start_indicator).
    fn packets(pes: [bool; 6]) -> Vec<u8> {
        pes.iter()
            .flat_map(|&start| {
                let mut p = vec![0xff; PACKET_SIZE];
                p[..4].copy_from_slice(&[0x47, if start { 0x41 } else { 0x01 }, 0x00, 0x10]);
                p
            })
            .collect()
    }

    #[test]
    fn a_part_ends_right_before_a_pes_start_inside_a_chunk() {
        let key = StreamKey::from_seed([4; 32]);
        let mut live = Live::new();
        let at = |seq: u64, ms: u64, flags: u8, pes| {
            Arc::new(Chunk::sign(&key, seq, ms * 1000, flags, packets(pes)))
        };
        live.push(at(0, 0, FLAG_KEYFRAME, [true; 6]));
        assert!(
            !live.push(at(1, 250, 0, [false; 6])),
            "old enough, but no PES start"
        );
        let mid = [false, false, false, true, false, false];
        assert!(
            live.push(at(2, 300, 0, mid)),
            "cut before the fourth packet"
        );
        let part = live.part(0, 0).unwrap();
        let ranges: Vec<_> = part.iter().map(|(c, r)| (c.seq, r.clone())).collect();
        assert_eq!(ranges, vec![(0, 0..1128), (1, 0..1128), (2, 0..564)]);
        // The rest of the chunk opens the next part; at the next keyframe both parts, joined,
        // are the whole segment.
        live.push(at(3, 2000, FLAG_KEYFRAME, [true; 6]));
        let joined: Vec<u8> = (0..2)
            .flat_map(|i| live.part(0, i).unwrap())
            .flat_map(|(c, r)| c.payload[r].to_vec())
            .collect();
        let whole: Vec<u8> = live
            .segment_chunks(0)
            .unwrap()
            .iter()
            .flat_map(|c| c.payload.clone())
            .collect();
        assert_eq!(joined, whole);
        assert!(live.part(0, 2).is_none());
    }

    #[test]
    fn a_source_without_keyframes_is_cut_by_size() {
        let key = StreamKey::from_seed([3; 32]);
        let mut live = Live::new();
        live.push(chunk(&key, 0, 0, true));
        let per = MAX_SEGMENT_BYTES / 188 + 10;
        for i in 1..per as u64 {
            live.push(chunk(&key, i, i, false));
        }
        assert_eq!(live.segments.len(), 2);
        assert!(live.segments.iter().all(|s| s.bytes <= MAX_SEGMENT_BYTES));
        // The cut is not a discontinuity: timestamps run on.
        assert!(!live.playlist().contains("#EXT-X-DISCONTINUITY"));
        // A new client still starts at the keyframe segment.
        assert!(live.from_newest_keyframe().next().unwrap().is_keyframe());
    }
}
