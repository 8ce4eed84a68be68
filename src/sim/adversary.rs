//! The adversaries' model: peers that run the honest core but whose datagrams the model
//! rewrites on the way out, as a hostile client would send them. A liar
//! - lies in every Have: it holds everything up to 100,000 seqs past its newest, at depth 0,
//!   with room for 255 more children;
//! - takes every subscription and forwards nothing, nor answers a repair (withholding);
//! - answers GetPeers only with other liars (eclipse);
//! - with every Have, replays a genuine chunk 300 seqs old;
//! - with every tenth Have, sends a forged end record (another key).
//!
//! A withholder is subtler: it forwards nothing, pushes or repairs, to anyone but the seed,
//! so it answers the seed's audits, and announces depth 1 and at least 8 children in every
//! Have, so that its children never look detached and the seed never finds it barren. Withholders are the first peers to join: the seed's root slots go to
//! its oldest members.
//!
//! A liar's own Welcome positions are honest (the core answers Hellos before the model can
//! see whom it answers); tests/hostile.rs covers forged Welcome positions with real
//! processes.

use std::sync::Arc;

use super::*;

/// Who the liars are, and what they forge.
pub(crate) struct Adversaries {
    /// Liars by id, in join order.
    pub(crate) liars: Vec<u32>,
    /// An end record signed by a key that is not the stream's.
    forged_end: Arc<Chunk>,
}

impl Adversaries {
    pub(crate) fn new() -> Adversaries {
        // A fixed key: no draw from the model's RNG, so runs without liars are unchanged.
        let forger = StreamKey::from_seed([0xad; 32]);
        Adversaries {
            liars: Vec::new(),
            forged_end: Arc::new(Chunk::end_record(&forger, u64::MAX / 2, 0)),
        }
    }
}

/// What a liar sends instead of `message`.
pub(crate) enum Lie {
    /// Nothing (a chunk it should push or a repair it should serve).
    Withhold,
    /// These, in order.
    Send(Vec<(Payload, usize)>),
}

/// Rewrites what liar `from` sends.
pub(crate) fn lie(message: Message, from: u32, world: &World) -> Lie {
    let lane = lane_of(from).0;
    match message {
        Message::Chunk(_) | Message::ChunkPrevPushed(_) => Lie::Withhold,
        Message::Have {
            highest, children, ..
        } => {
            let have = Message::Have {
                first: 0,
                highest: highest.saturating_add(100_000),
                recent: u128::MAX,
                children,
                spare: 255,
                depth: 0,
            };
            let mut out = vec![sized(have)];
            let old = highest.saturating_sub(300);
            if let Some(chunk) = world.authentic[lane].get(old as usize) {
                out.push((
                    Payload::Authentic {
                        seq: old,
                        prev_pushed: false,
                    },
                    wire::encoded_len(&Message::Chunk(chunk.clone())),
                ));
            }
            if highest % 10 == 0 {
                out.push(sized(Message::Chunk(world.adversaries.forged_end.clone())));
            }
            Lie::Send(out)
        }
        Message::Peers { peers } => {
            let liars = &world.adversaries.liars;
            let eclipse: Vec<PeerInfo> = liars
                .iter()
                .filter(|&&id| id != from)
                .take(peers.len().max(8))
                .map(|&id| PeerInfo {
                    addr: addr_of(id),
                    index: 1,
                    member: (id % 4) as u8,
                    lan: None,
                })
                .collect();
            Lie::Send(vec![sized(Message::Peers { peers: eclipse })])
        }
        other => Lie::Send(vec![sized(other)]),
    }
}

fn sized(message: Message) -> (Payload, usize) {
    let len = wire::encoded_len(&message);
    (Payload::Message(message), len)
}

/// What a withholder sends instead of `message` to node `to`: chunks only to the seed (0),
/// and Haves at depth 1 feeding at least 8 subscriptions (the seed's barren rule believes a
/// child's claim that it feeds others).
pub(crate) fn withhold(mut message: Message, to: u32) -> Option<(Payload, usize)> {
    match &mut message {
        Message::Chunk(_) | Message::ChunkPrevPushed(_) if to != 0 => return None,
        Message::Have {
            children, depth, ..
        } => {
            *children = (*children).max(8);
            *depth = 1;
        }
        _ => {}
    }
    Some(sized(message))
}
