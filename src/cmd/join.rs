//! bl-join: one or more chunk streams → verified, deduplicated, ordered MPEG-TS (or chunks).

use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::cmd::cli;
use crate::media::chunk::{self, Chunk, Rejection};
use crate::media::frame::{self, FrameItem, FrameReader};
use crate::media::identity::StreamId;
use crate::media::join::{JoinEvent, Joiner};
use crate::net::input;

#[derive(Parser, Debug)]
#[command(
    name = "bl-join",
    version,
    about = "Verify, merge and reorder chunk streams; write MPEG-TS (or chunks) to stdout",
    after_help = "Examples:\n  bl-join --from-start < talk.chunks > talk.ts\n  bl-join --id ID feed1.chunks feed2.chunks | mpv -"
)]
pub struct Args {
    /// Chunk streams to merge: files, FIFOs, or - for stdin (the default).
    #[arg(value_name = "INPUT", default_value = "-")]
    pub inputs: Vec<PathBuf>,
    /// Expected stream id: every chunk must be signed by this stream's key.
    #[arg(long, value_name = "STREAM_ID")]
    pub id: Option<StreamId>,
    /// Most chunks held back to reorder and merge inputs.
    #[arg(long, value_name = "CHUNKS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub window: u64,
    /// Longest a chunk waits for a missing earlier one before that one is skipped.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub latency: u64,
    /// Start with the first chunk instead of the first keyframe.
    #[arg(long)]
    pub from_start: bool,
    /// Write the merged chunk stream instead of MPEG-TS.
    #[arg(long)]
    pub chunks: bool,
    /// No warnings or progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

enum Message {
    Header {
        input: usize,
        stream: StreamId,
    },
    Chunk {
        input: usize,
        chunk: Chunk,
    },
    Rejected {
        input: usize,
        offset: u64,
        seq: u64,
        why: Rejection,
    },
    Corrupt {
        input: usize,
        offset: u64,
        reason: String,
    },
    End {
        input: usize,
    },
    Failed {
        input: usize,
        error: String,
    },
    Signal,
}

/// How far readers may run ahead, published by the loop (see `Joiner::horizon`).
#[derive(Default)]
struct Horizon {
    seq: Mutex<u64>,
    moved: Condvar,
}

impl Horizon {
    fn set(&self, seq: u64) {
        if let Ok(mut current) = self.seq.lock() {
            if *current != seq {
                *current = seq;
                self.moved.notify_all();
            }
        }
    }

    /// Waits until `seq` is within the horizon. Wakes periodically so a loop that went away
    /// (channel closed) is noticed by the caller's next send.
    fn wait_for(&self, seq: u64) {
        let Ok(mut current) = self.seq.lock() else {
            return;
        };
        while seq > *current {
            match self.moved.wait_timeout(current, Duration::from_millis(50)) {
                Ok((guard, _)) => current = guard,
                Err(_) => return,
            }
        }
    }
}

/// Most chunks verified together; batch ed25519 verification is about twice as fast.
const VERIFY_BATCH: usize = 64;
/// How long inputs may stay silent before bl-join says which it is waiting for.
const WAITING_SAID_AFTER_US: u64 = 2_000_000;

fn spawn_reader(
    index: usize,
    name: String,
    path: PathBuf,
    expected: Option<StreamId>,
    tx: mpsc::SyncSender<Message>,
    horizon: Arc<Horizon>,
) -> Result<()> {
    std::thread::Builder::new()
        .name(format!("input-{index}"))
        .spawn(move || {
            let fail = |error: String| {
                let _ = tx.send(Message::Failed {
                    input: index,
                    error: format!("{name}: {error}"),
                });
            };
            // Opened here, not on the main thread: opening a FIFO blocks until a writer opens
            // it, and the main thread must stay free to answer SIGINT and SIGTERM (it sat in
            // open() through both until a writer came).
            let source = match input::open(&path) {
                Ok(source) => source,
                Err(e) => {
                    let _ = tx.send(Message::Failed {
                        input: index,
                        error: format!("{e:#}"),
                    });
                    return;
                }
            };
            let mut reader =
                match FrameReader::new(BufReader::with_capacity(input::READ_BLOCK, source)) {
                    Ok(r) => r,
                    Err(e) => return fail(format!("{e:#}")),
                };
            let stream = reader.stream();
            if tx
                .send(Message::Header {
                    input: index,
                    stream,
                })
                .is_err()
            {
                return;
            }
            let key_id = expected.unwrap_or(stream);
            let Ok(key) = key_id.verifying_key() else {
                return fail(format!("stream id {key_id} is not a valid key"));
            };
            let mut batch: Vec<(u64, Chunk)> = Vec::with_capacity(VERIFY_BATCH);
            loop {
                // Some(Ok(())) after a frame, Some(Err) on a fatal error, None at the end.
                let outcome = match reader.next_item() {
                    Ok(Some(FrameItem::Chunk { offset, chunk })) => {
                        batch.push((offset, chunk));
                        Some(Ok(()))
                    }
                    Ok(Some(FrameItem::Corrupt { offset, reason })) => {
                        if tx
                            .send(Message::Corrupt {
                                input: index,
                                offset,
                                reason,
                            })
                            .is_err()
                        {
                            return;
                        }
                        Some(Ok(()))
                    }
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                };
                let ended = !matches!(outcome, Some(Ok(())));
                // Verify what we have when no more input is buffered (never wait for a batch
                // to fill on a live stream), when the batch is full, or at the end.
                let more_buffered = !reader.get_ref().buffer().is_empty();
                if !batch.is_empty() && (ended || !more_buffered || batch.len() >= VERIFY_BATCH) {
                    let (offsets, chunks): (Vec<u64>, Vec<Chunk>) = batch.drain(..).unzip();
                    let verdicts = chunk::verify_batch(&chunks, &key_id, &key);
                    for ((offset, chunk), verdict) in offsets.into_iter().zip(chunks).zip(verdicts)
                    {
                        let message = match verdict {
                            Ok(()) => {
                                horizon.wait_for(chunk.seq);
                                Message::Chunk {
                                    input: index,
                                    chunk,
                                }
                            }
                            Err(why) => Message::Rejected {
                                input: index,
                                offset,
                                seq: chunk.seq,
                                why,
                            },
                        };
                        if tx.send(message).is_err() {
                            return;
                        }
                    }
                }
                match outcome {
                    Some(Ok(())) => {}
                    None => {
                        let _ = tx.send(Message::End { input: index });
                        return;
                    }
                    Some(Err(e)) => return fail(format!("{e:#}")),
                }
            }
        })
        .context("cannot start reader thread")?;
    Ok(())
}

#[derive(Default)]
struct Dropped {
    forged: u64,
    corrupt: u64,
}

/// One reader thread per input, and a signal listener, all sending to the returned channel.
fn start_readers(
    args: &Args,
    names: &[String],
    horizon: &Arc<Horizon>,
) -> Result<mpsc::Receiver<Message>> {
    let (tx, rx) = mpsc::sync_channel(1024);
    let signal_tx = tx.clone();
    cli::handle_signals(move || {
        let _ = signal_tx.send(Message::Signal);
    })?;
    for ((index, path), name) in args.inputs.iter().enumerate().zip(names) {
        spawn_reader(
            index,
            name.clone(),
            path.clone(),
            args.id,
            tx.clone(),
            horizon.clone(),
        )?;
    }
    Ok(rx)
}

/// The next message for the loop: `Some(None)` when the joiner's wait or `also_by` (µs) ran
/// out, `None` when every reader is gone.
fn next_message(
    rx: &mpsc::Receiver<Message>,
    joiner: &Joiner,
    also_by: Option<u64>,
    now_us: u64,
) -> Option<Option<Message>> {
    let deadline = match (joiner.poll_timeout(), also_by) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match deadline {
        Some(deadline) => {
            match rx.recv_timeout(Duration::from_micros(deadline.saturating_sub(now_us))) {
                Ok(m) => Some(Some(m)),
                Err(mpsc::RecvTimeoutError::Timeout) => Some(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            }
        }
        None => rx.recv().ok().map(Some),
    }
}

/// An input's header names stream `id`: it must be `--id`'s and every other input's. The first
/// one is written out with `--chunks`.
fn check_header(
    args: &Args,
    names: &[String],
    input: usize,
    id: StreamId,
    stream: &mut Option<StreamId>,
    out: &mut impl Write,
) -> Result<()> {
    let name = names.get(input).map_or("an input", String::as_str);
    if let Some(expected) = args.id {
        if id != expected {
            bail!("{name}: carries stream {id}, not the expected --id {expected}");
        }
    }
    match *stream {
        None => {
            if args.id.is_none() {
                cli::warn(format!(
                    "no --id given: authenticity not checked, trusting the stream's own key {id}"
                ));
            }
            if args.chunks {
                frame::write_header(out, &id).context("cannot write to stdout")?;
            }
            *stream = Some(id);
        }
        Some(first) if first != id => {
            let first_name = names.first().map_or("the first input", String::as_str);
            bail!(
                "{name}: carries stream {id}, but {first_name} carries {first}; inputs of different streams cannot be merged"
            );
        }
        Some(_) => {}
    }
    Ok(())
}

/// Writes what the joiner released, and says what it skipped or dropped.
fn write_events(
    joiner: &mut Joiner,
    out: &mut impl Write,
    chunks: bool,
    names: &[String],
    bytes_out: &mut u64,
) -> Result<()> {
    while let Some(event) = joiner.poll_event() {
        match event {
            JoinEvent::Play(chunk) => {
                *bytes_out += chunk.payload.len() as u64;
                if chunks {
                    frame::write_chunk(out, &chunk)
                } else {
                    out.write_all(&chunk.payload)
                }
                .context("cannot write to stdout")?;
            }
            JoinEvent::Skipped { first, last } => {
                cli::warn(format!("skipped missing chunks {first}..={last}"));
            }
            JoinEvent::Replayed { input, seq } => {
                let name = names.get(input).map_or("an input", String::as_str);
                cli::warn(format!("{name}: dropped replayed chunk seq {seq}"));
            }
            JoinEvent::Late { seq } => cli::warn(format!(
                "dropped chunk seq {seq}: arrived after it was skipped"
            )),
        }
    }
    Ok(())
}

/// The closing line on stderr, when anything was dropped or skipped.
fn say_done(joiner: &Joiner, dropped: &Dropped) {
    let stats = joiner.stats();
    if dropped.forged + dropped.corrupt + stats.replayed + stats.late + stats.skipped > 0 {
        cli::warn(format!(
            "done: {} chunks written; dropped {} forged, {} corrupt, {} replayed, {} late; {} missing skipped",
            stats.played, dropped.forged, dropped.corrupt, stats.replayed, stats.late, stats.skipped
        ));
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    cli::set_quiet(args.quiet);
    let names: Vec<String> = args
        .inputs
        .iter()
        .map(|p| match p.as_os_str() == "-" {
            true => "stdin".to_string(),
            false => p.display().to_string(),
        })
        .collect();
    if args.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        bail!("stdin (-) given more than once");
    }
    let horizon = Arc::new(Horizon::default());
    horizon.set(u64::MAX);
    let rx = start_readers(&args, &names, &horizon)?;

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut joiner = Joiner::new(
        args.inputs.len(),
        args.window,
        args.latency.saturating_mul(1000),
        args.from_start,
    );
    let mut stream: Option<StreamId> = None;
    let mut dropped = Dropped::default();
    let progress = cli::spinner(cli::progress_enabled(args.quiet));
    let clock = Instant::now();
    let now_us = || clock.elapsed().as_micros() as u64;
    let mut bytes_out: u64 = 0;
    let mut has_header = vec![false; args.inputs.len()];

    // Inputs that have not said which stream they carry by then are named on stderr, once: a
    // FIFO nobody writes to, or a pipe whose writer has not started.
    let mut say_waiting_at = Some(WAITING_SAID_AFTER_US);
    while !joiner.is_finished() {
        let Some(message) = next_message(&rx, &joiner, say_waiting_at, now_us()) else {
            break;
        };
        match message {
            None => joiner.handle_timeout(now_us()),
            Some(Message::Signal) => {
                out.flush().context("cannot write to stdout")?;
                progress.finish_and_clear();
                return Ok(cli::received_signal()
                    .map_or(ExitCode::from(cli::EXIT_RUNTIME), cli::exit_code_for_signal));
            }
            Some(Message::Header { input, stream: id }) => {
                has_header[input] = true;
                check_header(&args, &names, input, id, &mut stream, &mut out)?;
            }
            Some(Message::Chunk { input, chunk }) => joiner.handle_chunk(now_us(), input, chunk),
            Some(Message::Rejected {
                input,
                offset,
                seq,
                why,
            }) => {
                dropped.forged += 1;
                cli::warn(format!(
                    "{}: dropped chunk seq {seq} at byte {offset}: {why}",
                    names[input]
                ));
            }
            Some(Message::Corrupt {
                input,
                offset,
                reason,
            }) => {
                dropped.corrupt += 1;
                cli::warn(format!(
                    "{}: dropped corrupt frame at byte {offset}: {reason}",
                    names[input]
                ));
            }
            Some(Message::End { input }) => joiner.handle_end(now_us(), input),
            Some(Message::Failed { input, error }) => {
                // An input that is not a chunk stream at all is a usage mistake; one that breaks
                // midway ends like an EOF for merging, and the others carry on.
                if !has_header[input] {
                    bail!(error);
                }
                cli::warn(error);
                joiner.handle_end(now_us(), input);
            }
        }
        // After the message, so a header that just came is counted.
        if say_waiting_at.is_some_and(|at| now_us() >= at) {
            say_waiting_at = None;
            let waiting: Vec<&str> = names
                .iter()
                .zip(&has_header)
                .filter(|(_, has)| !**has)
                .map(|(name, _)| name.as_str())
                .collect();
            if !waiting.is_empty() {
                cli::warn(format!("waiting for input on {}", waiting.join(", ")));
            }
        }
        write_events(&mut joiner, &mut out, args.chunks, &names, &mut bytes_out)?;
        out.flush().context("cannot write to stdout")?;
        horizon.set(joiner.horizon());
        let stats = joiner.stats();
        progress.set_message(format!(
            "{} chunks, {:.1} MB out, {} forged, {} skipped",
            stats.played,
            bytes_out as f64 / 1e6,
            dropped.forged,
            stats.skipped
        ));
    }
    progress.finish_and_clear();
    say_done(&joiner, &dropped);
    if stream.is_none() {
        bail!("no input delivered a chunk stream header");
    }
    Ok(ExitCode::SUCCESS)
}
