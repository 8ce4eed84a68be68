//! bl-seed: serve a chunk stream from stdin to the swarm; also its bootstrap and tracker.

use std::io::{self, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use super::swarm_args::{parse_listen, SwarmArgs};
use crate::cmd::cli;
use crate::core::node::{Config, Node};
use crate::core::stripes::MAX_STRIPES;
use crate::media::frame::FrameReader;
use crate::net::driver;
use crate::proto::link::Link;
use crate::proto::wire::Role;

#[derive(Parser, Debug)]
#[command(
    name = "bl-seed",
    version,
    about = "Serve a chunk stream from stdin to a bl swarm over UDP",
    after_help = "Example: ffmpeg -re -i in.mp4 -c copy -f mpegts - | bl-chunk --key k | bl-seed --listen 0.0.0.0:7000"
)]
pub struct Args {
    /// UDP address to serve on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:7000", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Number of stripes the stream is split into (seq mod K) [default: 4].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u8).range(1..=MAX_STRIPES as i64))]
    pub stripes: Option<u8>,
    /// Send chunks read from a file at the pace of their capture times.
    #[arg(long)]
    pub pace: bool,
    /// After the stream ends, keep serving repairs this long before leaving [default: 2500].
    #[arg(long, value_name = "MS")]
    pub linger: Option<u64>,
    #[command(flatten)]
    pub swarm: SwarmArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    cli::set_quiet(args.swarm.quiet);
    let socket = driver::bind(args.listen)?;
    let local = socket.local_addr().context("socket has no address")?;
    let waiting = cli::WaitNotice::start(
        Duration::from_secs(2),
        "waiting for the chunk stream on standard input (bl-chunk's output)".into(),
    );
    let reader = FrameReader::new(BufReader::new(io::stdin())).context("stdin")?;
    drop(waiting);
    let stream = reader.stream();
    let mut cfg = Config::new(Role::Seed, stream);
    if let Some(k) = args.stripes {
        cfg.tuning.stripes = k;
    }
    if let Some(ms) = args.linger {
        cfg.tuning.linger_us = ms.saturating_mul(1000);
    }
    args.swarm.apply(&mut cfg)?;
    let shown = if local.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), local.port())
    } else {
        local
    };
    let link = Link {
        stream,
        hosts: vec![shown.to_string()],
        trackers: args.swarm.tracker.clone(),
    };
    cli::notice(format!("serving {link}"));
    if !link.trackers.is_empty() || args.swarm.dht || !args.swarm.dht_bootstrap.is_empty() {
        let found = Link {
            hosts: Vec::new(),
            ..link.clone()
        };
        cli::notice(format!(
            "viewers anywhere can also use {found}, found through {}",
            if link.trackers.is_empty() {
                "the DHT"
            } else {
                "the trackers"
            }
        ));
    }
    if local.ip().is_unspecified() {
        cli::warn(format!(
            "listening on all interfaces: other hosts use this machine's address with port {}",
            local.port()
        ));
    }
    let node = Node::new(cfg, cli::mono_micros());
    driver::run(
        node,
        socket,
        Some(reader),
        None,
        args.swarm
            .driver_options(args.pace, args.swarm.discovery(&[], false)),
    )
}
