//! Options shared by bl-seed and bl-peer.

use std::time::Duration;

use clap::Args;

use crate::core::node::Config;
use crate::discover::tracker::TrackerUrl;
use crate::discover::DiscoveryOptions;
use crate::net::driver::DriverOptions;

#[derive(Args, Debug, Clone)]
pub struct SwarmArgs {
    /// Upload budget in copies of the stream.
    #[arg(long, value_name = "COPIES", value_parser = parse_copies)]
    pub max_upload: Option<f64>,
    /// Print one JSON object of figures on stderr at exit.
    #[arg(long)]
    pub stats_json: bool,
    /// Also print the JSON figures every SECS seconds (implies --stats-json).
    #[arg(long, value_name = "SECS", value_parser = crate::cmd::cli::parse_period)]
    pub stats_interval: Option<f64>,
    /// Answer bl-stat from any address, not only loopback.
    #[arg(long)]
    pub stats_anywhere: bool,
    /// Seed of the node's random choices (default: from the OS), for reproducible runs.
    #[arg(long, value_name = "N")]
    pub rng_seed: Option<u64>,
    /// Announce to and find peers through this UDP tracker, udp://host:port (repeatable).
    #[arg(long, value_name = "URL")]
    pub tracker: Vec<TrackerUrl>,
    /// Announce to and find peers through the Mainline DHT.
    #[arg(long)]
    pub dht: bool,
    /// Join the DHT through this node instead of the public routers (repeatable; implies --dht).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_dht_node)]
    pub dht_bootstrap: Vec<String>,
    /// Serve HTTP players at ADDR: /stream.ts (MPEG-TS), /live.m3u8 (HLS), / (a page).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub http: Option<std::net::SocketAddr>,
    /// No warnings on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A `host:port` with a port from 1 to 65535 that resolves now: mainline drops what it cannot
/// use without a word, and a DHT of no nodes looked like an empty one.
fn parse_dht_node(text: &str) -> Result<String, String> {
    let host = text.trim();
    if crate::proto::link::check_host_port(host)? == 0 {
        return Err(format!(
            "'{host}' has port 0: a DHT node listens on a port of its own"
        ));
    }
    crate::proto::link::resolve_all(&[host.to_string()]).map_err(|e| format!("{e:#}"))?;
    Ok(host.to_string())
}

/// A `--listen` address: host:port, where host may be a name (`localhost:7000`).
pub fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    crate::proto::link::resolve_all(&[text.to_string()])
        .map_err(|e| format!("{e:#}"))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("'{text}' resolves to no address"))
}

impl SwarmArgs {
    /// Where to find the swarm: `--tracker`s and the link's, and the DHT when asked for (or
    /// when `dht_by_default`: a link that names no node and no tracker).
    pub fn discovery(
        &self,
        link_trackers: &[TrackerUrl],
        dht_by_default: bool,
    ) -> DiscoveryOptions {
        let mut trackers = self.tracker.clone();
        for t in link_trackers {
            if !trackers.contains(t) {
                trackers.push(t.clone());
            }
        }
        let dht = self.dht || !self.dht_bootstrap.is_empty() || dht_by_default;
        DiscoveryOptions {
            trackers,
            dht: dht.then(|| self.dht_bootstrap.clone()),
        }
    }

    pub fn driver_options(&self, pace: bool, discovery: DiscoveryOptions) -> DriverOptions {
        DriverOptions {
            discovery,
            stats_json: self.stats_json || self.stats_interval.is_some(),
            http: self.http,
            stats_interval: self
                .stats_interval
                .filter(|s| *s > 0.0)
                .map(Duration::from_secs_f64),
            pace,
        }
    }

    /// Copies the shared options into the core's configuration.
    pub fn apply(&self, cfg: &mut Config) -> anyhow::Result<()> {
        cfg.rng_seed = self.rng_seed()?;
        // Never seeded from --rng-seed: tokens and nonces stay unguessable in a reproduced run.
        getrandom::getrandom(&mut cfg.secret)
            .map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
        cfg.stats_from_anywhere = self.stats_anywhere;
        if let Some(x) = self.max_upload {
            cfg.tuning.max_upload = x;
        }
        Ok(())
    }

    fn rng_seed(&self) -> anyhow::Result<u64> {
        if let Some(seed) = self.rng_seed {
            return Ok(seed);
        }
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| anyhow::anyhow!("cannot get random bytes: {e}"))?;
        Ok(u64::from_le_bytes(bytes))
    }
}

/// `--max-upload`: a usage error (exit 2) unless above 0 and at most 64 copies.
fn parse_copies(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 64.0 => Ok(x),
        _ => Err(format!(
            "'{text}' is not a number of stream copies above 0 and at most 64"
        )),
    }
}
