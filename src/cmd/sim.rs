//! bl-sim: the unchanged swarm core at scale, in virtual time (see `sim`).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;

use crate::cmd::cli;
use crate::core::stripes::MAX_STRIPES;
use crate::sim::{Outcome, Pulse, Sim, SimConfig, SETTLED_AFTER_US};

#[derive(Parser, Debug)]
#[command(
    name = "bl-sim",
    version,
    about = "Simulate a bl swarm of thousands of peers in virtual time, deterministically"
)]
pub struct Args {
    /// Peers that join at the start.
    #[arg(long, default_value_t = 1000)]
    peers: usize,
    /// Stream bitrate in bits per second (suffix k, M or G).
    #[arg(long, default_value = "2M", value_parser = parse_rate)]
    bitrate: u64,
    /// Seconds of stream.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Stripes (K).
    #[arg(long, default_value_t = 4)]
    stripes: u8,
    /// Datagram loss on every downlink: a fraction (0.01) or a percentage (1%).
    #[arg(long, default_value = "1%", value_parser = parse_fraction)]
    loss: f64,
    /// Mean loss burst length in datagrams (1 = independent losses).
    #[arg(long, default_value_t = 1.0)]
    burst: f64,
    /// Peers leaving, and as many new ones joining, per minute.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Fraction (or percentage) of peers that never upload a chunk.
    #[arg(long, default_value = "0", value_parser = parse_fraction)]
    free_riders: f64,
    /// Fraction (or percentage) of peers that lie: forged Haves (depth 0, room to spare,
    /// everything held), withheld pushes and repairs, eclipse lists, replayed old chunks,
    /// forged end records.
    #[arg(long, default_value = "0", value_parser = parse_fraction)]
    liars: f64,
    /// Peers that send every chunk with a byte changed.
    #[arg(long, default_value_t = 0)]
    forgers: usize,
    /// The first N peers to join withhold: they forward nothing but what the seed asks of
    /// them (its audits), and announce depth 1.
    #[arg(long, default_value_t = 0)]
    withholders: usize,
    /// Seed of every random choice: the same seed gives the same output.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The peers join spread over this many seconds.
    #[arg(long, default_value_t = 5.0)]
    join_over: f64,
    /// When the broadcast's first chunk is made, seconds into the run (the peers begin to
    /// join at 0). Past --join-over, every peer waits for a broadcast that has not begun.
    #[arg(long, default_value_t = 0.2)]
    stream_at: f64,
    /// The seed's upload capacity, bits per second.
    #[arg(long, default_value = "10M", value_parser = parse_rate)]
    seed_upload: u64,
    /// Peers' upload capacities are log-uniform between these (bits per second).
    #[arg(long, default_value = "2M", value_parser = parse_rate)]
    upload_min: u64,
    #[arg(long, default_value = "20M", value_parser = parse_rate)]
    upload_max: u64,
    /// Bootstrap addresses a tracker gives each joiner, drawn from the seed and the peers
    /// already playing; 0 = every joiner asks the seed.
    #[arg(long, default_value_t = 4)]
    tracker_peers: usize,
    /// Playout latency of every peer, ms (bl-peer --latency).
    #[arg(long, default_value_t = 1500)]
    latency: u64,
    /// Print the figures as one JSON object (stdout) instead of a summary.
    #[arg(long)]
    json: bool,
    /// Fail (exit 1) when continuity ends below this fraction.
    #[arg(long, value_name = "FRACTION")]
    expect_continuity: Option<f64>,
    /// Fail (exit 1) when source amplification ends above this.
    #[arg(long, value_name = "RATIO")]
    expect_amplification: Option<f64>,
    /// Threads that run the cores (1 or 2). The output is the same for any count.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    threads: u8,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// `2M`, `2000k`, `2000000`: bits per second.
fn parse_rate(s: &str) -> Result<u64, String> {
    let (digits, scale) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
        Some('M' | 'm') => (&s[..s.len() - 1], 1e6),
        Some('G' | 'g') => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    match digits.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x * scale <= 1e11 => Ok((x * scale) as u64),
        _ => Err(format!("{s:?} is not a rate like 2M, 500k or 2000000")),
    }
}

/// `0.01` or `1%`.
fn parse_fraction(s: &str) -> Result<f64, String> {
    let value = match s.strip_suffix('%') {
        Some(p) => p.parse::<f64>().map(|x| x / 100.0),
        None => s.parse::<f64>(),
    };
    match value {
        Ok(x) if (0.0..1.0).contains(&x) => Ok(x),
        _ => Err(format!("{s:?} is not a fraction in [0, 1) like 0.01 or 1%")),
    }
}

impl Args {
    fn check(&self) -> Result<()> {
        if self.peers == 0 || self.peers > 10_000_000 {
            bail!("--peers {} must be from 1 to 10 million", self.peers);
        }
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= 86_400.0) {
            bail!(
                "--seconds {} must be above 0 and at most 86400",
                self.seconds
            );
        }
        if self.stripes == 0 || self.stripes > MAX_STRIPES {
            bail!(
                "--stripes {} must be between 1 and {MAX_STRIPES}",
                self.stripes
            );
        }
        if !(self.burst.is_finite() && self.burst >= 1.0) {
            bail!("--burst {} must be at least 1", self.burst);
        }
        if !(self.churn.is_finite() && self.churn >= 0.0) {
            bail!(
                "--churn {} must be a number of peers per minute",
                self.churn
            );
        }
        if !(self.join_over.is_finite() && self.join_over >= 0.0) {
            bail!("--join-over {} must be a number of seconds", self.join_over);
        }
        if !(0.0..=3600.0).contains(&self.stream_at) {
            bail!(
                "--stream-at {} must be from 0 to 3600 seconds",
                self.stream_at
            );
        }
        if self.upload_min > self.upload_max {
            bail!("--upload-min is above --upload-max");
        }
        if self.forgers > self.peers {
            bail!(
                "--forgers {} is more than --peers {}",
                self.forgers,
                self.peers
            );
        }
        if let Some(x) = self.expect_continuity {
            if !(0.0..=1.0).contains(&x) {
                bail!("--expect-continuity {x} must be a fraction from 0 to 1");
            }
        }
        if self.withholders > self.peers {
            bail!(
                "--withholders {} is more than --peers {}",
                self.withholders,
                self.peers
            );
        }
        Ok(())
    }

    fn config(&self) -> SimConfig {
        SimConfig {
            peers: self.peers,
            bitrate_bps: self.bitrate,
            seconds: self.seconds,
            stripes: self.stripes,
            loss: self.loss,
            burst: self.burst,
            churn_per_min: self.churn,
            free_riders: self.free_riders,
            liars: self.liars,
            forgers: self.forgers,
            withholders: self.withholders,
            seed: self.seed,
            join_over_s: self.join_over,
            stream_at_s: self.stream_at,
            seed_upload_bps: self.seed_upload,
            peer_upload_min_bps: self.upload_min,
            peer_upload_max_bps: self.upload_max,
            latency_ms: self.latency,
            tracker_peers: self.tracker_peers,
            ..SimConfig::default()
        }
    }
}

fn summary(o: &Outcome, wall_s: f64) -> String {
    let c = &o.config;
    format!(
        "{peers} peers, {rate} kbit/s for {secs} s, {k} stripes, loss {loss}% (burst {burst}), seed {seed}\n\
         continuity        {cont:.4}% (worst peer {worst:.4}%, {below} peers below 99.9%, {skipped} chunks skipped)\n\
         latency           p50 {lp50} ms, p99 {lp99} ms, max {lmax} ms\n\
         latency, settled  p50 {tp50} ms, p99 {tp99} ms, max {tmax} ms (from {settle} s after each join)\n\
         startup           p50 {sp50} ms, p99 {sp99} ms, max {smax} ms ({never} peers never started; {late} of {early} that joined before the stream did not play its first chunk)\n\
         tree              depth p50 {dp50}, p99 {dp99}; one-way delay to a parent {hp} ms, a neighbour {hn} ms, any peer {ha} ms\n\
         source amplif.    {amp}\n\
         overhead          {ovh:.1}%\n\
         datagrams         {sent} sent, {lost} lost, {qd} dropped at full uplinks\n\
         churn             {joins} joins, {departures} departures; forgers banned {bans} times, {fp} forged chunks played\n\
         wall time         {wall_s:.1} s for {events} events",
        peers = c.peers,
        rate = c.bitrate_bps / 1000,
        secs = c.seconds,
        k = c.stripes,
        loss = c.loss * 100.0,
        burst = c.burst,
        seed = c.seed,
        cont = o.continuity * 100.0,
        worst = o.continuity_worst_peer * 100.0,
        below = o.peers_below_999,
        skipped = o.chunks_skipped,
        lp50 = o.latency_ms.p50,
        lp99 = o.latency_ms.p99,
        lmax = o.latency_ms.max,
        tp50 = o.latency_settled_ms.p50,
        tp99 = o.latency_settled_ms.p99,
        tmax = o.latency_settled_ms.max,
        settle = SETTLED_AFTER_US / 1_000_000,
        sp50 = o.startup_ms.p50,
        sp99 = o.startup_ms.p99,
        smax = o.startup_ms.max,
        never = o.peers_never_started,
        late = o.late_starts,
        early = o.peers_joined_before_stream,
        dp50 = o.tree_depth.p50,
        dp99 = o.tree_depth.p99,
        hp = o.link_delay_ms.parent,
        hn = o.link_delay_ms.neighbour,
        ha = o.link_delay_ms.any_pair,
        amp = o.source_amplification,
        ovh = o.overhead * 100.0,
        sent = o.datagrams_sent,
        lost = o.datagrams_lost,
        qd = o.datagrams_queue_dropped,
        joins = o.joins,
        departures = o.departures,
        bans = o.bans,
        fp = o.forged_chunks_played,
        events = o.events,
    )
}

pub fn run(args: Args) -> Result<ExitCode> {
    if let Err(e) = args.check() {
        eprintln!("{}: {e:#}", cli::tool());
        return Ok(ExitCode::from(cli::EXIT_USAGE));
    }
    cli::set_quiet(args.quiet);
    let started = Instant::now();
    let sim = Sim::new(args.config()).with_threads(usize::from(args.threads));
    let mut last_print = Instant::now();
    let mut progress = |p: &Pulse| {
        if last_print.elapsed().as_secs_f64() >= 5.0 {
            last_print = Instant::now();
            cli::warn(format!(
                "t={:.0}s of {:.0}s, {} events, {} chunks missing, {:.1} % stripes without parent, {:.0} s wall",
                p.t_s,
                args.seconds,
                p.events,
                p.chunks_missing,
                p.stripes_without_parent * 100.0,
                started.elapsed().as_secs_f64()
            ));
        }
    };
    let outcome = match sim.run(&mut progress) {
        Ok(o) => o,
        Err(v) => {
            let argv: Vec<String> = std::env::args().collect();
            bail!("{v} (reproduce: {})", argv.join(" "));
        }
    };
    let wall_s = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        println!("{}", summary(&outcome, wall_s));
    }
    cli::warn(format!("done in {wall_s:.1} s wall"));
    let seed = args.seed;
    if let Some(min) = args.expect_continuity {
        if outcome.continuity < min {
            bail!(
                "continuity {} is below the expected {min} (seed {seed})",
                outcome.continuity
            );
        }
    }
    if let Some(max) = args.expect_amplification {
        if outcome.source_amplification > max {
            bail!(
                "source amplification {} is above the expected {max} (seed {seed})",
                outcome.source_amplification
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
