//! The mio driver: runs a [`Node`] on a real UDP socket, stdin and stdout.
//!
//! One `Poll` holds the UDP socket and a `Waker`. Helper threads own the blocking ends (stdin
//! reader, stdout writer, signal listener) and talk to the loop over a channel plus the waker,
//! so the loop itself never blocks on a slow player or a regular file. The socket is read until
//! `WouldBlock` on every wake-up, and what the core queued for each datagram (or input chunk)
//! is sent and played before the next is taken; all timers live in the core.

use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::cmd::cli;
use crate::core::node::{Event, Finish, Node, Output, Transmit};
use crate::discover::{Discovery, DiscoveryOptions};
use crate::media::chunk::Chunk;
use crate::media::frame::{self, FrameItem, FrameReader};
use crate::proto::wire;
use crate::serve::HttpServer;

use super::wake_lag::WakeLag;

const SOCKET: Token = Token(0);
const WAKE: Token = Token(1);
/// Chunks queued for a slow player before new ones are dropped (~1 MB, a few seconds of HD).
pub const OUTPUT_QUEUE_CHUNKS: usize = 1024;

/// What helper threads tell the loop.
enum Control {
    Chunk(Chunk),
    InputEnd,
    /// Addresses a tracker or the DHT gave.
    Found(Vec<SocketAddr>),
    InputFailed(String),
    OutputClosed,
    OutputFailed(String),
    Signal,
}

/// What a peer writes to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    Ts,
    Chunks,
}

pub struct DriverOptions {
    pub stats_json: bool,
    /// Trackers and the DHT to announce to and find peers through.
    pub discovery: DiscoveryOptions,
    /// Serve HTTP players here too (`--http`); a closed stdout then does not end the node.
    pub http: Option<SocketAddr>,
    pub stats_interval: Option<Duration>,
    /// Seed: pace chunks read from stdin by their capture times.
    pub pace: bool,
}

/// Binds a UDP socket with room for bursts (a 4 MB receive buffer where the OS allows).
pub fn bind(addr: SocketAddr) -> Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .with_context(|| format!("cannot create a UDP socket for {addr}"))?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(socket.into())
}

/// The IP our datagrams to `to` leave from, when `local` is bound to all interfaces (a
/// connected throwaway socket asks the kernel's routing; nothing is sent).
pub fn route_ip(local: SocketAddr, to: SocketAddr) -> Option<std::net::IpAddr> {
    if !local.ip().is_unspecified() {
        return Some(local.ip());
    }
    let probe = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).ok()?;
    probe.connect(to).ok()?;
    probe.local_addr().ok().map(|a| a.ip())
}

fn spawn_chunk_reader<R: Read + Send + 'static>(
    mut reader: FrameReader<R>,
    pace: bool,
    tx: mpsc::Sender<Control>,
    waker: Arc<Waker>,
) -> Result<()> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let send = |c: Control| tx.send(c).is_ok() && waker.wake().is_ok();
            // Pacing: chunk n goes out when its capture time, relative to the first chunk,
            // has elapsed on our clock.
            let mut origin: Option<(u64, u64)> = None;
            loop {
                match reader.next_item() {
                    Ok(Some(FrameItem::Chunk { chunk, .. })) => {
                        if pace {
                            let now = cli::mono_micros();
                            let (wall0, capture0) = *origin.get_or_insert((now, chunk.capture_us));
                            let due = wall0 + chunk.capture_us.saturating_sub(capture0);
                            if due > now {
                                std::thread::sleep(Duration::from_micros(
                                    (due - now).min(10_000_000),
                                ));
                            }
                        }
                        if !send(Control::Chunk(chunk)) {
                            return;
                        }
                    }
                    Ok(Some(FrameItem::Corrupt { offset, reason })) => {
                        cli::warn(format!(
                            "stdin: dropped corrupt frame at byte {offset}: {reason}"
                        ));
                    }
                    Ok(None) => {
                        send(Control::InputEnd);
                        return;
                    }
                    Err(e) => {
                        send(Control::InputFailed(format!("stdin: {e:#}")));
                        return;
                    }
                }
            }
        })
        .context("cannot start stdin thread")?;
    Ok(())
}

fn spawn_writer(
    rx: mpsc::Receiver<Vec<u8>>,
    tx: mpsc::Sender<Control>,
    waker: Arc<Waker>,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("stdout".into())
        .spawn(move || {
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(256 * 1024, stdout.lock());
            let report = |result: io::Result<()>| -> bool {
                match result {
                    Ok(()) => true,
                    Err(e) => {
                        let c = if e.kind() == io::ErrorKind::BrokenPipe {
                            Control::OutputClosed
                        } else {
                            Control::OutputFailed(format!("cannot write to stdout: {e}"))
                        };
                        let _ = tx.send(c);
                        let _ = waker.wake();
                        false
                    }
                }
            };
            while let Ok(bytes) = rx.recv() {
                if !report(out.write_all(&bytes)) {
                    return;
                }
                // Flush whenever the queue is momentarily empty: low latency, few syscalls.
                loop {
                    match rx.try_recv() {
                        Ok(more) => {
                            if !report(out.write_all(&more)) {
                                return;
                            }
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            report(out.flush());
                            return;
                        }
                    }
                }
                if !report(out.flush()) {
                    return;
                }
            }
            report(out.flush());
        })
        .context("cannot start stdout thread")
}

fn print_stats(node: &Node, lag: &WakeLag, http: Option<crate::serve::HttpCounters>) {
    let mut report = node.report(cli::mono_micros());
    report.latency_histogram_ms = node
        .stats()
        .latency_us
        .buckets()
        .into_iter()
        .map(|(us, n)| (us as f64 / 1000.0, n))
        .collect();
    lag.fill(&mut report);
    let json = match http {
        None => serde_json::to_string(&report),
        Some(h) => serde_json::to_value(&report).and_then(|mut v| {
            if let serde_json::Value::Object(map) = &mut v {
                map.insert("http".into(), serde_json::to_value(h)?);
            }
            serde_json::to_string(&v)
        }),
    };
    match json {
        Ok(json) => eprintln!("{json}"),
        Err(e) => cli::warn(format!("cannot encode stats: {e}")),
    }
}

/// The loop's `Poll`, with the socket (non-blocking) and a waker for the helper threads.
fn register(socket: UdpSocket) -> Result<(Poll, Arc<Waker>, mio::net::UdpSocket)> {
    let poll = Poll::new().context("cannot create poll")?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE).context("cannot create waker")?);
    socket
        .set_nonblocking(true)
        .context("cannot make the socket non-blocking")?;
    let mut socket = mio::net::UdpSocket::from_std(socket);
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)
        .context("cannot register socket")?;
    Ok((poll, waker, socket))
}

/// Runs `node` until it finishes, a signal arrives, or the output closes.
/// `input`: the seed's chunk stream. `output`: the peer's stdout format.
pub fn run<R: Read + Send + 'static>(
    mut node: Node,
    socket: UdpSocket,
    input: Option<FrameReader<R>>,
    output: Option<OutputMode>,
    opts: DriverOptions,
) -> Result<ExitCode> {
    let (mut poll, waker, socket) = register(socket)?;
    node.set_local_addr(socket.local_addr().context("socket has no address")?);

    let (tx, rx) = mpsc::channel::<Control>();
    {
        let tx = tx.clone();
        let waker = waker.clone();
        cli::handle_signals(move || {
            let _ = tx.send(Control::Signal);
            let _ = waker.wake();
        })?;
    }
    if let Some(reader) = input {
        spawn_chunk_reader(reader, opts.pace, tx.clone(), waker.clone())?;
    }
    let http = match opts.http {
        Some(addr) => {
            let server = HttpServer::start(addr)?;
            let a = server.local_addr();
            cli::notice(format!(
                "serving players on http://{a}/ (page), http://{a}/stream.ts, http://{a}/live.m3u8"
            ));
            if a.ip().is_unspecified() {
                cli::notice(format!(
                    "on every interface: other devices use this machine's address with port {} \
                     (this machine: http://127.0.0.1:{}/)",
                    a.port(),
                    a.port()
                ));
            }
            Some(server)
        }
        None => None,
    };
    let mut next_http_stats = 0u64;
    let neighbours = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let discovery = if opts.discovery.is_empty() {
        None
    } else {
        let tx = tx.clone();
        let waker = waker.clone();
        let port = socket.local_addr().map(|a| a.port()).unwrap_or_default();
        Some(Discovery::start(
            opts.discovery.clone(),
            node.stream(),
            port,
            node.rng_seed(),
            node.role() == crate::proto::wire::Role::Peer,
            neighbours.clone(),
            move |found| {
                let _ = tx.send(Control::Found(found));
                let _ = waker.wake();
            },
        )?)
    };
    let (out_tx, writer) = match output {
        Some(mode) => {
            let (out_tx, out_rx) = mpsc::sync_channel::<Vec<u8>>(OUTPUT_QUEUE_CHUNKS);
            if mode == OutputMode::Chunks {
                let mut header = Vec::new();
                frame::write_header(&mut header, &node.stream())?;
                let _ = out_tx.try_send(header);
            }
            (
                Some((out_tx, mode)),
                Some(spawn_writer(out_rx, tx.clone(), waker.clone())?),
            )
        }
        None => (None, None),
    };

    let mut outlets = Outlets {
        http,
        player: out_tx,
        drops_warned: 0,
        finished: None,
    };
    let mut events = Events::with_capacity(256);
    let mut inbox = Inbox::new();
    let mut next_stats = opts
        .stats_interval
        .map(|i| cli::mono_micros() + i.as_micros() as u64);
    let mut lag = WakeLag::default();
    let exit = 'run: loop {
        let now = cli::mono_micros();
        let mut wake_at = node.poll_timeout();
        if let Some(t) = next_stats {
            wake_at = wake_at.min(t);
        }
        // Lateness counts from when the core asked to run again, not from when this wait
        // began: a loop preempted in its work comes back with its timer overdue and waits 0.
        let due = wake_at.min(now + 1_000_000);
        let wait = Duration::from_micros(due.saturating_sub(now));
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e).context("poll failed");
            }
        }
        let now = cli::mono_micros();
        lag.note(due, now);
        node.set_wall_clock(now, cli::unix_micros());
        neighbours.store(
            node.neighbours_bringing_the_stream(now),
            std::sync::atomic::Ordering::Relaxed,
        );
        if events.iter().any(|e| e.token() == SOCKET) {
            receive(&socket, &mut inbox, &mut node, now, &mut outlets)?;
        }
        match take_controls(&rx, &mut node, &socket, &mut outlets, now)? {
            Controls::Continue => {}
            Controls::Exit(exit) => break 'run exit,
            Controls::OutputClosed if outlets.http.is_some() => {
                // HTTP players are still watching: only stdout's player went away.
                cli::notice("stdout closed; still serving HTTP players");
                outlets.player = None;
            }
            Controls::OutputClosed => {
                node.leave();
                break 'run ExitCode::SUCCESS;
            }
        }
        if now >= node.poll_timeout() {
            node.handle_timeout(now);
        }
        outlets.drain(&mut node, &socket)?;
        if let Some(h) = outlets.http.as_mut() {
            if now >= next_http_stats {
                let mut report = node.report(now);
                lag.fill(&mut report);
                if let Ok(v) = serde_json::to_value(report) {
                    h.stats(v);
                }
                next_http_stats = now + 1_000_000;
            }
        }
        if let Some(t) = next_stats {
            if now >= t {
                print_stats(&node, &lag, None);
                next_stats = opts.stats_interval.map(|i| now + i.as_micros() as u64);
            }
        }
        if let Some(how) = outlets.finished.take() {
            break exit_code(how);
        }
    };
    flush_transmits(&mut node, &socket);
    // Let the player have everything that was played before exiting.
    drop(outlets.player.take());
    if let Some(handle) = writer {
        let _ = handle.join();
    }
    // HTTP players get a moment to take the end of a stream that ended; on a signal or an
    // error their connections are cut, so none mistakes it for the end of the broadcast.
    let ended = exit == ExitCode::SUCCESS && cli::received_signal().is_none();
    let http = outlets.http.take().map(|h| h.finish(ended));
    if let Some(d) = discovery {
        d.stop();
    }
    if opts.stats_json {
        print_stats(&node, &lag, http);
    }
    Ok(exit)
}

/// The exit status for how the node's work ended, said on stderr unless it ended well.
fn exit_code(how: Finish) -> ExitCode {
    match how {
        Finish::Done => ExitCode::SUCCESS,
        Finish::EndedBeforeStart => {
            cli::warn("the stream ended before we joined: nothing to play");
            ExitCode::from(cli::EXIT_ENDED_BEFORE_START)
        }
        Finish::GaveUp(why) => {
            cli::warn(format!("giving up: {why}"));
            ExitCode::from(cli::EXIT_GAVE_UP)
        }
    }
}

/// What the helper threads' messages mean for the loop.
enum Controls {
    Continue,
    /// The player on stdout went away.
    OutputClosed,
    /// End the loop with this status (a signal, a failed write), after the node said goodbye.
    Exit(ExitCode),
}

/// Acts on what the helper threads said.
fn take_controls(
    rx: &mpsc::Receiver<Control>,
    node: &mut Node,
    socket: &mio::net::UdpSocket,
    outlets: &mut Outlets,
    now: u64,
) -> Result<Controls> {
    while let Ok(control) = rx.try_recv() {
        match control {
            Control::Chunk(chunk) => {
                if let Some(h) = outlets.http.as_mut() {
                    // The seed previews what it sends, in its input order.
                    h.play(Arc::new(chunk.clone()));
                }
                node.handle_chunk(now, chunk);
                // Each chunk goes out before the next is taken: see `receive`.
                outlets.drain(node, socket)?;
            }
            Control::InputEnd => node.handle_input_end(now),
            Control::Found(addrs) => {
                // Found without a bootstrap address: learn which IP we route from (our LAN
                // address, and whether others see it) from the first one found.
                if node.route_ip().is_none() {
                    let local = socket.local_addr().ok();
                    if let (Some(local), Some(to)) = (local, addrs.first()) {
                        if let Some(ip) = route_ip(local, *to) {
                            node.set_route_ip(ip);
                        }
                    }
                }
                node.add_candidates(now, &addrs)
            }
            Control::InputFailed(e) => {
                cli::warn(format!("{e}; ending the stream"));
                node.handle_input_end(now);
            }
            Control::OutputClosed => return Ok(Controls::OutputClosed),
            Control::OutputFailed(e) => {
                node.leave();
                flush_transmits(node, socket);
                anyhow::bail!(e);
            }
            Control::Signal => {
                node.leave();
                let exit = cli::received_signal()
                    .map_or(ExitCode::from(cli::EXIT_RUNTIME), cli::exit_code_for_signal);
                return Ok(Controls::Exit(exit));
            }
        }
    }
    Ok(Controls::Continue)
}

/// Datagrams read from the socket together, at most [`READ_AHEAD`].
struct Inbox {
    buffers: Vec<Vec<u8>>,
}

/// The most datagrams read before the first is handled. Their chunks' signatures are checked
/// as one batch (`Node::verify_ahead`), which halves the cost per signature from 8 on; a batch
/// of 16 takes ~0.4 ms, the most the first chunk of a burst waits for the others.
const READ_AHEAD: usize = 16;
/// Room for any datagram bl sends (chunks are at most 1,232 bytes, Peers lists less).
const DATAGRAM_ROOM: usize = 2048;

impl Inbox {
    fn new() -> Inbox {
        Inbox {
            buffers: (0..READ_AHEAD).map(|_| vec![0u8; DATAGRAM_ROOM]).collect(),
        }
    }
}

/// Reads the socket until it would block, handing each datagram to the core and sending and
/// playing what it queued before the next is handled. A chunk is forwarded once the few
/// datagrams that came with it are read, not after the whole burst it came in: bl-chunk signs
/// what ffmpeg wrote in one go (up to 50 KB, ~40 chunks, 5 times a second with `-re`), and
/// each hop that read a burst to its end before forwarding any of it added the burst's length
/// to every chunk's latency. What the socket holds at once, up to [`READ_AHEAD`], is read
/// together so that the chunks' signatures are checked as one batch.
fn receive(
    socket: &mio::net::UdpSocket,
    inbox: &mut Inbox,
    node: &mut Node,
    now: u64,
    outlets: &mut Outlets,
) -> Result<()> {
    let mut read: Vec<(SocketAddr, usize)> = Vec::with_capacity(READ_AHEAD);
    loop {
        read.clear();
        let mut blocked = false;
        while let Some(buf) = inbox.buffers.get_mut(read.len()) {
            match socket.recv_from(buf) {
                Ok((n, from)) => read.push((from, n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock, or an ICMP error (a neighbour's port closed): the core's
                // timeouts deal with the neighbour.
                Err(_) => {
                    blocked = true;
                    break;
                }
            }
        }
        let mut datagrams: Vec<(SocketAddr, wire::Message, usize)> = Vec::new();
        for (&(from, n), buf) in read.iter().zip(&inbox.buffers) {
            let bytes = buf.get(..n).unwrap_or_default();
            if let Some(message) = node.decode_datagram(from, bytes) {
                datagrams.push((from, message, n));
            }
        }
        node.verify_ahead(
            datagrams
                .iter()
                .filter_map(|(from, m, _)| Some((*from, m.chunk()?))),
        );
        for (from, message, len) in datagrams {
            node.handle_message(now, from, message, len);
            outlets.drain(node, socket)?;
        }
        if blocked {
            return Ok(());
        }
    }
}

/// Where the core's output goes: datagrams to the socket, played chunks to the player's
/// queue and the HTTP players, and how the node's work ended, for the loop to act on.
struct Outlets {
    http: Option<HttpServer>,
    /// The stdout writer's queue; gone once stdout closed while HTTP players watch.
    player: Option<(mpsc::SyncSender<Vec<u8>>, OutputMode)>,
    drops_warned: u64,
    finished: Option<Finish>,
}

impl Outlets {
    /// Sends and plays everything the core has queued.
    fn drain(&mut self, node: &mut Node, socket: &mio::net::UdpSocket) -> Result<()> {
        loop {
            match node.poll_output() {
                Output::Transmit(t) => send(socket, &t),
                Output::Event(Event::Play(chunk)) => {
                    if let Some(h) = self.http.as_mut() {
                        h.play(chunk.clone());
                    }
                    if let Some((out, mode)) = &self.player {
                        play(node, out, *mode, &chunk, &mut self.drops_warned)?;
                    }
                }
                Output::Event(Event::Warning(w) | Event::Internal(w)) => cli::warn(w),
                Output::Event(Event::Finished(how)) => self.finished = Some(how),
                Output::Timeout(_) => return Ok(()),
            }
        }
    }
}

/// Hands a played chunk to the writer thread; a player that is not keeping up loses it
/// (counted, and said at 1, 2, 4, 8 … drops) rather than stalling the swarm.
fn play(
    node: &mut Node,
    out: &mpsc::SyncSender<Vec<u8>>,
    mode: OutputMode,
    chunk: &Chunk,
    drops_warned: &mut u64,
) -> Result<()> {
    let bytes = match mode {
        OutputMode::Ts => chunk.payload.clone(),
        OutputMode::Chunks => {
            let mut b = Vec::with_capacity(chunk.payload.len() + 100);
            frame::write_chunk(&mut b, chunk)?;
            b
        }
    };
    // Disconnected: the writer found stdout closed and said so (Control::OutputClosed, handled
    // next): not a slow player. Counted as one, `| head` drew six warnings before the notice.
    if let Err(mpsc::TrySendError::Full(_)) = out.try_send(bytes) {
        node.count_output_drop();
        let drops = node.stats().counters.chunks_dropped_output;
        if drops >= *drops_warned * 2 {
            *drops_warned = drops;
            cli::warn(format!(
                "player is not keeping up: {drops} chunks dropped so far"
            ));
        }
    }
    Ok(())
}

/// Sends what the core queued before it left (Goodbyes); events no longer matter then.
fn flush_transmits(node: &mut Node, socket: &mio::net::UdpSocket) {
    loop {
        match node.poll_output() {
            Output::Transmit(t) => send(socket, &t),
            Output::Event(_) => {}
            Output::Timeout(_) => break,
        }
    }
}

fn send(socket: &mio::net::UdpSocket, t: &Transmit) {
    // A full send buffer drops the datagram like the network would; repair recovers.
    // The core sized every message already, so encoding cannot fail here.
    if let Ok(bytes) = wire::encode(&t.message) {
        let _ = socket.send_to(&bytes, t.to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;
    use crate::media::identity::StreamKey;
    use crate::proto::wire::Role;

    /// A full queue is a slow player (counted); a closed one is a writer that found stdout
    /// closed and said so: nothing is counted or warned.
    #[test]
    fn only_a_full_output_queue_counts_as_a_drop() {
        let key = StreamKey::from_seed([9; 32]);
        let mut node = Node::new(Config::new(Role::Peer, key.id()), 0);
        let chunk = Chunk::sign(&key, 0, 0, 0, vec![0x47; 188]);
        let mut warned = 0;
        let (tx, rx) = mpsc::sync_channel(1);
        play(&mut node, &tx, OutputMode::Ts, &chunk, &mut warned).unwrap();
        play(&mut node, &tx, OutputMode::Ts, &chunk, &mut warned).unwrap();
        assert_eq!(node.stats().counters.chunks_dropped_output, 1);
        drop(rx);
        play(&mut node, &tx, OutputMode::Ts, &chunk, &mut warned).unwrap();
        assert_eq!(node.stats().counters.chunks_dropped_output, 1);
    }
}
