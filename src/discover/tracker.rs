//! BEP 15 UDP tracker client: connect, then announce, on a socket of its own.
//!
//! The messages are aquatic_udp_protocol's (the Rust tracker aquatic's own types), so none is
//! encoded by hand. Timeouts are shorter than BEP 15's 15 × 2ⁿ s: a viewer waits for a picture
//! and there are other trackers and the DHT to ask; an unanswered tracker is asked again at
//! the next round.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aquatic_udp_protocol::{
    AnnounceActionPlaceholder, AnnounceEvent, AnnounceRequest, ConnectRequest, ConnectionId,
    InfoHash, Ipv4AddrBytes, NumberOfBytes, NumberOfPeers, PeerId, PeerKey, Port, Request,
    Response, TransactionId,
};

/// Longest wait for one answer; two tries per request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
const TRIES: u32 = 2;
/// For the `stopped` announce on the way out: one try, this long.
const QUICK_TIMEOUT: Duration = Duration::from_millis(300);
/// A connection id is good for a minute (BEP 15).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Peers asked for per announce: enough to find the swarm; peer exchange does the rest.
const PEERS_WANTED: i32 = 50;

/// A `udp://host:port[/announce]` tracker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerUrl {
    /// `host:port` as written.
    pub host: String,
}

impl std::str::FromStr for TrackerUrl {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<TrackerUrl> {
        let Some(rest) = text.strip_prefix("udp://") else {
            bail!("tracker '{text}' is not a UDP tracker: expected udp://host:port");
        };
        let host = rest.split('/').next().unwrap_or_default();
        match host.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
            Some((h, Ok(p))) if !h.is_empty() && p != 0 => Ok(TrackerUrl {
                host: host.to_string(),
            }),
            _ => bail!("tracker '{text}' has no host:port (expected udp://host:port)"),
        }
    }
}

impl std::fmt::Display for TrackerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "udp://{}", self.host)
    }
}

/// What one announce learned.
#[derive(Debug, Clone)]
pub struct Announced {
    pub peers: Vec<SocketAddr>,
    /// How long the tracker asks us to wait before the next announce.
    pub interval: Duration,
}

/// One tracker, with the connection id it gave us.
pub struct Tracker {
    pub url: TrackerUrl,
    socket: UdpSocket,
    connection: Option<(ConnectionId, Instant)>,
    next_transaction: i32,
}

impl Tracker {
    pub fn new(url: TrackerUrl, seed: u64) -> Result<Tracker> {
        let socket = UdpSocket::bind("0.0.0.0:0").context("cannot open a UDP socket")?;
        socket.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(Tracker {
            url,
            socket,
            connection: None,
            next_transaction: seed as i32,
        })
    }

    fn transaction(&mut self) -> TransactionId {
        self.next_transaction = self.next_transaction.wrapping_add(1);
        TransactionId::new(self.next_transaction)
    }

    /// Sends `request` and waits for the answer with its transaction id, from the tracker's
    /// address only; anything else is dropped.
    fn ask(
        &mut self,
        addr: SocketAddr,
        request: &Request,
        tid: TransactionId,
        quick: bool,
    ) -> Result<Response> {
        let mut bytes = Vec::with_capacity(100);
        request.write_bytes(&mut bytes)?;
        let mut buf = [0u8; 2048];
        let (tries, timeout) = match quick {
            true => (1, QUICK_TIMEOUT),
            false => (TRIES, ANSWER_TIMEOUT),
        };
        self.socket.set_read_timeout(Some(timeout))?;
        // Every BEP 15 request carries its transaction id at bytes 12..16, every answer at 4..8.
        let tid_bytes = bytes.get(12..16).map(<[u8]>::to_vec);
        // An answer with our transaction id too short to parse: Debian's opentracker answers
        // an announce for an infohash not on its access list with 8 bytes and nothing else.
        let mut cut_short = false;
        for _ in 0..tries {
            self.socket.send_to(&bytes, addr)?;
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                let Ok((n, from)) = self.socket.recv_from(&mut buf) else {
                    break;
                };
                if from != addr {
                    continue;
                }
                let Ok(response) = Response::parse_bytes(buf.get(..n).unwrap_or_default(), true)
                else {
                    cut_short |= tid_bytes.is_some() && buf.get(4..8) == tid_bytes.as_deref();
                    continue;
                };
                let answer_tid = match &response {
                    Response::Connect(r) => r.transaction_id,
                    Response::AnnounceIpv4(r) => r.fixed.transaction_id,
                    Response::AnnounceIpv6(r) => r.fixed.transaction_id,
                    Response::Scrape(r) => r.transaction_id,
                    Response::Error(r) => r.transaction_id,
                };
                if answer_tid == tid {
                    return Ok(response);
                }
            }
        }
        if cut_short {
            bail!(
                "tracker {} answered with nothing (is the stream's infohash on its access list?)",
                self.url
            );
        }
        bail!("no answer from tracker {}", self.url)
    }

    /// Announces that we serve `info_hash` on UDP `port`, and returns the peers it knows.
    pub fn announce(
        &mut self,
        info_hash: [u8; 20],
        peer_id: [u8; 20],
        port: u16,
        event: AnnounceEvent,
        quick: bool,
    ) -> Result<Announced> {
        let addr = self
            .url
            .host
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve tracker {}", self.url))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| anyhow!("tracker {} has no IPv4 address", self.url))?;
        let connection = match self.connection {
            Some((id, at)) if at.elapsed() < CONNECTION_LIFETIME => id,
            _ => {
                let tid = self.transaction();
                let request = Request::Connect(ConnectRequest {
                    transaction_id: tid,
                });
                match self.ask(addr, &request, tid, quick)? {
                    Response::Connect(r) => {
                        self.connection = Some((r.connection_id, Instant::now()));
                        r.connection_id
                    }
                    Response::Error(e) => bail!("tracker {} refused: {}", self.url, e.message),
                    _ => bail!("tracker {} answered connect with something else", self.url),
                }
            }
        };
        let tid = self.transaction();
        let port = NonZeroU16::new(port).ok_or_else(|| anyhow!("cannot announce port 0"))?;
        let request = Request::Announce(AnnounceRequest {
            connection_id: connection,
            action_placeholder: AnnounceActionPlaceholder::default(),
            transaction_id: tid,
            info_hash: InfoHash(info_hash),
            peer_id: PeerId(peer_id),
            bytes_downloaded: NumberOfBytes::new(0),
            // A live stream is never complete: "left" stays non-zero so trackers that count
            // seeders and leechers list us with the others.
            bytes_left: NumberOfBytes::new(1),
            bytes_uploaded: NumberOfBytes::new(0),
            event: event.into(),
            ip_address: Ipv4AddrBytes([0; 4]),
            key: PeerKey::new(peer_id[0] as i32),
            peers_wanted: NumberOfPeers::new(PEERS_WANTED),
            port: Port::new(port),
        });
        match self.ask(addr, &request, tid, quick)? {
            Response::AnnounceIpv4(r) => Ok(Announced {
                peers: r
                    .peers
                    .iter()
                    .map(|p| {
                        SocketAddr::from((std::net::Ipv4Addr::from(p.ip_address), p.port.0.get()))
                    })
                    .filter(|a| a.port() != 0)
                    .take(PEERS_WANTED as usize)
                    .collect(),
                interval: Duration::from_secs(
                    r.fixed.announce_interval.0.get().clamp(0, 86_400) as u64
                ),
            }),
            Response::Error(e) => {
                // The connection id may have expired early: start over next time.
                self.connection = None;
                bail!("tracker {} refused: {}", self.url, e.message)
            }
            _ => bail!("tracker {} answered announce with something else", self.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_urls() {
        let t: TrackerUrl = "udp://tracker.example.net:6969/announce".parse().unwrap();
        assert_eq!(t.host, "tracker.example.net:6969");
        assert_eq!(t.to_string(), "udp://tracker.example.net:6969");
        for bad in [
            "http://t:80/announce",
            "udp://t",
            "udp://:6969",
            "udp://t:0",
            "udp://t:x",
        ] {
            assert!(bad.parse::<TrackerUrl>().is_err(), "{bad}");
        }
    }
}
