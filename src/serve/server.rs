//! The HTTP engine's thread: its own mio loop beside the node's, fed played chunks over a
//! bounded channel. Nothing here can slow the node: the node only ever `try_send`s, and each
//! client has its own bounded queue that is cut at a keyframe when the client falls behind.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use serde::Serialize;

use super::client::{Client, Mode, Piece, STREAM_QUEUE_BYTES};
use super::live::{Edge, Live, Slice, PART_TARGET_US};
use super::page;
use super::request::{self, Parsed, Refusal, Request, Route};
use crate::cmd::cli;
use crate::media::chunk::Chunk;

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);
/// Clients at once; more get 503. A TV, a few phones and a browser tab need a handful, and
/// each can hold up to [`STREAM_QUEUE_BYTES`] or one segment.
pub const MAX_CLIENTS: usize = 128;
/// A request head must arrive within this long of the connection (or of the last answer on a
/// kept-alive one): slowloris clients are cut off here.
pub const HEAD_TIMEOUT_US: u64 = 10_000_000;
/// A `/stream.ts` client that took no byte for this long is dropped, freeing its slot.
pub const STALLED_DROP_US: u64 = 60_000_000;
/// Connections beyond [`MAX_CLIENTS`] that still get a 503 (and a clean close) before the
/// engine stops accepting.
const BUSY_SLOTS: usize = 64;
/// How long a closing connection may keep sending before it is dropped.
const DRAIN_US: u64 = 2_000_000;
/// The kernel send buffer of a `/stream.ts` connection (the kernel doubles it).
const STREAM_SNDBUF: usize = 128 * 1024;
/// Played chunks waiting for the engine's thread; past this the newest are dropped (counted).
const FEED_CAPACITY: usize = 4096;
/// After the stream's end, clients get this long to take what is queued.
const LINGER_US: u64 = 5_000_000;
/// A playlist asked for before the first segment is complete waits this long for it.
const FIRST_SEGMENT_WAIT_US: u64 = 10_000_000;

enum Feed {
    Chunk(Arc<Chunk>),
    Stats(serde_json::Value),
    /// The stream ended (its signed end record): responses end cleanly, playlists say so.
    End {
        linger_us: u64,
    },
    /// The node is stopping without an end (a signal): connections are cut, so a player or
    /// recorder sees an interrupted stream, not a finished broadcast.
    Abort,
}

/// What the engine counted, reported in `/stats.json` and `--stats-json` under `http`.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct HttpCounters {
    pub clients_now: usize,
    pub clients_total: u64,
    pub stream_clients: usize,
    pub requests: u64,
    pub refused: u64,
    pub busy: u64,
    /// Times a slow `/stream.ts` client was moved to the next keyframe.
    pub resyncs: u64,
    pub stalled_dropped: u64,
    pub timed_out: u64,
    /// Played chunks the engine's thread could not take in time.
    pub feed_dropped: u64,
}

/// The node side's handle: feeds the engine, never blocks.
pub struct HttpServer {
    tx: SyncSender<Feed>,
    waker: Arc<Waker>,
    handle: Option<JoinHandle<HttpCounters>>,
    addr: SocketAddr,
    feed_dropped: u64,
}

impl HttpServer {
    pub fn start(addr: SocketAddr) -> Result<HttpServer> {
        let std_listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("cannot listen for HTTP on {addr}"))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let mut listener = TcpListener::from_std(std_listener);
        let poll = Poll::new().context("cannot create poll")?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (tx, rx) = mpsc::sync_channel(FEED_CAPACITY);
        let engine = Engine {
            poll,
            listener,
            rx,
            clients: HashMap::new(),
            next_token: 2,
            live: Live::new(),
            stats: serde_json::Value::Null,
            counters: HttpCounters::default(),
            end_by: None,
            last_hls_at: 0,
        };
        let handle = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || engine.run())
            .context("cannot start the HTTP thread")?;
        Ok(HttpServer {
            tx,
            waker,
            handle: Some(handle),
            addr,
            feed_dropped: 0,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn send(&mut self, feed: Feed) {
        match self.tx.try_send(feed) {
            Ok(()) => {
                let _ = self.waker.wake();
            }
            Err(TrySendError::Full(Feed::Chunk(_))) => self.feed_dropped += 1,
            Err(_) => {}
        }
    }

    /// A chunk in playout order (what stdout gets).
    pub fn play(&mut self, chunk: Arc<Chunk>) {
        self.send(Feed::Chunk(chunk));
    }

    /// The node's figures, served as `/stats.json`.
    pub fn stats(&mut self, report: serde_json::Value) {
        self.send(Feed::Stats(report));
    }

    /// Stops the engine. At the stream's end (`ended`), clients get up to 5 s to take what is
    /// queued and HLS players to fetch the last segment; otherwise connections are cut.
    /// Returns the engine's figures.
    pub fn finish(mut self, ended: bool) -> HttpCounters {
        let end = match ended {
            true => Feed::End {
                linger_us: LINGER_US,
            },
            false => Feed::Abort,
        };
        // The channel may be full of chunks: wait for room, the engine drains it steadily.
        let _ = self.tx.send(end);
        let _ = self.waker.wake();
        let mut counters = self
            .handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        counters.feed_dropped += self.feed_dropped;
        counters
    }
}

struct Engine {
    poll: Poll,
    listener: TcpListener,
    rx: Receiver<Feed>,
    clients: HashMap<Token, Client>,
    next_token: usize,
    live: Live,
    stats: serde_json::Value,
    counters: HttpCounters,
    /// Set at the end of the stream: the engine stops once clients are served or at this time.
    end_by: Option<u64>,
    /// The last playlist, segment or part request.
    last_hls_at: u64,
}

impl Engine {
    fn run(mut self) -> HttpCounters {
        let mut events = Events::with_capacity(256);
        loop {
            let now = cli::mono_micros();
            if let Some(by) = self.end_by {
                // HLS players poll: one that asked lately will come back for the last
                // segment and the ENDLIST, so the engine waits out the linger for it.
                let polled = now < self.last_hls_at + LINGER_US;
                let served = self.clients.values().all(|c| c.idle_and_flushed()) && !polled;
                if now >= by || served {
                    break;
                }
            }
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(250)))
            {
                if e.kind() != io::ErrorKind::Interrupted {
                    cli::warn(format!("http: poll failed: {e}; the HTTP engine stops"));
                    break;
                }
            }
            let now = cli::mono_micros();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKE => {}
                    token => self.serve(token, now),
                }
            }
            // Feed after client events so a burst of chunks is written in one pass.
            self.take_feed(now);
            self.housekeeping(now);
        }
        self.counters.clients_now = self.clients.len();
        self.counters
    }

    fn take_feed(&mut self, now: u64) {
        let mut moved = false;
        while let Ok(feed) = self.rx.try_recv() {
            match feed {
                Feed::Chunk(chunk) => {
                    moved |= self.live.push(chunk.clone());
                    self.queue_for_streams(&chunk);
                }
                Feed::Stats(v) => self.stats = v,
                Feed::Abort => {
                    let tokens: Vec<Token> = self.clients.keys().copied().collect();
                    for token in tokens {
                        self.drop_client(token);
                    }
                    self.end_by = Some(now);
                }
                Feed::End { linger_us } => {
                    self.live.end();
                    moved = true;
                    self.end_by = Some(now + linger_us);
                    for c in self.clients.values_mut() {
                        if let Mode::Stream { chunked, .. } = c.mode {
                            if chunked {
                                c.queue(Piece::Static(b"0\r\n\r\n"));
                            }
                            c.mode = Mode::Closing;
                        }
                    }
                }
            }
        }
        if moved {
            self.wake_blocked(now);
        }
        let tokens: Vec<Token> = self.clients.keys().copied().collect();
        for token in tokens {
            self.write(token, now);
        }
    }

    fn queue_for_streams(&mut self, chunk: &Arc<Chunk>) {
        for c in self.clients.values_mut() {
            let Mode::Stream { chunked, resync } = c.mode else {
                continue;
            };
            if resync && !chunk.is_keyframe() {
                continue;
            }
            c.queue(if chunked {
                Piece::framed(chunk.clone())
            } else {
                Piece::Payload(chunk.clone())
            });
            // Too far behind: cut to the next keyframe rather than hold more for it. When
            // the chunk that overflowed is a keyframe, the client resumes at it.
            let overflow = c.queued_bytes() > STREAM_QUEUE_BYTES && c.drop_queue();
            let mut resync = false;
            if overflow {
                self.counters.resyncs += 1;
                resync = !chunk.is_keyframe();
                if chunk.is_keyframe() {
                    c.queue(if chunked {
                        Piece::framed(chunk.clone())
                    } else {
                        Piece::Payload(chunk.clone())
                    });
                }
            }
            c.mode = Mode::Stream { chunked, resync };
        }
    }

    fn accept(&mut self, now: u64) {
        loop {
            match self.listener.accept() {
                Ok((mut sock, _)) => {
                    let busy = self.clients.len() >= MAX_CLIENTS || self.end_by.is_some();
                    if busy && self.clients.len() >= MAX_CLIENTS + BUSY_SLOTS {
                        // Past even the room for refusals: the kernel resets it.
                        self.counters.busy += 1;
                        continue;
                    }
                    let _ = sock.set_nodelay(true);
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    if self
                        .poll
                        .registry()
                        .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let mut client = Client::new(sock, now);
                    if busy {
                        self.counters.busy += 1;
                        let body = "too many clients, or the stream is over\n";
                        client.queue(Piece::Owned(plain(503, "Service Unavailable", body, true)));
                        client.mode = Mode::Closing;
                    } else {
                        self.counters.clients_total += 1;
                    }
                    self.clients.insert(token, client);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors or a connection reset before accept: try again later.
                Err(_) => return,
            }
        }
    }

    /// A socket event: read, answer complete requests, write.
    fn serve(&mut self, token: Token, now: u64) {
        if let Some(c) = self.clients.get_mut(&token) {
            c.read();
        }
        self.answer(token, now);
        self.write(token, now);
    }

    /// Writes what is queued; moves a finished reply on to the next request or closes.
    fn write(&mut self, token: Token, now: u64) {
        loop {
            let Some(c) = self.clients.get_mut(&token) else {
                return;
            };
            let empty = c.flush(now);
            if c.gone {
                self.drop_client(token);
                return;
            }
            match c.mode {
                Mode::Closing if empty => c.start_draining(now + DRAIN_US),
                Mode::Reply { close } if empty => {
                    if close {
                        c.start_draining(now + DRAIN_US);
                        continue;
                    }
                    c.mode = Mode::Idle;
                    c.since = now;
                    // A pipelined request may be waiting in the buffer.
                    self.answer(token, now);
                }
                Mode::Idle if c.eof => {
                    // Half-closed with no complete request left: nothing more will come.
                    self.drop_client(token);
                    return;
                }
                Mode::Draining { until } if c.eof || now >= until => {
                    self.drop_client(token);
                    return;
                }
                _ => return,
            }
        }
    }

    fn drop_client(&mut self, token: Token) {
        if let Some(mut c) = self.clients.remove(&token) {
            let _ = self.poll.registry().deregister(&mut c.sock);
        }
    }

    /// Parses and answers the request in an idle client's buffer, if complete.
    fn answer(&mut self, token: Token, now: u64) {
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        if !matches!(c.mode, Mode::Idle) || c.gone || c.inbuf.is_empty() {
            return;
        }
        match request::parse(&c.inbuf) {
            Parsed::Partial => {}
            Parsed::Refused(why) => {
                self.counters.refused += 1;
                c.inbuf.clear();
                let (code, reason) = why.status();
                // Out of step with the client (a 405 may carry a body we did not read).
                let close = true;
                let (body, extra) = match why {
                    Refusal::MethodNotAllowed => ("only GET and HEAD\n", "Allow: GET, HEAD\r\n"),
                    Refusal::NotFound => ("not found\n", ""),
                    Refusal::BadRequest => ("malformed request\n", ""),
                    Refusal::HeadTooLarge => ("request head too large\n", ""),
                };
                c.queue(Piece::Owned(plain_with(code, reason, body, close, extra)));
                c.mode = Mode::Reply { close };
            }
            Parsed::Unroutable { why, len, close } => {
                self.counters.refused += 1;
                c.inbuf.drain(..len.min(c.inbuf.len()));
                let (code, reason) = why.status();
                let body = match why {
                    Refusal::NotFound => "not found\n",
                    _ => "malformed query\n",
                };
                c.queue(Piece::Owned(plain(code, reason, body, close)));
                c.mode = Mode::Reply { close };
            }
            Parsed::Done(req, len) => {
                self.counters.requests += 1;
                if matches!(
                    req.route,
                    Route::Playlist { .. } | Route::Segment(_) | Route::Part(..)
                ) {
                    self.last_hls_at = now;
                }
                c.inbuf.drain(..len.min(c.inbuf.len()));
                self.respond(token, req, now);
            }
        }
    }

    fn respond(&mut self, token: Token, req: Request, now: u64) {
        let stats = (req.route == Route::Stats).then(|| self.stats_json());
        let live = &self.live;
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        let (close, head_only) = (req.close, req.head_only);
        let reply = |c: &mut Client, code: u16, reason: &str, kind: &str, body: Body| {
            let len = body.len();
            let mut head = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {len}\r\n\
                 Cache-Control: no-cache\r\nAccess-Control-Allow-Origin: *\r\nConnection: {}\r\n\r\n",
                if close { "close" } else { "keep-alive" }
            )
            .into_bytes();
            c.queue(Piece::Owned(std::mem::take(&mut head)));
            if !head_only {
                body.queue_into(c);
            }
            c.mode = Mode::Reply { close };
        };
        match &req.route {
            Route::Favicon => {
                c.queue(Piece::Owned(plain(204, "No Content", "", close)));
                c.mode = Mode::Reply { close };
            }
            Route::Page => reply(
                c,
                200,
                "OK",
                "text/html; charset=utf-8",
                Body::Static(page::INDEX),
            ),
            Route::Script => reply(c, 200, "OK", "text/javascript", Body::Static(page::HLS_JS)),
            Route::Licence => reply(
                c,
                200,
                "OK",
                "text/plain",
                Body::Static(page::HLS_JS_LICENCE),
            ),
            Route::Stats => reply(
                c,
                200,
                "OK",
                "application/json",
                Body::Owned(stats.unwrap_or_default()),
            ),
            Route::Stream => {
                let head =
                    format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nCache-Control: no-cache\r\n\
                     Access-Control-Allow-Origin: *\r\n{}Connection: close\r\n\r\n",
                    if req.http10 { "" } else { "Transfer-Encoding: chunked\r\n" }
                );
                c.queue(Piece::Owned(head.into_bytes()));
                if req.head_only || live.ended() {
                    if !req.head_only && !req.http10 {
                        c.queue(Piece::Static(b"0\r\n\r\n"));
                    }
                    c.mode = Mode::Closing;
                    return;
                }
                // A small kernel buffer: a slow player's backlog stays in our queue, where it
                // is cut at a keyframe, instead of megabytes of old pictures in the kernel
                // (loopback autotunes a send buffer to 4 MB, 20 s of a 1.5 Mb/s stream).
                let _ = socket2::SockRef::from(&c.sock).set_send_buffer_size(STREAM_SNDBUF);
                let chunked = !req.http10;
                let mut resync = true;
                for chunk in live.from_newest_keyframe() {
                    resync = false;
                    c.queue(if chunked {
                        Piece::framed(chunk.clone())
                    } else {
                        Piece::Payload(chunk.clone())
                    });
                }
                c.mode = Mode::Stream { chunked, resync };
            }
            Route::Playlist { block } => {
                if !live.has_complete() && !live.ended() {
                    // Nothing to list before one GOP is complete: wait for it, as a
                    // blocking reload would, rather than hand players an empty playlist.
                    c.mode = Mode::Blocked {
                        request: req,
                        until: now + FIRST_SEGMENT_WAIT_US,
                    };
                    return;
                }
                if let Some((msn, part)) = *block {
                    if msn > live.edge().msn + 2 {
                        return reply(
                            c,
                            400,
                            "Bad Request",
                            "text/plain",
                            Body::Static(b"_HLS_msn is too far ahead\n"),
                        );
                    }
                    if !live.has(msn, part) {
                        c.mode = Mode::Blocked {
                            request: req,
                            until: now + block_limit(live),
                        };
                        return;
                    }
                }
                let text = live.playlist().into_bytes();
                reply(
                    c,
                    200,
                    "OK",
                    "application/vnd.apple.mpegurl",
                    Body::Owned(text),
                );
            }
            Route::Segment(msn) => match live.segment_chunks(*msn) {
                Some(chunks) => reply(c, 200, "OK", "video/mp2t", Body::Chunks(chunks.to_vec())),
                None if live.has(*msn, None) || *msn > live.edge().msn => reply(
                    c,
                    404,
                    "Not Found",
                    "text/plain",
                    Body::Static(b"no such segment\n"),
                ),
                None => {
                    c.mode = Mode::Blocked {
                        request: req,
                        until: now + block_limit(live),
                    }
                }
            },
            Route::Part(msn, part) => {
                match live.part(*msn, *part) {
                    Some(slices) => reply(c, 200, "OK", "video/mp2t", Body::Slices(slices)),
                    // The preload hint's part: answer when it closes.
                    None if live.edge()
                        == (Edge {
                            msn: *msn,
                            parts: *part,
                        })
                        && !live.ended() =>
                    {
                        c.mode = Mode::Blocked {
                            request: req,
                            until: now + block_limit(live),
                        }
                    }
                    None => reply(
                        c,
                        404,
                        "Not Found",
                        "text/plain",
                        Body::Static(b"no such part\n"),
                    ),
                }
            }
        }
    }

    /// The node's last report with the engine's own figures under `http`.
    fn stats_json(&self) -> Vec<u8> {
        let mut v = self.stats.clone();
        let counters = HttpCounters {
            clients_now: self.clients.len(),
            stream_clients: self
                .clients
                .values()
                .filter(|c| matches!(c.mode, Mode::Stream { .. }))
                .count(),
            ..self.counters
        };
        if let (serde_json::Value::Object(map), Ok(h)) = (&mut v, serde_json::to_value(counters)) {
            map.insert("http".into(), h);
        }
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// The live edge moved: answer the requests that were waiting for it.
    fn wake_blocked(&mut self, now: u64) {
        let ready: Vec<(Token, Request)> = self
            .clients
            .iter()
            .filter_map(|(t, c)| match &c.mode {
                Mode::Blocked { request, .. } if self.ready(request) => Some((*t, request.clone())),
                _ => None,
            })
            .collect();
        for (token, req) in ready {
            if let Some(c) = self.clients.get_mut(&token) {
                c.mode = Mode::Idle;
            }
            self.respond(token, req, now);
        }
    }

    fn ready(&self, req: &Request) -> bool {
        if !self.live.has_complete() && !self.live.ended() {
            return false;
        }
        match req.route {
            Route::Playlist {
                block: Some((msn, part)),
            } => self.live.has(msn, part),
            Route::Segment(msn) => self.live.has(msn, None),
            Route::Part(msn, part) => self.live.has(msn, Some(part)),
            _ => true,
        }
    }

    /// Timeouts: slowloris heads, waits that went on too long, stalled stream clients.
    fn housekeeping(&mut self, now: u64) {
        let mut drop = Vec::new();
        let mut expired = Vec::new();
        for (token, c) in self.clients.iter_mut() {
            match &c.mode {
                Mode::Idle if now.saturating_sub(c.since) > HEAD_TIMEOUT_US => {
                    self.counters.timed_out += u64::from(!c.inbuf.is_empty());
                    if c.inbuf.is_empty() {
                        drop.push(*token);
                    } else {
                        c.inbuf.clear();
                        c.queue(Piece::Owned(plain(
                            408,
                            "Request Timeout",
                            "request head too slow\n",
                            true,
                        )));
                        c.mode = Mode::Reply { close: true };
                    }
                }
                Mode::Blocked { until, request } if now >= *until => {
                    expired.push((*token, request.clone()))
                }
                Mode::Stream { .. } | Mode::Closing | Mode::Reply { .. }
                    if !c.flushed() && now.saturating_sub(c.progress_at) > STALLED_DROP_US =>
                {
                    self.counters.stalled_dropped += 1;
                    drop.push(*token);
                }
                _ => {}
            }
        }
        for token in drop {
            self.drop_client(token);
        }
        for (token, req) in expired {
            let Some(c) = self.clients.get_mut(&token) else {
                continue;
            };
            c.mode = Mode::Idle;
            // Waited long enough: a playlist gets the current one, a part or segment a 404.
            match req.route {
                Route::Playlist { .. } if !self.live.has_complete() => {
                    let body = "no complete segment yet: try again\n";
                    let extra = "Retry-After: 1\r\n";
                    let answer = plain_with(503, "Service Unavailable", body, req.close, extra);
                    c.queue(Piece::Owned(answer));
                    c.mode = Mode::Reply { close: req.close };
                }
                Route::Playlist { .. } => {
                    let route = Route::Playlist { block: None };
                    self.respond(token, Request { route, ..req }, now);
                }
                _ => {
                    c.queue(Piece::Owned(plain(
                        404,
                        "Not Found",
                        "not there in time\n",
                        req.close,
                    )));
                    c.mode = Mode::Reply { close: req.close };
                }
            }
        }
        let tokens: Vec<Token> = self.clients.keys().copied().collect();
        for token in tokens {
            self.write(token, now);
        }
    }
}

/// How long a blocking request may wait: three target durations, as the LL-HLS rules allow.
fn block_limit(live: &Live) -> u64 {
    3 * live.target_us().max(PART_TARGET_US)
}

/// A response body, shared where it can be.
enum Body {
    Static(&'static [u8]),
    Owned(Vec<u8>),
    Chunks(Vec<Arc<Chunk>>),
    Slices(Vec<Slice>),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Static(b) => b.len(),
            Body::Owned(b) => b.len(),
            Body::Chunks(cs) => cs.iter().map(|c| c.payload.len()).sum(),
            Body::Slices(ss) => ss.iter().map(|(_, r)| r.len()).sum(),
        }
    }

    fn queue_into(self, c: &mut Client) {
        match self {
            Body::Static(b) => c.queue(Piece::Static(b)),
            Body::Owned(b) => c.queue(Piece::Owned(b)),
            Body::Chunks(cs) => cs.into_iter().for_each(|ch| c.queue(Piece::Payload(ch))),
            Body::Slices(ss) => ss
                .into_iter()
                .for_each(|(chunk, range)| c.queue(Piece::Slice(chunk, range))),
        }
    }
}

fn plain(code: u16, reason: &str, body: &str, close: bool) -> Vec<u8> {
    plain_with(code, reason, body, close, "")
}

fn plain_with(code: u16, reason: &str, body: &str, close: bool, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}\
         Connection: {}\r\n\r\n{body}",
        body.len(),
        if close { "close" } else { "keep-alive" }
    )
    .into_bytes()
}
