//! Conventions shared by every bl-* binary: argument errors, exit codes, signals, stderr.
//!
//! Exit status: 0 ok (also when the reader of stdout went away), 1 runtime error, 2 usage,
//! 130 after SIGINT, 143 after SIGTERM. Errors are one line, `bl-tool: what went wrong`.

use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;

pub const EXIT_RUNTIME: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
/// bl-peer gave up: no answer, no data for --give-up seconds, or the link names another
/// stream.
pub const EXIT_GAVE_UP: u8 = 3;
/// bl-peer joined a stream that had already ended: nothing was played.
pub const EXIT_ENDED_BEFORE_START: u8 = 4;

static TOOL_NAME: OnceLock<&'static str> = OnceLock::new();
static QUIET: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The running tool's name, for messages.
pub fn tool() -> &'static str {
    TOOL_NAME.get().copied().unwrap_or("bl")
}

/// Silences [`warn`] (errors still print).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Prints `tool: message` on stderr unless --quiet.
pub fn warn(message: impl std::fmt::Display) {
    if !QUIET.load(Ordering::Relaxed) {
        eprintln!("{}: {message}", tool());
    }
}

/// Prints `tool: message` on stderr even with --quiet (things the user asked for, like a new
/// stream id).
pub fn notice(message: impl std::fmt::Display) {
    eprintln!("{}: {message}", tool());
}

/// Runs a tool: parses arguments with clap, runs it, maps the outcome to an exit code.
pub fn main<A: Parser>(
    name: &'static str,
    run: impl FnOnce(A) -> anyhow::Result<ExitCode>,
) -> ExitCode {
    let _ = TOOL_NAME.set(name);
    let args = match A::try_parse() {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(EXIT_USAGE)
                } else {
                    ExitCode::SUCCESS
                };
            }
            eprintln!("{name}: {} (see {name} --help)", one_line_clap_error(&e));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: {}", format!("{err:#}").replace('\n', " "));
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// clap's error on one line: its first line, with the indented lines that continue it (the
/// missing arguments' names) joined on.
fn one_line_clap_error(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut lines = rendered.lines().skip_while(|l| l.trim().is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let mut text = first.trim_start_matches("error: ").trim().to_string();
    for more in lines.take_while(|l| l.starts_with("  ")) {
        text.push(' ');
        text.push_str(more.trim());
    }
    text
}

/// A refresh period in seconds (`--watch`, `--stats-interval`): a usage error (exit 2) unless
/// 0.1 to 86,400 (a day). Unbounded, `--watch=1e30` panicked making the Duration.
pub fn parse_period(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.1..=86_400.0).contains(&s) => Ok(s),
        _ => Err(format!(
            "'{text}' is not a number of seconds from 0.1 to 86400"
        )),
    }
}

/// Says `what` on stderr (as a warning) unless dropped within `after`: a tool about to block
/// on its input says what it waits for, and says nothing when the input is already there.
/// The check and the line are made under the lock that dropping takes, so the line never
/// comes after what the wait was for.
pub struct WaitNotice(std::sync::Arc<std::sync::Mutex<bool>>);

impl WaitNotice {
    pub fn start(after: Duration, what: String) -> WaitNotice {
        let done = std::sync::Arc::new(std::sync::Mutex::new(false));
        let seen = done.clone();
        // Without the thread the notice is merely not said.
        let _ = std::thread::Builder::new()
            .name("wait-notice".into())
            .spawn(move || {
                std::thread::sleep(after);
                let done = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if !*done {
                    warn(what);
                }
            });
        WaitNotice(done)
    }
}

impl Drop for WaitNotice {
    fn drop(&mut self) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
    }
}

/// Is this error (anywhere in its chain) a write to a closed pipe? A player or `head` that
/// quits is a normal way for a filter's output to end.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Installs SIGINT/SIGTERM handling. `on_signal` runs on a helper thread after the signal is
/// recorded, so the tool can wake its loop. Later, [`exit_code_for_signal`] gives 130 or 143.
pub fn handle_signals(on_signal: impl Fn() + Send + 'static) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| anyhow::anyhow!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                SIGNAL.store(signal, Ordering::SeqCst);
                on_signal();
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start signal thread: {e}"))?;
    Ok(())
}

/// The signal that asked us to stop, if any.
pub fn received_signal() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// 128 + signal number, the shell convention (130 for SIGINT, 143 for SIGTERM).
pub fn exit_code_for_signal(signal: i32) -> ExitCode {
    ExitCode::from((128 + signal).clamp(0, 255) as u8)
}

/// True when progress bars should be drawn: stderr is a terminal and not --quiet.
pub fn progress_enabled(quiet: bool) -> bool {
    !quiet && io::stderr().is_terminal()
}

/// The drivers' clock for the core's timers: monotonic µs, anchored at the wall clock of the
/// first call so the numbers read like UNIX times. A wall clock stepped back froze every
/// timer (no Have went out: neighbours dropped us); stepped forward 1.5 s, it dropped every
/// neighbour. Only capture times and latency use the wall clock ([`unix_micros`]).
pub fn mono_micros() -> u64 {
    static START: OnceLock<(std::time::Instant, u64)> = OnceLock::new();
    let (start, base) = START.get_or_init(|| (std::time::Instant::now(), unix_micros()));
    base.saturating_add(start.elapsed().as_micros() as u64)
}

/// Wall-clock time in µs since the UNIX epoch: capture times and latency. Only binaries call
/// this; the cores take time as an argument.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// A spinner on stderr with a message, drawn only when [`progress_enabled`].
pub fn spinner(enabled: bool) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
