//! bl-stat: figures from running seeds and peers (over the protocol), from a whole swarm
//! (walked by peer exchange), or from `--stats-json` lines saved by a test harness.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::cmd::cli;
use crate::core::stats::{Report, SwarmSummary};
use crate::net::probe::{Answer, Probe};
use crate::proto::link::resolve_all;

#[derive(Parser, Debug)]
#[command(
    name = "bl-stat",
    version,
    about = "Show the figures of running bl seeds and peers, or of a whole swarm"
)]
pub struct Args {
    /// Nodes to ask (host:port of a bl-seed or bl-peer).
    #[arg(value_name = "ADDR")]
    addrs: Vec<String>,
    /// Walk the swarm from this node through peer exchange and sum it up.
    #[arg(long, value_name = "ADDR")]
    swarm: Option<String>,
    /// Read --stats-json lines from FILE (- for stdin) instead of asking nodes; the last
    /// report of each node counts. Repeatable.
    #[arg(long, short, value_name = "FILE")]
    input: Vec<String>,
    /// One JSON object per node per line, then (with --swarm or --input) {"summary": …}.
    #[arg(long)]
    json: bool,
    /// Refresh every SECS seconds (1 without =SECS), like top; rates are then measured between
    /// refreshes. The value needs '=': `--watch 127.0.0.1:7000` watches that node.
    #[arg(
        long,
        value_name = "SECS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "1",
        value_parser = cli::parse_period
    )]
    watch: Option<f64>,
    /// Most nodes a --swarm walk visits.
    #[arg(long, default_value_t = 10_000, requires = "swarm")]
    limit: usize,
    /// No warnings on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// One row: a node's report, or why it gave none.
struct Row {
    addr: String,
    report: Result<Report, String>,
}

fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

fn kbit_s(bytes: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes * 8.0 / 1000.0 / seconds
    } else {
        0.0
    }
}

/// Rates: since the node started, or since the previous refresh of `--watch`.
fn rates(report: &Report, previous: Option<&Report>) -> (f64, f64) {
    match previous {
        Some(p) if report.uptime_s > p.uptime_s => {
            let dt = report.uptime_s - p.uptime_s;
            (
                kbit_s(
                    report.bytes_received.saturating_sub(p.bytes_received) as f64,
                    dt,
                ),
                kbit_s(report.bytes_sent.saturating_sub(p.bytes_sent) as f64, dt),
            )
        }
        _ => (
            kbit_s(report.bytes_received as f64, report.uptime_s),
            kbit_s(report.bytes_sent as f64, report.uptime_s),
        ),
    }
}

/// Public, behind a NAT but reachable by introduction, or behind a symmetric NAT (reachable
/// only by those it greets).
fn reach_label(r: &Report) -> &'static str {
    use crate::core::reachability::Reachability;
    match r.reachability {
        Some(Reachability::Public) => "public",
        Some(Reachability::Nat) => "nat",
        Some(Reachability::Symmetric) => "symnat",
        Some(Reachability::Unknown) | None => "?",
    }
}

fn table(rows: &[Row], previous: &BTreeMap<String, Report>) -> String {
    let mut out = format!(
        "{:<22} {:<4} {:<6} {:<8} {:>8} {:>4} {:>10} {:>10} {:>8} {:>6} {:>5} {:>5} {:>6} {:>8} {:>8}\n",
        "ADDR",
        "ROLE",
        "REACH",
        "STREAM",
        "UPTIME",
        "NBRS",
        "IN_KBIT/S",
        "OUT_KBIT/S",
        "PLAYED",
        "DUP",
        "LATE",
        "SKIP",
        "FORGED",
        "P50_MS",
        "P99_MS"
    );
    for row in rows {
        match &row.report {
            Ok(r) => {
                let (rx, tx) = rates(r, previous.get(&row.addr));
                out.push_str(&format!(
                    "{:<22} {:<4} {:<6} {:<8} {:>7.1}s {:>4} {:>10.0} {:>10.0} {:>8} {:>6} {:>5} {:>5} {:>6} {:>8.1} {:>8.1}\n",
                    row.addr,
                    r.role,
                    reach_label(r),
                    short_id(&r.stream_id),
                    r.uptime_s,
                    r.neighbours,
                    rx,
                    tx,
                    r.counters.chunks_played,
                    r.counters.chunks_duplicate,
                    r.counters.chunks_late,
                    r.counters.chunks_skipped,
                    r.counters.chunks_forged,
                    r.latency_ms.p50,
                    r.latency_ms.p99,
                ));
            }
            Err(why) => out.push_str(&format!("{:<22} -    {why}\n", row.addr)),
        }
    }
    out
}

fn summary_text(s: &SwarmSummary) -> String {
    // Overhead is per byte played, continuity per chunk played or skipped: before any, n/a.
    let overhead = match s.chunks_played {
        0 => "n/a".to_string(),
        _ => format!("{:.1}%", s.overhead * 100.0),
    };
    let continuity = match s.chunks_played + s.chunks_skipped {
        0 => "n/a".to_string(),
        _ => format!("{:.4}%", s.continuity * 100.0),
    };
    format!(
        "swarm: {} nodes ({} seeds, {} peers), upload {:.0} kbit/s, source amplification {}, \
         overhead {overhead}, continuity {continuity}, latency p50 {} ms p99 {} ms max {} ms, \
         {} skipped, {} forged, {} bans\n",
        s.nodes,
        s.seeds,
        s.peers,
        s.upload_kbit_s,
        s.source_amplification,
        s.latency_ms.p50,
        s.latency_ms.p99,
        s.latency_ms.max,
        s.chunks_skipped,
        s.chunks_forged,
        s.peers_banned
    )
}

/// Reads `--stats-json` lines; anything else is counted and skipped.
fn read_reports(inputs: &[String]) -> Result<Vec<Row>> {
    let mut latest: BTreeMap<String, Report> = BTreeMap::new();
    let mut skipped = 0u64;
    for (n, name) in inputs.iter().enumerate() {
        let reader: Box<dyn BufRead> = if name == "-" {
            Box::new(BufReader::new(io::stdin()))
        } else {
            Box::new(BufReader::new(
                File::open(name).with_context(|| format!("cannot open {name}"))?,
            ))
        };
        for line in reader.lines() {
            let line = line.with_context(|| format!("cannot read {name}"))?;
            let text = line.trim();
            if !text.starts_with('{') {
                // Warnings and other stderr lines share the file: not an error.
                continue;
            }
            match serde_json::from_str::<Report>(text) {
                Ok(report) => {
                    let key = if report.addr.is_empty() {
                        format!("{name}#{n}:{}", report.role)
                    } else {
                        report.addr.clone()
                    };
                    latest.insert(key, report);
                }
                Err(_) => skipped += 1,
            }
        }
    }
    if skipped > 0 {
        cli::warn(format!(
            "skipped {skipped} JSON lines that are not bl reports"
        ));
    }
    if latest.is_empty() {
        bail!(
            "no bl reports (--stats-json lines) in {}",
            inputs.join(", ")
        );
    }
    Ok(latest
        .into_iter()
        .map(|(addr, report)| Row {
            addr,
            report: Ok(report),
        })
        .collect())
}

fn rows_of(answers: Vec<Answer>) -> Vec<Row> {
    answers
        .into_iter()
        .map(|a| Row {
            addr: a.addr.to_string(),
            report: a.report,
        })
        .collect()
}

fn print(
    rows: &[Row],
    summary: Option<&SwarmSummary>,
    args: &Args,
    previous: &BTreeMap<String, Report>,
) -> Result<()> {
    let mut out = String::new();
    if args.json {
        for row in rows {
            let value = match &row.report {
                // The address asked, as in the table: a node bound to 0.0.0.0 reports that.
                Ok(r) => serde_json::to_value(Report {
                    addr: row.addr.clone(),
                    ..r.clone()
                })?,
                Err(why) => serde_json::json!({ "addr": row.addr, "error": why }),
            };
            out.push_str(&serde_json::to_string(&value)?);
            out.push('\n');
        }
        if let Some(s) = summary {
            out.push_str(&serde_json::to_string(
                &serde_json::json!({ "summary": s }),
            )?);
            out.push('\n');
        }
    } else {
        out.push_str(&table(rows, previous));
        if let Some(s) = summary {
            out.push_str(&summary_text(s));
        }
    }
    let mut stdout = io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn check(args: &Args) -> Result<()> {
    let sources = usize::from(!args.addrs.is_empty())
        + usize::from(args.swarm.is_some())
        + usize::from(!args.input.is_empty());
    if sources == 0 {
        bail!("give node addresses, --swarm ADDR or --input FILE (see --help)");
    }
    if sources > 1 {
        bail!("give only one of: node addresses, --swarm, --input");
    }
    Ok(())
}

pub fn run(args: Args) -> Result<ExitCode> {
    if let Err(e) = check(&args) {
        eprintln!("{}: {e:#}", cli::tool());
        return Ok(ExitCode::from(cli::EXIT_USAGE));
    }
    cli::set_quiet(args.quiet);
    let swarm = match &args.swarm {
        Some(s) => Some(
            *resolve_all(std::slice::from_ref(s))?
                .first()
                .context("--swarm needs an address")?,
        ),
        None => None,
    };
    let addrs = resolve_all(&args.addrs)?;
    let towards: Option<SocketAddr> = swarm.or_else(|| addrs.first().copied());
    let mut probe = match towards {
        Some(t) => Some(Probe::new(t)?),
        None => None,
    };
    if args.watch.is_some() {
        cli::handle_signals(|| {})?;
    }
    let clear = args.watch.is_some() && !args.json && io::stdout().is_terminal();
    let mut previous: BTreeMap<String, Report> = BTreeMap::new();
    loop {
        let started = Instant::now();
        let rows = match (&mut probe, swarm) {
            _ if !args.input.is_empty() => read_reports(&args.input)?,
            (Some(p), Some(start)) => rows_of(p.walk(start, args.limit.max(1))?),
            (Some(p), None) => rows_of(p.stats(&addrs)),
            (None, _) => bail!("nothing to ask"),
        };
        let summary = (swarm.is_some() || !args.input.is_empty()).then(|| {
            let reports: Vec<Report> = rows.iter().filter_map(|r| r.report.clone().ok()).collect();
            SwarmSummary::of(&reports)
        });
        if clear {
            print!("\x1b[H\x1b[2J");
        }
        print(&rows, summary.as_ref(), &args, &previous)?;
        let failed = rows.iter().filter(|r| r.report.is_err()).count();
        let Some(every) = args.watch else {
            for row in &rows {
                if let Err(why) = &row.report {
                    cli::warn(format!("{}: {why}", row.addr));
                }
            }
            return Ok(if failed > 0 {
                ExitCode::from(cli::EXIT_RUNTIME)
            } else {
                ExitCode::SUCCESS
            });
        };
        previous = rows
            .into_iter()
            .filter_map(|r| r.report.ok().map(|rep| (r.addr, rep)))
            .collect();
        let next = started + Duration::from_secs_f64(every);
        while Instant::now() < next {
            if let Some(signal) = cli::received_signal() {
                return Ok(cli::exit_code_for_signal(signal));
            }
            std::thread::sleep(Duration::from_millis(50).min(next - Instant::now()));
        }
        if let Some(signal) = cli::received_signal() {
            return Ok(cli::exit_code_for_signal(signal));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before any peer played or skipped a chunk there is no overhead or continuity to give
    /// (it read "overhead -100.0%, continuity 0.0000%").
    #[test]
    fn a_swarm_that_played_nothing_has_no_overhead_or_continuity() {
        let text = summary_text(&SwarmSummary::of(&[]));
        assert!(text.contains("overhead n/a, continuity n/a"), "{text}");
    }
}
