//! bl-stat's side of the protocol: ask running nodes for their figures (StatsRequest), and
//! walk a swarm through peer exchange (Hello → Welcome's token → GetPeers) without joining it.
//!
//! Blocking std sockets with bounded waits: a probe is a short question-and-answer, not a
//! long-running node. Replies are matched by nonce and by the address they came from.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::core::stats::Report;
use crate::media::identity::StreamId;
use crate::proto::wire::{self, Message, Role, MAX_DATAGRAM};

/// How long one round of questions waits for answers.
pub const ROUND_TIMEOUT: Duration = Duration::from_millis(400);
/// Rounds before a silent node is given up.
pub const ROUNDS: u32 = 3;

/// What one node answered, or why not.
#[derive(Debug, Clone)]
pub struct Answer {
    pub addr: SocketAddr,
    pub report: Result<Report, String>,
}

pub struct Probe {
    socket: UdpSocket,
    next_nonce: u64,
}

impl Probe {
    /// Binds an ephemeral port of the family of `towards`.
    pub fn new(towards: SocketAddr) -> Result<Probe> {
        let local: SocketAddr = match towards {
            SocketAddr::V4(_) => "0.0.0.0:0".parse()?,
            SocketAddr::V6(_) => "[::]:0".parse()?,
        };
        let socket = UdpSocket::bind(local).context("cannot open a UDP socket")?;
        let mut seed = [0u8; 8];
        getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("no random bytes: {e}"))?;
        Ok(Probe {
            socket,
            next_nonce: u64::from_le_bytes(seed),
        })
    }

    fn nonce(&mut self) -> u64 {
        self.next_nonce = self.next_nonce.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.next_nonce
    }

    fn send(&self, to: SocketAddr, message: &Message) {
        if let Ok(bytes) = wire::encode(message) {
            // A failed send is a silent node: it is retried, then reported.
            let _ = self.socket.send_to(&bytes, to);
        }
    }

    /// Receives until `deadline`, handing each decoded message to `on`.
    fn receive_until(&self, deadline: Instant, mut on: impl FnMut(SocketAddr, Message) -> bool) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            if self.socket.set_read_timeout(Some(deadline - now)).is_err() {
                return;
            }
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if let Ok(message) = wire::decode(&buf[..n]) {
                        if on(from, message) {
                            return;
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return
                }
                // ICMP port unreachable from an earlier send shows up here on Linux.
                Err(_) => continue,
            }
        }
    }

    /// Asks every address for its report; retries the silent ones.
    pub fn stats(&mut self, addrs: &[SocketAddr]) -> Vec<Answer> {
        let mut answers: BTreeMap<SocketAddr, Result<Report, String>> = BTreeMap::new();
        for _ in 0..ROUNDS {
            let pending: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| !answers.contains_key(a))
                .collect();
            if pending.is_empty() {
                break;
            }
            let mut nonces = BTreeMap::new();
            for addr in &pending {
                let nonce = self.nonce();
                nonces.insert(*addr, nonce);
                self.send(*addr, &wire::stats_request(nonce));
            }
            let mut left = pending.len();
            self.receive_until(Instant::now() + ROUND_TIMEOUT, |from, message| {
                if let Message::StatsReply { nonce, json } = message {
                    if nonces.get(&from) == Some(&nonce) && !answers.contains_key(&from) {
                        let report = serde_json::from_str::<Report>(&json)
                            .map_err(|e| format!("unreadable report: {e}"));
                        answers.insert(from, report);
                        left -= 1;
                    }
                }
                left == 0
            });
        }
        addrs
            .iter()
            .map(|addr| Answer {
                addr: *addr,
                report: answers.remove(addr).unwrap_or_else(|| {
                    Err("no answer (not a bl node, or it answers bl-stat only from loopback; see --stats-anywhere)".into())
                }),
            })
            .collect()
    }

    /// Peers that `addr` knows, learned as a stranger: Hello (not joining: we never
    /// Confirm), then GetPeers with the token from its Welcome.
    pub fn peers_of(&mut self, addr: SocketAddr, stream: StreamId) -> Vec<SocketAddr> {
        for _ in 0..ROUNDS {
            let nonce = self.nonce();
            // An index is given so that a seed does not assign us one.
            self.send(addr, &wire::hello(stream, nonce, Role::Peer, Some(0), None));
            let mut token = None;
            self.receive_until(Instant::now() + ROUND_TIMEOUT, |from, message| {
                if let Message::Welcome(welcome) = message {
                    if from == addr && welcome.nonce == nonce {
                        token = Some(welcome.token);
                        return true;
                    }
                }
                false
            });
            let Some(token) = token else {
                continue;
            };
            self.send(addr, &Message::GetPeers { token });
            let mut peers = None;
            self.receive_until(Instant::now() + ROUND_TIMEOUT, |from, message| {
                if let Message::Peers { peers: list } = message {
                    if from == addr {
                        peers = Some(list.into_iter().map(|p| p.addr).collect());
                        return true;
                    }
                }
                false
            });
            if let Some(peers) = peers {
                return peers;
            }
        }
        Vec::new()
    }

    /// Every node reachable from `start` by peer exchange (breadth first, at most `limit`),
    /// each asked for its report. Each node is asked for peers a few times, since a Peers
    /// message carries a random subset of its neighbours.
    pub fn walk(&mut self, start: SocketAddr, limit: usize) -> Result<Vec<Answer>> {
        let first = self.stats(&[start]);
        let stream = match first.first().map(|a| &a.report) {
            Some(Ok(report)) => report
                .stream_id
                .parse::<StreamId>()
                .map_err(|e| anyhow::anyhow!("{start} reported a bad stream id: {e}"))?,
            Some(Err(why)) => anyhow::bail!("{start}: {why}"),
            None => anyhow::bail!("{start}: no answer"),
        };
        let mut seen: BTreeSet<SocketAddr> = BTreeSet::from([start]);
        let mut queue = VecDeque::from([start]);
        while let Some(addr) = queue.pop_front() {
            for _ in 0..3 {
                for peer in self.peers_of(addr, stream) {
                    if seen.len() < limit && seen.insert(peer) {
                        queue.push_back(peer);
                    }
                }
            }
        }
        let rest: Vec<SocketAddr> = seen.iter().copied().filter(|a| *a != start).collect();
        let mut answers = first;
        answers.extend(self.stats(&rest));
        Ok(answers)
    }
}
