//! bl-peer: join a swarm by link, forward what arrives, play it out in order on stdout.

use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use super::swarm_args::{parse_listen, SwarmArgs};
use crate::cmd::cli;
use crate::core::node::{Config, Node};
use crate::media::frame::FrameReader;
use crate::net::driver::{self, OutputMode};
use crate::proto::link::{self, Link};
use crate::proto::wire::Role;

#[derive(Parser, Debug)]
#[command(
    name = "bl-peer",
    version,
    about = "Join a bl swarm, forward to other viewers, write the stream to stdout",
    after_help = "Example: bl-peer bl://<stream-id>@203.0.113.5:7000 | mpv -"
)]
pub struct Args {
    /// bl://<stream-id>@host:port[,host:port…], bl://<stream-id>?tr=udp://host:port, or
    /// bl://<stream-id> alone (found through the DHT).
    #[arg(value_name = "LINK")]
    pub link: Link,
    /// Extra bootstrap address (repeatable).
    #[arg(long, value_name = "HOST:PORT", value_parser = link::parse_host_port)]
    pub bootstrap: Vec<String>,
    /// Local UDP address.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Longest playout waits for a missing chunk before skipping it.
    #[arg(long, value_name = "MS", default_value_t = 1500)]
    pub latency: u64,
    /// Write the verified chunk stream (bl-chunk(5)) instead of MPEG-TS.
    #[arg(long)]
    pub chunks: bool,
    /// Give up (exit 3) after this long without an answer or a verified chunk; 0: never.
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = parse_seconds)]
    pub give_up: f64,
    #[command(flatten)]
    pub swarm: SwarmArgs,
}

/// A duration in seconds: a finite number, 0 or more.
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!("'{text}' is not a number of seconds (0 or more)")),
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    cli::set_quiet(args.swarm.quiet);
    let mut hosts = args.link.hosts.clone();
    hosts.extend(args.bootstrap.iter().cloned());
    // A link with no node and no tracker is found through the DHT.
    let discovery = args.swarm.discovery(
        &args.link.trackers,
        hosts.is_empty() && args.link.trackers.is_empty(),
    );
    let bootstrap = link::resolve_all(&hosts)?;
    let socket = driver::bind(args.listen)?;
    let mut cfg = Config::new(Role::Peer, args.link.stream);
    cfg.bootstrap = bootstrap.clone();
    cfg.tuning.latency_us = args.latency.saturating_mul(1000);
    cfg.tuning.give_up_us = (args.give_up > 0.0).then_some((args.give_up * 1e6) as u64);
    args.swarm.apply(&mut cfg)?;
    let mut node = Node::new(cfg, cli::mono_micros());
    if let Some(ip) = bootstrap
        .first()
        .and_then(|b| driver::route_ip(socket.local_addr().ok()?, *b))
    {
        node.set_route_ip(ip);
    }
    let mode = if args.chunks {
        OutputMode::Chunks
    } else {
        OutputMode::Ts
    };
    // With --http the stream has somewhere to go: a terminal on stdout gets none of it.
    let output = if args.swarm.http.is_some() && io::stdout().is_terminal() {
        None
    } else {
        Some(mode)
    };
    driver::run::<io::Empty>(
        node,
        socket,
        None::<FrameReader<io::Empty>>,
        output,
        args.swarm.driver_options(false, discovery),
    )
}
