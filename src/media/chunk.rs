//! The signed unit of a stream: whole TS packets with a sequence number, capture time, flags
//! and an ed25519 signature by the stream key.
//!
//! A chunk does not carry its stream id (32 bytes would not fit the datagram budget); the id is
//! known from the pipe header or the swarm handshake and is part of the signed message, so a
//! chunk of one stream never verifies as a chunk of another.

use anyhow::{anyhow, Result};
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::media::identity::{StreamId, StreamKey};
use crate::media::ts::PACKET_SIZE;

/// Largest UDP payload bl sends: the IPv6 minimum MTU (1280) less IPv6 and UDP headers, so no
/// datagram is ever fragmented on any path.
pub const MAX_DATAGRAM: usize = 1232;
/// Default and largest chunk payload: six TS packets, which with the chunk header, signature
/// and datagram header still fits [`MAX_DATAGRAM`] (checked by a test in `wire`).
pub const MAX_PAYLOAD: usize = 6 * PACKET_SIZE;
/// Largest encoded chunk accepted by any decoder (header + payload + signature, generous).
pub const MAX_ENCODED_CHUNK: usize = MAX_PAYLOAD + 128;

/// Flag: the chunk starts at a random-access point (optionally preceded by PAT/PMT).
pub const FLAG_KEYFRAME: u8 = 0x01;
/// Flag: the end record. It carries no payload, and its seq is the stream's last: no chunk
/// follows it. Because it is signed like any chunk, only the stream key can end a stream.
pub const FLAG_END: u8 = 0x02;
/// Flags this version understands; a chunk with others set is still relayed and verified.
pub const KNOWN_FLAGS: u8 = FLAG_KEYFRAME | FLAG_END;

/// Domain separation for signatures, so a bl chunk signature is never valid for anything else.
const SIGNING_CONTEXT: &[u8] = b"bl-chunk-v1";

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub seq: u64,
    /// Microseconds since the UNIX epoch when the chunk's last byte was read by bl-chunk.
    pub capture_us: u64,
    pub flags: u8,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    #[serde(with = "serde_big_array::BigArray")]
    pub signature: [u8; 64],
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("seq", &self.seq)
            .field("capture_us", &self.capture_us)
            .field("flags", &self.flags)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// Why a chunk was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The payload is not whole TS packets or is too large.
    Malformed,
    /// The signature does not verify against the stream key.
    BadSignature,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rejection::Malformed => "malformed (payload not whole TS packets)",
            Rejection::BadSignature => "bad signature",
        })
    }
}

fn signed_message(
    stream: &StreamId,
    seq: u64,
    capture_us: u64,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + 32 + 17 + 4 + payload.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(&stream.0);
    msg.extend_from_slice(&seq.to_le_bytes());
    msg.extend_from_slice(&capture_us.to_le_bytes());
    msg.push(flags);
    msg.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    msg.extend_from_slice(payload);
    msg
}

impl Chunk {
    /// Builds and signs a chunk.
    pub fn sign(key: &StreamKey, seq: u64, capture_us: u64, flags: u8, payload: Vec<u8>) -> Chunk {
        let msg = signed_message(&key.id(), seq, capture_us, flags, &payload);
        let signature = key.signing_key().sign(&msg).to_bytes();
        Chunk {
            seq,
            capture_us,
            flags,
            payload,
            signature,
        }
    }

    /// The end record of a stream whose last seq is `seq`, signed.
    pub fn end_record(key: &StreamKey, seq: u64, capture_us: u64) -> Chunk {
        Chunk::sign(key, seq, capture_us, FLAG_END, Vec::new())
    }

    pub fn is_keyframe(&self) -> bool {
        self.flags & FLAG_KEYFRAME != 0
    }

    /// Whether this is the stream's end record.
    pub fn is_end(&self) -> bool {
        self.flags & FLAG_END != 0
    }

    /// Structural checks that need no key: 1 to 6 whole TS packets, or none in an end record.
    pub fn check_shape(&self) -> Result<(), Rejection> {
        if self.is_end() {
            return match self.payload.is_empty() {
                true => Ok(()),
                false => Err(Rejection::Malformed),
            };
        }
        if self.payload.is_empty()
            || self.payload.len() % PACKET_SIZE != 0
            || self.payload.len() > MAX_PAYLOAD
        {
            return Err(Rejection::Malformed);
        }
        if self
            .payload
            .chunks_exact(PACKET_SIZE)
            .any(|p| p[0] != crate::media::ts::SYNC_BYTE)
        {
            return Err(Rejection::Malformed);
        }
        Ok(())
    }

    /// The message the signature covers, for batch verification.
    pub fn signed_message(&self, stream: &StreamId) -> Vec<u8> {
        signed_message(stream, self.seq, self.capture_us, self.flags, &self.payload)
    }

    /// Verifies shape and signature. `verify_strict` rejects malleable signatures and weak keys.
    pub fn verify(&self, stream: &StreamId, key: &VerifyingKey) -> Result<(), Rejection> {
        self.check_shape()?;
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(&self.signed_message(stream), &signature)
            .map_err(|_| Rejection::BadSignature)
    }

    /// Encodes with bincode's standard configuration (little endian, varint integers).
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a plain struct into a Vec cannot fail.
        bincode::serde::encode_to_vec(self, codec()).unwrap_or_default()
    }

    /// Decodes one chunk from exactly `bytes`, refusing anything larger than
    /// [`MAX_ENCODED_CHUNK`] before allocating and any trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Chunk> {
        if bytes.len() > MAX_ENCODED_CHUNK {
            return Err(anyhow!(
                "chunk of {} bytes exceeds the limit of {MAX_ENCODED_CHUNK}",
                bytes.len()
            ));
        }
        let (chunk, used): (Chunk, usize) = bincode::serde::decode_from_slice(bytes, codec())
            .map_err(|e| anyhow!("undecodable chunk: {e}"))?;
        if used != bytes.len() {
            return Err(anyhow!("{} trailing bytes after chunk", bytes.len() - used));
        }
        Ok(chunk)
    }
}

/// The bincode configuration of every chunk encoding, with an allocation limit.
pub fn codec() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_ENCODED_CHUNK>()
}

/// Whether every chunk has a valid shape and all their signatures verify, checked as one
/// Ed25519 batch (about half the cost per signature from 8 chunks on). False says nothing of
/// which chunk failed: check them one by one to find it.
pub fn all_verify(chunks: &[&Chunk], stream: &StreamId, key: &VerifyingKey) -> bool {
    if chunks.iter().any(|c| c.check_shape().is_err()) {
        return false;
    }
    let messages: Vec<Vec<u8>> = chunks.iter().map(|c| c.signed_message(stream)).collect();
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let signatures: Vec<Signature> = chunks
        .iter()
        .map(|c| Signature::from_bytes(&c.signature))
        .collect();
    let keys = vec![*key; chunks.len()];
    // The batch equation may accept a signature that verify_strict refuses only if its R or
    // the key has a small-order component. The key is refused at parse if weak
    // (`StreamId::verifying_key`), and such an R can only be made by whoever holds the
    // signing key, which a forger does not: a broadcaster that wants its own chunks refused
    // can stop sending them.
    ed25519_dalek::verify_batch(&message_refs, &signatures, &keys).is_ok()
}

/// Verifies many chunks of one stream at once ([`all_verify`]); when the batch fails, chunks
/// are checked one by one to find the culprits. Returns one result per chunk, in order.
pub fn verify_batch(
    chunks: &[Chunk],
    stream: &StreamId,
    key: &VerifyingKey,
) -> Vec<Result<(), Rejection>> {
    let refs: Vec<&Chunk> = chunks.iter().collect();
    if chunks.len() > 1 && all_verify(&refs, stream, key) {
        return vec![Ok(()); chunks.len()];
    }
    chunks.iter().map(|c| c.verify(stream, key)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_payload(packets: usize, fill: u8) -> Vec<u8> {
        let mut v = vec![fill; packets * PACKET_SIZE];
        for p in v.chunks_exact_mut(PACKET_SIZE) {
            p[0] = 0x47;
        }
        v
    }

    #[test]
    fn sign_encode_decode_verify() {
        let key = StreamKey::from_seed([1; 32]);
        let chunk = Chunk::sign(
            &key,
            42,
            1_700_000_000_000_000,
            FLAG_KEYFRAME,
            sample_payload(6, 9),
        );
        let bytes = chunk.encode();
        assert!(bytes.len() <= MAX_ENCODED_CHUNK);
        let back = Chunk::decode(&bytes).unwrap();
        assert_eq!(back, chunk);
        let vk = key.id().verifying_key().unwrap();
        assert_eq!(back.verify(&key.id(), &vk), Ok(()));
    }

    #[test]
    fn only_an_end_record_is_empty_and_it_carries_nothing() {
        let key = StreamKey::from_seed([1; 32]);
        let vk = key.id().verifying_key().unwrap();
        let end = Chunk::end_record(&key, 7, 1);
        assert!(end.is_end() && !end.is_keyframe());
        let back = Chunk::decode(&end.encode()).unwrap();
        assert_eq!(back.verify(&key.id(), &vk), Ok(()));
        let empty = Chunk::sign(&key, 7, 1, 0, Vec::new());
        assert_eq!(empty.verify(&key.id(), &vk), Err(Rejection::Malformed));
        let full_end = Chunk::sign(&key, 7, 1, FLAG_END, sample_payload(1, 0));
        assert_eq!(full_end.verify(&key.id(), &vk), Err(Rejection::Malformed));
        // The flag is signed: a data chunk cannot be turned into an end, nor back.
        let mut turned = end.clone();
        turned.flags = 0;
        assert_eq!(turned.verify(&key.id(), &vk), Err(Rejection::Malformed));
        let mut ended = Chunk::sign(&key, 7, 1, 0, sample_payload(1, 0));
        ended.flags = FLAG_END;
        ended.payload.clear();
        assert_eq!(ended.verify(&key.id(), &vk), Err(Rejection::BadSignature));
    }

    #[test]
    fn tampering_and_foreign_keys_are_rejected() {
        let key = StreamKey::from_seed([1; 32]);
        let other = StreamKey::from_seed([2; 32]);
        let vk = key.id().verifying_key().unwrap();
        let mut chunk = Chunk::sign(&key, 1, 2, 0, sample_payload(2, 3));
        chunk.payload[100] ^= 1;
        assert_eq!(chunk.verify(&key.id(), &vk), Err(Rejection::BadSignature));
        let forged = Chunk::sign(&other, 1, 2, 0, sample_payload(2, 3));
        assert_eq!(forged.verify(&key.id(), &vk), Err(Rejection::BadSignature));
        let mut reseq = Chunk::sign(&key, 1, 2, 0, sample_payload(2, 3));
        reseq.seq = 7;
        assert_eq!(reseq.verify(&key.id(), &vk), Err(Rejection::BadSignature));
    }

    #[test]
    fn batch_finds_the_forged_chunk() {
        let key = StreamKey::from_seed([1; 32]);
        let vk = key.id().verifying_key().unwrap();
        let mut chunks: Vec<Chunk> = (0..8)
            .map(|i| Chunk::sign(&key, i, i, 0, sample_payload(1, i as u8)))
            .collect();
        assert!(verify_batch(&chunks, &key.id(), &vk)
            .iter()
            .all(Result::is_ok));
        chunks[5].payload[50] ^= 0x80;
        let results = verify_batch(&chunks, &key.id(), &vk);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_ok(), i != 5);
        }
    }
}
