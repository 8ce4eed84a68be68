//! One HTTP connection: what it has sent us, what it is waiting for, and its own bounded
//! queue of bytes to write. Chunk payloads are shared with every other client, not copied.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;

use super::request::{Request, MAX_HEAD_BYTES};
use crate::media::chunk::Chunk;

/// Bytes queued for one `/stream.ts` client before it is moved to the next keyframe: about
/// 5 s of a 1.5 Mb/s stream on top of what the kernel's socket buffer already holds. A player
/// that is that far behind would rather catch up than play old pictures.
pub const STREAM_QUEUE_BYTES: usize = 1 << 20;

/// A piece of a response. `Framed` is a chunk payload in chunked transfer encoding.
pub enum Piece {
    Owned(Vec<u8>),
    Static(&'static [u8]),
    Payload(Arc<Chunk>),
    /// Part of a payload (a low-latency HLS part begins or ends inside a chunk).
    Slice(Arc<Chunk>, std::ops::Range<usize>),
    Framed {
        head: [u8; 8],
        head_len: u8,
        chunk: Arc<Chunk>,
    },
}

impl Piece {
    pub fn framed(chunk: Arc<Chunk>) -> Piece {
        let mut head = [0u8; 8];
        let text = format!("{:x}\r\n", chunk.payload.len());
        let n = text.len().min(head.len());
        head[..n].copy_from_slice(&text.as_bytes()[..n]);
        Piece::Framed {
            head,
            head_len: n as u8,
            chunk,
        }
    }

    /// The piece as up to three byte runs, in order.
    fn runs(&self) -> [&[u8]; 3] {
        match self {
            Piece::Owned(v) => [v, &[], &[]],
            Piece::Static(s) => [s, &[], &[]],
            Piece::Payload(c) => [&c.payload, &[], &[]],
            Piece::Slice(c, r) => [c.payload.get(r.clone()).unwrap_or_default(), &[], &[]],
            Piece::Framed {
                head,
                head_len,
                chunk,
            } => [&head[..*head_len as usize], &chunk.payload, b"\r\n"],
        }
    }

    fn len(&self) -> usize {
        self.runs().iter().map(|r| r.len()).sum()
    }
}

/// What the connection is doing.
#[derive(Debug)]
pub enum Mode {
    /// Reading a request head (a new connection, or keep-alive after a response).
    Idle,
    /// Writing a fixed response; then Idle, or closed if `close`.
    Reply { close: bool },
    /// `/stream.ts`: every played chunk is queued. `resync`: skipping to the next keyframe
    /// (a slow client whose queue overflowed, or one that came before the first keyframe).
    Stream { chunked: bool, resync: bool },
    /// A playlist or part that does not exist yet; answered when it does or at `until`.
    Blocked { request: Request, until: u64 },
    /// Writing what is queued, then closing.
    Closing,
    /// Our side is shut; reading and dropping what the peer still sends until it closes or
    /// `until`. Closing a socket with unread bytes makes the kernel send a reset, and a
    /// client then loses the answer it was reading (seen with the 400s to garbage).
    Draining { until: u64 },
}

pub struct Client {
    pub sock: TcpStream,
    pub inbuf: Vec<u8>,
    pub mode: Mode,
    out: VecDeque<Piece>,
    /// Bytes of the front piece already written.
    front_done: usize,
    out_bytes: usize,
    /// When the current wait began: the head's deadline counts from here while Idle.
    pub since: u64,
    /// Last time the peer took bytes or there was nothing to take.
    pub progress_at: u64,
    /// The socket failed: drop the client.
    pub gone: bool,
    /// The peer shut its sending side: no more requests (it may still read an answer).
    pub eof: bool,
}

impl Client {
    pub fn new(sock: TcpStream, now: u64) -> Client {
        Client {
            sock,
            inbuf: Vec::new(),
            mode: Mode::Idle,
            out: VecDeque::new(),
            front_done: 0,
            out_bytes: 0,
            since: now,
            progress_at: now,
            gone: false,
            eof: false,
        }
    }

    pub fn queue(&mut self, piece: Piece) {
        self.out_bytes += piece.len();
        self.out.push_back(piece);
    }

    pub fn queued_bytes(&self) -> usize {
        self.out_bytes
    }

    /// Drops everything queued but the rest of a piece already begun (the byte stream and its
    /// chunked framing stay well formed). Returns whether anything was dropped.
    pub fn drop_queue(&mut self) -> bool {
        let keep = usize::from(self.front_done > 0);
        if self.out.len() <= keep {
            return false;
        }
        self.out.truncate(keep);
        self.out_bytes = self.out.front().map_or(0, |p| p.len() - self.front_done);
        true
    }

    /// Reads what the peer sent. Bytes after a head are kept for the next request (pipelining);
    /// past the head limit they are dropped, and the head is refused when parsed. A stream's
    /// client has nothing to say, so its bytes are dropped.
    pub fn read(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => {
                    let room = match self.mode {
                        Mode::Stream { .. } | Mode::Closing | Mode::Draining { .. } => 0,
                        _ => (MAX_HEAD_BYTES + 1).saturating_sub(self.inbuf.len()),
                    };
                    self.inbuf
                        .extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.gone = true;
                    return;
                }
            }
        }
    }

    /// Shuts our sending side and waits (up to `until`) for the peer to close.
    pub fn start_draining(&mut self, until: u64) {
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        self.inbuf.clear();
        self.mode = Mode::Draining { until };
    }

    /// Writes queued bytes until the socket would block. Returns true when the queue is empty.
    pub fn flush(&mut self, now: u64) -> bool {
        while !self.out.is_empty() {
            let mut slices: Vec<IoSlice> = Vec::with_capacity(48);
            let mut skip = self.front_done;
            'gather: for piece in self.out.iter().take(16) {
                for run in piece.runs() {
                    if skip >= run.len() {
                        skip -= run.len();
                        continue;
                    }
                    slices.push(IoSlice::new(run.get(skip..).unwrap_or_default()));
                    skip = 0;
                    if slices.len() >= 48 {
                        break 'gather;
                    }
                }
            }
            match self.sock.write_vectored(&slices) {
                Ok(0) => {
                    self.gone = true;
                    return false;
                }
                Ok(n) => {
                    self.progress_at = now;
                    self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.gone = true;
                    return false;
                }
            }
        }
        self.progress_at = now;
        true
    }

    fn consume(&mut self, mut n: usize) {
        self.out_bytes = self.out_bytes.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.out.front() else {
                return;
            };
            let left = front.len() - self.front_done;
            if n < left {
                self.front_done += n;
                return;
            }
            n -= left;
            self.front_done = 0;
            self.out.pop_front();
        }
    }

    /// Nothing to send and no request pending: the engine may stop.
    pub fn idle_and_flushed(&self) -> bool {
        self.out.is_empty() && matches!(self.mode, Mode::Idle | Mode::Draining { .. })
    }

    pub fn flushed(&self) -> bool {
        self.out.is_empty()
    }
}
