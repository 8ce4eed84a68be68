//! The chunk stream on pipes (man/bl-chunk.5): a header naming the stream, then
//! length-prefixed frames, each one bincode-encoded [`Chunk`].
//!
//! ```text
//! header: "BLCS" (4 bytes) | version u8 = 1 | stream id (32-byte ed25519 public key)
//! frame:  length u32 little endian (1..=MAX_FRAME) | chunk (bincode standard config)
//! ```

use std::io::{self, Read, Write};

use anyhow::{bail, Context, Result};

use crate::media::chunk::{Chunk, MAX_ENCODED_CHUNK};
use crate::media::identity::StreamId;

pub const MAGIC: &[u8; 4] = b"BLCS";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 4 + 1 + 32;
/// Largest frame body a reader accepts. Larger lengths mean a corrupt or foreign stream.
pub const MAX_FRAME: usize = MAX_ENCODED_CHUNK;

pub fn write_header(out: &mut impl Write, stream: &StreamId) -> io::Result<()> {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(MAGIC);
    header[4] = VERSION;
    header[5..].copy_from_slice(&stream.0);
    out.write_all(&header)
}

pub fn write_chunk(out: &mut impl Write, chunk: &Chunk) -> io::Result<()> {
    let body = chunk.encode();
    out.write_all(&(body.len() as u32).to_le_bytes())?;
    out.write_all(&body)
}

/// One item read from a chunk stream.
#[derive(Debug)]
pub enum FrameItem {
    /// A decodable chunk (not yet verified) that started at byte `offset`.
    Chunk { offset: u64, chunk: Chunk },
    /// A frame whose body does not decode; the stream goes on after it.
    Corrupt { offset: u64, reason: String },
}

/// Reads a chunk stream. Allocation per frame is bounded by [`MAX_FRAME`].
pub struct FrameReader<R> {
    input: R,
    offset: u64,
    stream: StreamId,
    body: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<Self> {
        let mut header = [0u8; HEADER_LEN];
        let got = read_full(&mut input, &mut header).context("cannot read chunk stream header")?;
        if got == 0 {
            bail!("empty input: no chunk stream header");
        }
        if got < 4 || &header[..4] != MAGIC {
            bail!("not a bl chunk stream (bad magic at byte 0; is this raw MPEG-TS? pipe it through bl-chunk)");
        }
        if header[4] != VERSION {
            bail!(
                "unsupported chunk stream version {} at byte 4 (this bl reads version {VERSION})",
                header[4]
            );
        }
        if got < HEADER_LEN {
            bail!("truncated chunk stream header: {got} of {HEADER_LEN} bytes");
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&header[5..]);
        let stream = StreamId(id);
        stream
            .verifying_key()
            .context("chunk stream header at byte 5")?;
        Ok(FrameReader {
            input,
            offset: HEADER_LEN as u64,
            stream,
            body: Vec::new(),
        })
    }

    /// The stream id from the header (not proven: whoever wrote the stream chose it).
    pub fn stream(&self) -> StreamId {
        self.stream
    }

    /// The underlying reader (e.g. to see how much a `BufReader` holds).
    pub fn get_ref(&self) -> &R {
        &self.input
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next item; `Ok(None)` at a clean end of stream. A length field beyond the limit or
    /// a frame cut short by end of input is an error naming the byte offset: after a bad
    /// length there is no way to find the next frame boundary.
    pub fn next_item(&mut self) -> Result<Option<FrameItem>> {
        let frame_offset = self.offset;
        let mut len_bytes = [0u8; 4];
        let got = read_full(&mut self.input, &mut len_bytes)?;
        if got == 0 {
            return Ok(None);
        }
        if got < 4 {
            bail!("truncated frame at byte {frame_offset}: {got} of 4 length bytes");
        }
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len == 0 || len > MAX_FRAME {
            bail!("corrupt frame at byte {frame_offset}: length {len} outside 1..={MAX_FRAME}");
        }
        self.body.resize(len, 0);
        let got = read_full(&mut self.input, &mut self.body)?;
        self.offset += 4 + got as u64;
        if got < len {
            bail!("truncated frame at byte {frame_offset}: {got} of {len} bytes");
        }
        Ok(Some(match Chunk::decode(&self.body) {
            Ok(chunk) => FrameItem::Chunk {
                offset: frame_offset,
                chunk,
            },
            Err(e) => FrameItem::Corrupt {
                offset: frame_offset,
                reason: e.to_string(),
            },
        }))
    }
}

/// Reads until `buf` is full or end of input; returns the bytes read. Retries on EINTR.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads a whole chunk stream held in memory (tests, tools); stops at the first fatal error.
pub fn read_all(bytes: &[u8]) -> Result<(StreamId, Vec<FrameItem>)> {
    let mut reader = FrameReader::new(bytes)?;
    let mut items = Vec::new();
    while let Some(item) = reader.next_item()? {
        items.push(item);
    }
    Ok((reader.stream(), items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::identity::StreamKey;

    fn stream_bytes(n: u64) -> (StreamKey, Vec<u8>) {
        let key = StreamKey::from_seed([3; 32]);
        let mut out = Vec::new();
        write_header(&mut out, &key.id()).unwrap();
        for seq in 0..n {
            let mut payload = vec![0u8; 188];
            payload[0] = 0x47;
            write_chunk(&mut out, &Chunk::sign(&key, seq, seq, 0, payload)).unwrap();
        }
        (key, out)
    }

    #[test]
    fn round_trip() {
        let (key, bytes) = stream_bytes(5);
        let (id, items) = read_all(&bytes).unwrap();
        assert_eq!(id, key.id());
        assert_eq!(items.len(), 5);
    }

    #[test]
    fn truncation_names_the_offset() {
        let (_, bytes) = stream_bytes(3);
        let cut = &bytes[..bytes.len() - 10];
        let err = read_all(cut).unwrap_err().to_string();
        assert!(err.starts_with("truncated frame at byte "), "{err}");
    }

    #[test]
    fn huge_length_is_refused_without_allocating() {
        let (_, mut bytes) = stream_bytes(0);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = read_all(&bytes).unwrap_err().to_string();
        assert!(
            err.contains(&format!("corrupt frame at byte {HEADER_LEN}")),
            "{err}"
        );
    }

    #[test]
    fn raw_ts_is_recognised() {
        let err = read_all(&[0x47; 400]).err().unwrap().to_string();
        assert!(err.contains("raw MPEG-TS"), "{err}");
    }
}
