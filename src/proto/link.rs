//! Stream links: `bl://<stream-id>[@host:port[,host:port…]][?tr=udp://host:port[&tr=…]]`.
//!
//! The hosts are bootstrap nodes (the seed or any peer); `tr` names UDP trackers to find the
//! swarm through, as a magnet link's `tr` does. A link with neither is found through the DHT.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use crate::discover::tracker::TrackerUrl;
use crate::media::identity::StreamId;

pub const SCHEME: &str = "bl://";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub stream: StreamId,
    /// Bootstrap addresses as written (resolved by [`Link::resolve`]).
    pub hosts: Vec<String>,
    /// Trackers named by `?tr=`.
    pub trackers: Vec<TrackerUrl>,
}

impl Link {
    pub fn resolve(&self) -> Result<Vec<SocketAddr>> {
        resolve_all(&self.hosts)
    }
}

/// Resolves `host:port` strings (names or literal addresses).
pub fn resolve_all(hosts: &[String]) -> Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for host in hosts {
        let addr = host
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve '{host}' (expected host:port)"))?
            .next()
            .with_context(|| format!("'{host}' resolves to no address"))?;
        out.push(addr);
    }
    Ok(out)
}

/// The port of `host`, if it reads as `host:port` (an IPv6 address in brackets) with a valid
/// port; why not, if not. Resolving it is left for later: a name may not resolve yet.
pub fn check_host_port(host: &str) -> Result<u16, String> {
    if host.matches(':').count() > 1 && !host.starts_with('[') {
        return Err(format!(
            "'{host}' is ambiguous: write an IPv6 address in brackets, [addr]:port"
        ));
    }
    // "[::1]" is an IPv6 address without a port.
    let port = host
        .rsplit_once(':')
        .filter(|_| !host.ends_with(']'))
        .map(|(_, port)| port);
    match port {
        None | Some("") => Err(format!("'{host}' has no port (expected host:port)")),
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("'{host}' has no valid port ('{port}': expected 0-65535)")),
    }
}

/// A `host:port` option (clap's value parser): checked as [`check_host_port`], so a missing
/// port is a usage error (status 2), as it is in a link.
pub fn parse_host_port(text: &str) -> Result<String, String> {
    let host = text.trim();
    check_host_port(host)?;
    Ok(host.to_string())
}

impl FromStr for Link {
    type Err = anyhow::Error;

    /// Accepts `bl://ID[@host:port,…][?tr=udp://host:port&…]` or a bare stream id.
    fn from_str(text: &str) -> Result<Link> {
        let text = text.trim();
        let Some(rest) = text.strip_prefix(SCHEME) else {
            if text.contains('@') || text.contains('?') {
                bail!("'{text}' is not a link: write bl://<stream-id>@host:port");
            }
            return Ok(Link {
                stream: text.parse()?,
                hosts: Vec::new(),
                trackers: Vec::new(),
            });
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (id, hosts) = match rest.split_once('@') {
            Some((id, hosts)) => (id, Some(hosts)),
            None => (rest, None),
        };
        let hosts: Vec<String> = hosts
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(String::from)
            .collect();
        if rest.contains('@') && hosts.is_empty() {
            bail!("malformed link '{text}': no host:port after '@'");
        }
        for host in &hosts {
            check_host_port(host)
                .map_err(|why| anyhow::anyhow!("malformed link '{text}': {why}"))?;
        }
        let mut trackers = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("tr", url)) => trackers.push(
                    url.parse()
                        .with_context(|| format!("malformed link '{text}'"))?,
                ),
                _ => bail!("malformed link '{text}': unknown parameter '{pair}' (expected tr=udp://host:port)"),
            }
        }
        Ok(Link {
            stream: id.parse()?,
            hosts,
            trackers,
        })
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.stream)?;
        if !self.hosts.is_empty() {
            write!(f, "@{}", self.hosts.join(","))?;
        }
        for (i, t) in self.trackers.iter().enumerate() {
            write!(f, "{}tr={t}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::identity::StreamKey;

    #[test]
    fn parses_links_and_bare_ids() {
        let id = StreamKey::from_seed([4; 32]).id();
        let link: Link = format!("bl://{id}@127.0.0.1:7000,[::1]:7001")
            .parse()
            .unwrap();
        assert_eq!(link.stream, id);
        assert_eq!(link.resolve().unwrap().len(), 2);
        assert_eq!(link.to_string().parse::<Link>().unwrap(), link);
        let bare: Link = id.to_string().parse().unwrap();
        assert!(bare.hosts.is_empty());
        assert!("bl://nonsense".parse::<Link>().is_err());
        assert!(format!("bl://{id}@").parse::<Link>().is_err());
        // Found by trackers or the DHT alone.
        let alone: Link = format!("bl://{id}").parse().unwrap();
        assert!(alone.hosts.is_empty() && alone.trackers.is_empty());
        let tracked: Link = format!("bl://{id}?tr=udp://t.example:6969&tr=udp://u:1")
            .parse()
            .unwrap();
        assert_eq!(tracked.trackers.len(), 2);
        assert_eq!(tracked.to_string().parse::<Link>().unwrap(), tracked);
        let both: Link = format!("bl://{id}@h:1?tr=udp://t:2").parse().unwrap();
        assert_eq!((both.hosts.len(), both.trackers.len()), (1, 1));
        assert!(format!("bl://{id}?tr=http://t/announce")
            .parse::<Link>()
            .is_err());
        assert!(format!("bl://{id}?x=1").parse::<Link>().is_err());
    }
}
