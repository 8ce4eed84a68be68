//! Datagram messages between seeds and peers (docs/PROTOCOL.md).
//!
//! A datagram is `"bl"` | version u8 | bincode(Message) and never exceeds [`MAX_DATAGRAM`].
//! Decoding is bounded: the datagram length is checked first, bincode runs with an allocation
//! limit, and lists are capped after decoding; hostile bytes give an error, never a panic.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

use crate::core::stripes::MAX_STRIPES;
use crate::media::chunk::Chunk;
pub use crate::media::chunk::MAX_DATAGRAM;
use crate::media::identity::StreamId;

pub const MAGIC: &[u8; 2] = b"bl";
/// 2: the end of a stream is its signed end record (a chunk), no longer an unsigned End
/// message; a Welcome names no end; a Refuse answers a Hello for another stream.
/// 3: a Welcome names the address the Hello came from (`observed`); Introduce and Introduced
/// punch holes through NATs.
/// 4: a Hello is padded to [`HELLO_MIN_SIZE`] (128 bytes), no longer to 1,200.
/// 5: a Have's `recent` bitmap goes complemented ([`complemented`]).
/// 6: a Subscribe may ask the parent to hold its pushes until a keyframe (`hold_after`).
/// 7: a push whose sender pushed the chunk before it in its stripe to the same child goes as
/// [`Message::ChunkPrevPushed`].
/// 8: a peer answers the seqs of a Request it will not serve with a [`Message::Reject`].
pub const WIRE_VERSION: u8 = 8;
const PREFIX_LEN: usize = 3;
/// A Hello is padded to this size so the reply to an unverified address (a Welcome, at most
/// 95 bytes, or a 45-byte Refuse; checked by a test below) is never larger than what it sent:
/// no amplification. It was 1,200 bytes, as QUIC pads its Initials, but a QUIC server's first
/// flight is kilobytes and a Welcome is not: the nearness probes' padded Hellos were 0.79
/// points of the 16.2 % overhead of `bl-sim --peers 10000 --seconds 30` (docs/PERFORMANCE.md).
pub const HELLO_MIN_SIZE: usize = 128;
/// A StatsRequest is padded to this size, a whole datagram, as its reply may be: a node
/// answers one only if it is this long, so the reply is never larger. (At 1,200 bytes, and
/// checked as padding + 64, a 1,144-byte request could bring back 1,232.)
pub const STATS_REQUEST_MIN_SIZE: usize = MAX_DATAGRAM;
/// Most peers in one Peers message.
pub const MAX_PEERS_PER_MESSAGE: usize = 24;
/// Most seqs in one Request.
pub const MAX_REQUEST_SEQS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Seed,
    Peer,
}

/// What a node knows about another one, as passed around by peer exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// Join order assigned by the seed (seed = 0); a member only feeds higher indices.
    pub index: u64,
    /// The stripe this peer is an interior member of.
    pub member: u8,
    /// Its address on its own LAN, as it said in its Confirm: a peer behind the same NAT (the
    /// same public IP) greets this one, since most home routers do not loop traffic to their
    /// own public address back inside (ICE's host candidate).
    pub lan: Option<SocketAddr>,
}

/// First datagram to a node. `index` is the sender's, once the seed assigned one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub stream: StreamId,
    pub nonce: u64,
    pub role: Role,
    pub index: Option<u64>,
    pub member: Option<u8>,
    pub padding: Vec<u8>,
}

/// Stateless answer to a Hello: echoes the nonce, hands out an address token, and (from
/// the seed) assigns the joiner its index and member stripe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub nonce: u64,
    pub token: u64,
    pub role: Role,
    pub index: u64,
    pub member: Option<u8>,
    pub stripes: u8,
    pub assigned: Option<(u64, u8)>,
    pub latest_keyframe: Option<u64>,
    pub latest_seq: Option<u64>,
    /// The address the Hello came from, as the answering node sees it: behind a NAT, the
    /// joiner's public address (its reflexive address, in ICE's words).
    pub observed: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Boxed, as is [`Message::Welcome`]: these two are rare and the largest, and every
    /// message moves through queues (the simulator's most of all) at the size of the largest
    /// variant. A newtype variant encodes as the struct variant did: the wire is unchanged.
    Hello(Box<Hello>),
    Welcome(Box<Welcome>),
    /// Completes the handshake: proves the sender receives at its address.
    Confirm {
        token: u64,
        index: u64,
        member: Option<u8>,
        /// The sender's own address on its LAN (see [`PeerInfo::lan`]).
        lan: Option<SocketAddr>,
    },
    /// Ask for peers. `token` (from the receiver's Welcome) lets a node that is not, or no
    /// longer, a neighbour use the receiver as a tracker: its address is proven.
    GetPeers {
        token: u64,
    },
    Peers {
        peers: Vec<PeerInfo>,
    },
    /// Ask to be fed every chunk of `stripe`. A joiner that waits for the first keyframe
    /// after seq `hold_after` asks the parent to push nothing before a keyframe past it: the
    /// parent then sends that keyframe and the stripe's chunks from it on (see
    /// [`crate::core::tree::hold`]).
    Subscribe {
        stripe: u8,
        hold_after: Option<u64>,
    },
    SubscribeReply {
        stripe: u8,
        accepted: bool,
    },
    /// Stop feeding (from the child) or no longer fed (from the parent).
    Unsubscribe {
        stripe: u8,
    },
    /// Shared, so a relay and the simulator pass one chunk on without copying it.
    Chunk(Arc<Chunk>),
    /// The sender holds `first..=highest - 128` and the seqs set in `recent` (bit i = highest - i);
    /// `children` is how many stripe subscriptions it feeds, `spare` how many more it would
    /// accept and `depth` its hops from the seed
    /// in its member stripe (255: not yet attached); joiners pick the shallowest, least loaded.
    Have {
        first: u64,
        highest: u64,
        #[serde(with = "complemented")]
        recent: u128,
        children: u8,
        spare: u8,
        depth: u8,
    },
    Request {
        seqs: Vec<u64>,
    },
    /// Answer to a Hello for a stream this node does not serve: `stream` is the one it
    /// does. Smaller than the Hello (no amplification); sent only to echo the Hello's nonce.
    Refuse {
        nonce: u64,
        stream: StreamId,
    },
    Goodbye,
    /// Ask for the node's figures (answered only to loopback unless allowed).
    StatsRequest {
        nonce: u64,
        padding: Vec<u8>,
    },
    StatsReply {
        nonce: u64,
        json: String,
    },
    /// Ask a neighbour to introduce us to `peer`, one of its neighbours, at the address it
    /// listed us: it tells `peer` to greet us, both send at once, and each NAT lets the
    /// other's datagrams in (hole punching through a rendezvous, as in BEP 55).
    Introduce {
        peer: SocketAddr,
    },
    /// `peer`, a neighbour of the sender at the address the sender sees, wants to talk:
    /// greet it.
    Introduced {
        peer: SocketAddr,
    },
    /// A chunk pushed by a sender that pushed us the chunk before it in its stripe (seq −
    /// stripes) too: if we lack that one, it was lost on the way to us, not late upstream,
    /// and the sender can answer for it at once. Otherwise the same as [`Message::Chunk`], and just as
    /// long on the wire: the kind is one varint byte either way.
    ChunkPrevPushed(Arc<Chunk>),
    /// A peer's answer to a Request: these seqs will not come from it (it does not hold them,
    /// or its repair budget is spent), so the requester asks elsewhere at once instead of
    /// waiting out the answer's timeout. As BitTorrent's Reject Request (BEP 6).
    Reject {
        seqs: Vec<u64>,
    },
}

impl Message {
    /// The chunk a Chunk or ChunkPrevPushed carries.
    pub fn chunk(&self) -> Option<&Arc<Chunk>> {
        match self {
            Message::Chunk(chunk) | Message::ChunkPrevPushed(chunk) => Some(chunk),
            _ => None,
        }
    }

    /// A short name for counters and logs.
    /// The kind's name, as counted in stats and printed in reports.
    pub fn kind(&self) -> &'static str {
        KIND_NAMES[self.kind_index()]
    }

    /// Position of the kind in [`KIND_NAMES`]: per-kind counters are arrays, not maps, on the
    /// per-datagram path.
    pub fn kind_index(&self) -> usize {
        match self {
            Message::Hello(_) => 0,
            Message::Welcome(_) => 1,
            Message::Confirm { .. } => 2,
            Message::GetPeers { .. } => 3,
            Message::Peers { .. } => 4,
            Message::Subscribe { .. } => 5,
            Message::SubscribeReply { .. } => 6,
            Message::Unsubscribe { .. } => 7,
            Message::Chunk(_) | Message::ChunkPrevPushed(_) => 8,
            Message::Have { .. } => 9,
            Message::Request { .. } => 10,
            Message::Refuse { .. } => 11,
            Message::Goodbye => 12,
            Message::StatsRequest { .. } => 13,
            Message::StatsReply { .. } => 14,
            Message::Introduce { .. } => 15,
            Message::Introduced { .. } => 16,
            Message::Reject { .. } => 17,
        }
    }
}

/// Names of the message kinds, indexed by [`Message::kind_index`].
pub const KIND_NAMES: [&str; 18] = [
    "hello",
    "welcome",
    "confirm",
    "get_peers",
    "peers",
    "subscribe",
    "subscribe_reply",
    "unsubscribe",
    "chunk",
    "have",
    "request",
    "refuse",
    "goodbye",
    "stats_request",
    "stats_reply",
    "introduce",
    "introduced",
    "reject",
];

/// A Have's `recent` bitmap on the wire: complemented (bit set ⇔ seq not held). A peer holds
/// most of its newest 128 seqs, so the bitmap itself has its top bits set and its varint took
/// 17 bytes of a 30-byte Have; complemented it is mostly zeros and short: 29.8 → 23.1 bytes a
/// Have (bl-sim, 3,000 peers × 30 s, seeds 1–4), Haves 1.39 → 1.11 points of overhead at
/// 10,000 peers (docs/PERFORMANCE.md, "A Have's bitmap sent complemented").
mod complemented {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(recent: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u128(!*recent)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        u128::deserialize(d).map(|wire| !wire)
    }
}

/// bincode's limit on what one datagram may claim while it decodes. It counts in-memory
/// sizes, not wire bytes: a u64 claims 8 bytes even when its varint took 1, so a datagram
/// within [`MAX_DATAGRAM`] claims more than its length (a 1,229-byte StatsReply claimed
/// 1,233, and bl-stat lost every reply of a node whose report was that long). A u64 is the
/// largest growth but for `Have.recent` (a u128, 16×, one per message), so 8× the datagram
/// refuses no message that [`encode`] made. What this bounds is what bincode counts:
/// strings and byte vectors. A list (`Request.seqs`, `Peers.peers`) is sized by serde, which
/// reserves at most 1 MiB from a lying length prefix before the ≤ 1,232 bytes run out and
/// the decode fails: bounded and brief.
const MAX_DECODE_CLAIM: usize = 8 * MAX_DATAGRAM;

fn codec() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_CLAIM>()
}

/// Encodes a message into a datagram. Fails only if it would exceed [`MAX_DATAGRAM`].
pub fn encode(message: &Message) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(MAGIC);
    out.push(WIRE_VERSION);
    let body = bincode::serde::encode_to_vec(message, bincode::config::standard())
        .map_err(|e| anyhow!("cannot encode {}: {e}", message.kind()))?;
    out.extend_from_slice(&body);
    if out.len() > MAX_DATAGRAM {
        bail!(
            "{} message of {} bytes exceeds {MAX_DATAGRAM}",
            message.kind(),
            out.len()
        );
    }
    Ok(out)
}

/// The datagram size of `message` without building it (the core counts bytes it sends).
pub fn encoded_len(message: &Message) -> usize {
    let mut size = bincode::enc::write::SizeWriter::default();
    match bincode::serde::encode_into_writer(message, &mut size, bincode::config::standard()) {
        Ok(()) => PREFIX_LEN + size.bytes_written,
        Err(_) => usize::MAX,
    }
}

/// A Hello padded to [`HELLO_MIN_SIZE`].
pub fn hello(
    stream: StreamId,
    nonce: u64,
    role: Role,
    index: Option<u64>,
    member: Option<u8>,
) -> Message {
    let mut hello = Hello {
        stream,
        nonce,
        role,
        index,
        member,
        padding: Vec::new(),
    };
    let bare = encoded_len(&Message::Hello(Box::new(hello.clone())));
    // Under 251 bytes of padding its length stays the one byte `bare` counts.
    let padding = HELLO_MIN_SIZE.saturating_sub(bare);
    hello.padding = vec![0; padding];
    Message::Hello(Box::new(hello))
}

/// A stats request padded to [`STATS_REQUEST_MIN_SIZE`], so the reply never amplifies.
pub fn stats_request(nonce: u64) -> Message {
    let bare = encoded_len(&Message::StatsRequest {
        nonce,
        padding: Vec::new(),
    });
    // One length byte grows to three once padding passes 250 bytes.
    let padding = STATS_REQUEST_MIN_SIZE.saturating_sub(bare + 2);
    Message::StatsRequest {
        nonce,
        padding: vec![0; padding],
    }
}

/// Decodes a datagram. Every failure is an error naming what was wrong.
pub fn decode(datagram: &[u8]) -> Result<Message> {
    if datagram.len() > MAX_DATAGRAM {
        bail!(
            "datagram of {} bytes exceeds {MAX_DATAGRAM}",
            datagram.len()
        );
    }
    let Some((prefix, body)) = datagram.split_first_chunk::<PREFIX_LEN>() else {
        bail!("datagram of {} bytes is too short", datagram.len());
    };
    if &prefix[..2] != MAGIC {
        bail!("not a bl datagram");
    }
    if prefix[2] != WIRE_VERSION {
        bail!("unsupported wire version {}", prefix[2]);
    }
    let (message, used): (Message, usize) = bincode::serde::decode_from_slice(body, codec())
        .map_err(|e| anyhow!("undecodable datagram: {e}"))?;
    if used != body.len() {
        bail!(
            "{} trailing bytes after {}",
            body.len() - used,
            message.kind()
        );
    }
    validate(&message)?;
    Ok(message)
}

/// The checks beyond the encoding that every message must pass: list caps, and stripe
/// numbers and counts within [`MAX_STRIPES`]. [`decode`] applies them; the simulator applies
/// them to every message a core sends, so simulated and real messages meet the same rules.
pub fn validate(message: &Message) -> Result<()> {
    let stripe_ok = |s: u8| s < MAX_STRIPES;
    let member_ok = |m: Option<u8>| m.is_none_or(stripe_ok);
    match message {
        Message::Peers { peers } if peers.len() > MAX_PEERS_PER_MESSAGE => {
            bail!("too many peers ({})", peers.len())
        }
        Message::Peers { peers } if !peers.iter().all(|p| stripe_ok(p.member)) => {
            bail!("a peer's member stripe is beyond {MAX_STRIPES}")
        }
        Message::Request { seqs } if seqs.len() > MAX_REQUEST_SEQS => {
            bail!("too many seqs requested ({})", seqs.len())
        }
        Message::Reject { seqs } if seqs.len() > MAX_REQUEST_SEQS => {
            bail!("too many seqs rejected ({})", seqs.len())
        }
        Message::Welcome(w)
            if w.stripes == 0
                || w.stripes > MAX_STRIPES
                || !member_ok(w.member)
                || !member_ok(w.assigned.map(|(_, m)| m)) =>
        {
            bail!(
                "welcome names {} stripes or a stripe beyond them",
                w.stripes
            )
        }
        Message::Hello(h) if !member_ok(h.member) => bail!("hello names stripe {:?}", h.member),
        Message::Confirm { member, .. } if !member_ok(*member) => {
            bail!("confirm names stripe {member:?}")
        }
        Message::Subscribe { stripe, .. }
        | Message::SubscribeReply { stripe, .. }
        | Message::Unsubscribe { stripe }
            if !stripe_ok(*stripe) =>
        {
            bail!("stripe {stripe} is beyond {MAX_STRIPES}")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::chunk::{FLAG_KEYFRAME, MAX_PAYLOAD};
    use crate::media::identity::StreamKey;

    #[test]
    fn largest_chunk_fits_one_datagram() {
        let key = StreamKey::from_seed([1; 32]);
        let mut payload = vec![0xff; MAX_PAYLOAD];
        payload[0] = 0x47;
        let chunk = Chunk::sign(&key, u64::MAX, u64::MAX, FLAG_KEYFRAME, payload);
        let chunk = Arc::new(chunk);
        let message = Message::Chunk(chunk.clone());
        let bytes = encode(&message).unwrap();
        assert!(bytes.len() <= MAX_DATAGRAM, "{} bytes", bytes.len());
        assert_eq!(encoded_len(&message), bytes.len());
        assert_eq!(decode(&bytes).unwrap(), message);
        // A parent sizes a push once for all its children, whichever kind each gets.
        let after_pushed = Message::ChunkPrevPushed(chunk);
        let other = encode(&after_pushed).unwrap();
        assert_eq!(other.len(), bytes.len());
        assert_eq!(decode(&other).unwrap(), after_pushed);
    }

    /// What `encode` accepts, `decode` accepts: at every length up to the largest, and with
    /// the fields whose in-memory size most exceeds their wire size.
    #[test]
    fn every_message_that_encodes_decodes() {
        let mut checked = 0;
        for n in 0..MAX_DATAGRAM {
            let reply = Message::StatsReply {
                nonce: 1,
                json: "x".repeat(n),
            };
            let Ok(bytes) = encode(&reply) else { break };
            assert_eq!(
                decode(&bytes).ok(),
                Some(reply),
                "StatsReply of {} bytes",
                bytes.len()
            );
            checked = bytes.len();
        }
        assert_eq!(checked, MAX_DATAGRAM, "the largest StatsReply was checked");
        let request = Message::Request {
            seqs: vec![0; MAX_REQUEST_SEQS],
        };
        assert_eq!(decode(&encode(&request).unwrap()).unwrap(), request);
        // A Reject names at most what a Request asked for, at the widest seqs.
        let reject = Message::Reject {
            seqs: vec![u64::MAX; MAX_REQUEST_SEQS],
        };
        let bytes = encode(&reject).unwrap();
        assert!(bytes.len() <= MAX_DATAGRAM);
        assert_eq!(decode(&bytes).unwrap(), reject);
        let longer = Message::Reject {
            seqs: vec![1; MAX_REQUEST_SEQS + 1],
        };
        let bytes = encode(&longer).unwrap();
        assert!(decode(&bytes).is_err(), "a Reject of 33 seqs is refused");
        let v6: SocketAddr = "[ffff::1]:65535".parse().unwrap();
        let peers = Message::Peers {
            peers: vec![
                PeerInfo {
                    addr: v6,
                    index: u64::MAX,
                    member: 0,
                    lan: Some(v6),
                };
                MAX_PEERS_PER_MESSAGE
            ],
        };
        let bytes = encode(&peers).unwrap();
        assert_eq!(decode(&bytes).unwrap(), peers, "{} bytes", bytes.len());
    }

    #[test]
    fn hello_is_padded_and_welcome_is_smaller() {
        let id = StreamKey::from_seed([1; 32]).id();
        // The smallest Hello and the largest.
        let small = encode(&hello(id, 0, Role::Peer, None, None)).unwrap();
        let large = encode(&hello(id, u64::MAX, Role::Seed, Some(u64::MAX), Some(255))).unwrap();
        assert_eq!(small.len(), HELLO_MIN_SIZE);
        assert_eq!(large.len(), HELLO_MIN_SIZE);
        let hello = small;
        let welcome = encode(&Message::Welcome(Box::new(Welcome {
            nonce: u64::MAX,
            token: u64::MAX,
            role: Role::Seed,
            index: u64::MAX,
            member: Some(255),
            stripes: 255,
            assigned: Some((u64::MAX, 255)),
            latest_keyframe: Some(u64::MAX),
            latest_seq: Some(u64::MAX),
            observed: "[2001:db8::1]:65535".parse().unwrap(),
        })))
        .unwrap();
        assert!(welcome.len() <= 95, "{}", welcome.len());
        assert!(welcome.len() < hello.len());
        let refuse = encode(&Message::Refuse {
            nonce: u64::MAX,
            stream: id,
        })
        .unwrap();
        assert!(refuse.len() < hello.len(), "{}", refuse.len());
        // A stats request is a whole datagram, as its reply may be.
        for nonce in [0, u64::MAX] {
            assert_eq!(encode(&stats_request(nonce)).unwrap().len(), MAX_DATAGRAM);
        }
    }

    /// A Have's bitmap goes complemented: a peer holding all of its newest 128 seqs sends
    /// them in one byte, not 17, and the receiver reads back the bitmap that was sent.
    #[test]
    fn a_have_of_everything_recent_is_short_and_reads_back() {
        let have = |recent| Message::Have {
            first: 1_000,
            highest: 100_000,
            recent,
            children: 3,
            spare: 2,
            depth: 4,
        };
        let all = encode(&have(u128::MAX)).unwrap();
        let none = encode(&have(0)).unwrap();
        assert_eq!(all.len() + 16, none.len());
        assert_eq!(all.len(), encoded_len(&have(u128::MAX)));
        let one_missing = !(1u128 << 5);
        for recent in [u128::MAX, 0, one_missing] {
            assert_eq!(
                decode(&encode(&have(recent)).unwrap()).unwrap(),
                have(recent)
            );
        }
    }

    #[test]
    fn full_peer_list_fits() {
        let peers = vec![
            PeerInfo {
                addr: "[2001:db8::1]:65535".parse().unwrap(),
                index: u64::MAX,
                member: 255,
                lan: Some("[2001:db8::2]:65535".parse().unwrap()),
            };
            MAX_PEERS_PER_MESSAGE
        ];
        assert!(encode(&Message::Peers { peers }).is_ok());
    }

    #[test]
    fn hostile_bytes_are_errors() {
        assert!(decode(b"").is_err());
        assert!(decode(b"bl").is_err());
        assert!(decode(b"xx\x01\x00").is_err());
        assert!(decode(b"bl\x09\x00").is_err());
        // A Request claiming a huge list must not allocate it.
        let mut evil = vec![MAGIC[0], MAGIC[1], WIRE_VERSION];
        evil.push(10); // variant index of Request
        evil.extend([253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(decode(&evil).is_err());
    }

    #[test]
    fn stripe_numbers_beyond_the_limit_are_refused_on_decoding() {
        use crate::core::stripes::MAX_STRIPES;
        let welcome = |stripes: u8, member: Option<u8>| {
            Message::Welcome(Box::new(Welcome {
                nonce: 1,
                token: 2,
                role: Role::Peer,
                index: 3,
                member,
                stripes,
                assigned: None,
                latest_keyframe: None,
                latest_seq: None,
                observed: "192.0.2.1:7000".parse().unwrap(),
            }))
        };
        let decodes = |m: &Message| decode(&encode(m).unwrap()).is_ok();
        assert!(decodes(&welcome(4, Some(3))));
        assert!(decodes(&welcome(MAX_STRIPES, Some(MAX_STRIPES - 1))));
        assert!(
            !decodes(&welcome(0, None)),
            "a stream has at least one stripe"
        );
        assert!(!decodes(&welcome(MAX_STRIPES + 1, None)));
        assert!(!decodes(&welcome(4, Some(MAX_STRIPES))));
        assert!(decodes(&Message::Subscribe {
            stripe: MAX_STRIPES - 1,
            hold_after: Some(u64::MAX),
        }));
        assert!(!decodes(&Message::Subscribe {
            stripe: MAX_STRIPES,
            hold_after: None,
        }));
        assert!(!decodes(&Message::Unsubscribe { stripe: 255 }));
        let addr = "127.0.0.1:1".parse().unwrap();
        let peers = |member| Message::Peers {
            peers: vec![PeerInfo {
                addr,
                index: 1,
                member,
                lan: None,
            }],
        };
        assert!(decodes(&peers(0)) && !decodes(&peers(MAX_STRIPES)));
    }
}
