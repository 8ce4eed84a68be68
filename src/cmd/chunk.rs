//! bl-chunk: MPEG-TS on stdin → signed chunk stream on stdout.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cmd::cli;
use crate::media::chunk::MAX_PAYLOAD;
use crate::media::chunker::Chunker;
use crate::media::frame;
use crate::media::identity::StreamKey;
use crate::media::ts::{PacketAligner, PACKET_SIZE};
use crate::net::input::{self, ByteEvent};

#[derive(Parser, Debug)]
#[command(
    name = "bl-chunk",
    version,
    about = "Cut MPEG-TS from stdin into signed chunks on stdout",
    after_help = "Example: ffmpeg -i in.mp4 -c copy -f mpegts - | bl-chunk --key stream.key | bl-seed"
)]
pub struct Args {
    /// Stream key file; created (mode 0600) when absent. Without it an ephemeral key is used.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Largest chunk payload in bytes, rounded down to whole 188-byte TS packets (188..=1128).
    #[arg(long, value_name = "BYTES", default_value_t = MAX_PAYLOAD, value_parser = parse_chunk_bytes)]
    pub chunk_bytes: usize,
    /// Longest a packet waits for its chunk to fill before the partial chunk is sent.
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub max_wait: u64,
    /// Send a partial chunk once the input has paused this long (the encoder wrote a frame
    /// and waits for the next); 0: wait up to --max-wait.
    #[arg(long, value_name = "MS", default_value_t = 2)]
    pub idle_flush: u64,
    /// Print the stream id of --key on stdout and exit.
    #[arg(long, requires = "key")]
    pub show_id: bool,
    /// No warnings or progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_chunk_bytes(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of bytes"))?;
    if !(PACKET_SIZE..=MAX_PAYLOAD).contains(&n) {
        return Err(format!(
            "{n} is outside {PACKET_SIZE}..={MAX_PAYLOAD} (one to six TS packets)"
        ));
    }
    Ok(n)
}

enum Message {
    Input(ByteEvent),
    Signal,
}

/// The stream key from `--key` (created there the first time), or an ephemeral one.
fn load_key(args: &Args) -> Result<StreamKey> {
    Ok(match &args.key {
        Some(path) => {
            let (key, created) = StreamKey::load_or_create(path)?;
            if created {
                cli::notice(format!(
                    "created key {} for stream id {}",
                    path.display(),
                    key.id()
                ));
            }
            key
        }
        None => {
            let key = StreamKey::generate()?;
            cli::warn(format!(
                "no --key: using an ephemeral key, stream id {}",
                key.id()
            ));
            key
        }
    })
}

/// The next message for the loop: `Some(None)` when a partial chunk's wait ran out (its
/// `max_wait_us`, or the input idle for `idle` µs since `last_input`), `None` when every sender
/// is gone. A whole packet the aligner holds for its look-ahead (`aligner_waiting`, input
/// last read at `last_input`) waits as a partial chunk does.
fn next_message(
    rx: &mpsc::Receiver<Message>,
    chunker: &Chunker,
    aligner_waiting: bool,
    max_wait_us: u64,
    last_input: u64,
    idle: Option<u64>,
) -> Option<Option<Message>> {
    let idle_deadline = idle.map(|us| last_input.saturating_add(us));
    let full = chunker
        .flush_deadline(max_wait_us)
        .or(aligner_waiting.then(|| last_input.saturating_add(max_wait_us)));
    let deadline = match (full, idle_deadline) {
        (Some(full), Some(idle)) => Some(full.min(idle)),
        (full, _) => full,
    };
    match deadline {
        Some(deadline) => {
            let wait = deadline.saturating_sub(cli::unix_micros());
            match rx.recv_timeout(Duration::from_micros(wait)) {
                Ok(m) => Some(Some(m)),
                Err(mpsc::RecvTimeoutError::Timeout) => Some(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            }
        }
        None => rx.recv().ok().map(Some),
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    cli::set_quiet(args.quiet);
    let key = load_key(&args)?;
    if args.show_id {
        println!("{}", key.id());
        return Ok(ExitCode::SUCCESS);
    }

    let (tx, rx) = mpsc::channel();
    let signal_tx = tx.clone();
    cli::handle_signals(move || {
        let _ = signal_tx.send(Message::Signal);
    })?;
    input::spawn_byte_reader("stdin", input::open("-".as_ref())?, move |event| {
        tx.send(Message::Input(event)).is_ok()
    })?;

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    frame::write_header(&mut out, &key.id()).context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")?;

    let max_wait_us = args.max_wait.saturating_mul(1000);
    let mut aligner = PacketAligner::new();
    let mut chunker = Chunker::new(key, args.chunk_bytes, 0);
    let progress = cli::spinner(cli::progress_enabled(args.quiet));
    let mut input_bytes: u64 = 0;
    let idle_us = args.idle_flush.saturating_mul(1000);
    let mut last_input = 0u64;
    // Dropped at the first byte or the end: an encoder still starting is named after 2 s.
    let mut waiting = Some(cli::WaitNotice::start(
        std::time::Duration::from_secs(2),
        "waiting for MPEG-TS on standard input".into(),
    ));
    while let Some(message) = next_message(
        &rx,
        &chunker,
        aligner.holds_paused_packet(),
        max_wait_us,
        last_input,
        (idle_us > 0).then_some(idle_us),
    ) {
        let mut at_eof = false;
        match message {
            None => {
                if let Some(packet) = aligner.take_paused() {
                    chunker.push_packet(packet, last_input);
                }
                chunker.flush();
            }
            Some(Message::Signal) => {
                // Ctrl-C ends the broadcast: whole chunks already written stay valid, the
                // partial one is dropped, and the signed end record lets viewers finish.
                chunker.end(cli::unix_micros());
                while let Some(chunk) = chunker.pop() {
                    frame::write_chunk(&mut out, &chunk).context("cannot write to stdout")?;
                }
                out.flush().context("cannot write to stdout")?;
                progress.finish_and_clear();
                return Ok(cli::received_signal()
                    .map_or(ExitCode::from(cli::EXIT_RUNTIME), cli::exit_code_for_signal));
            }
            Some(Message::Input(ByteEvent::Failed(e))) => {
                return Err(e).context("cannot read stdin");
            }
            Some(Message::Input(ByteEvent::Data(bytes))) => {
                drop(waiting.take());
                let now = cli::unix_micros();
                last_input = now;
                input_bytes += bytes.len() as u64;
                aligner.push(&bytes);
                while let Some(packet) = aligner.next_packet(false) {
                    chunker.push_packet(packet, now);
                }
            }
            Some(Message::Input(ByteEvent::End)) => {
                drop(waiting.take());
                let now = cli::unix_micros();
                while let Some(packet) = aligner.next_packet(true) {
                    chunker.push_packet(packet, now);
                }
                chunker.finish(now);
                at_eof = true;
            }
        }
        let skipped = aligner.take_new_skips();
        if skipped > 0 {
            cli::warn(format!(
                "skipped {skipped} bytes that are not MPEG-TS packets (input byte {})",
                input_bytes
            ));
        }
        while let Some(chunk) = chunker.pop() {
            frame::write_chunk(&mut out, &chunk).context("cannot write to stdout")?;
        }
        out.flush().context("cannot write to stdout")?;
        progress.set_message(format!(
            "{} chunks, {:.1} MB in, {} bytes skipped",
            chunker.next_seq(),
            input_bytes as f64 / 1e6,
            aligner.skipped_bytes()
        ));
        if at_eof {
            break;
        }
    }
    progress.finish_and_clear();
    if aligner.skipped_bytes() > 0 {
        cli::warn(format!(
            "done: {} packets in {} chunks, {} bytes of garbage skipped in total",
            aligner.packets(),
            chunker.next_seq(),
            aligner.skipped_bytes()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
