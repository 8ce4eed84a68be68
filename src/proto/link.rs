//! Stream links: `bl://<stream-id>@host:port[,host:port…]`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use anyhow::{bail, Context, Result};

use crate::media::identity::StreamId;

pub const SCHEME: &str = "bl://";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub stream: StreamId,
    /// Bootstrap addresses as written (resolved by [`Link::resolve`]).
    pub hosts: Vec<String>,
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

impl FromStr for Link {
    type Err = anyhow::Error;

    /// Accepts `bl://ID@host:port,…` or a bare stream id (bootstrap given separately).
    fn from_str(text: &str) -> Result<Link> {
        let text = text.trim();
        let Some(rest) = text.strip_prefix(SCHEME) else {
            if text.contains('@') {
                bail!("'{text}' is not a link: write bl://<stream-id>@host:port");
            }
            return Ok(Link {
                stream: text.parse()?,
                hosts: Vec::new(),
            });
        };
        let Some((id, hosts)) = rest.split_once('@') else {
            bail!("malformed link '{text}': expected bl://<stream-id>@host:port");
        };
        let hosts: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(String::from)
            .collect();
        if hosts.is_empty() {
            bail!("malformed link '{text}': no host:port after '@'");
        }
        for host in &hosts {
            let port = host.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
            if !matches!(port, Some(Ok(_))) {
                bail!("malformed link '{text}': '{host}' has no port (expected host:port)");
            }
        }
        Ok(Link {
            stream: id.parse()?,
            hosts,
        })
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}@{}", self.stream, self.hosts.join(","))
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
    }
}
