//! A memo of chunks whose signatures were already checked, shared by many cores in one
//! process. The simulator runs thousands of unchanged cores on the same chunks; checking each
//! ed25519 signature once instead of once per core is what makes 100,000 peers practical.
//!
//! Sound because a hit needs the whole chunk to be equal to one that verified for the same
//! stream: a forger that reuses a valid signature on other bytes misses and is checked.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;

use crate::media::chunk::{Chunk, Rejection};
use crate::media::identity::StreamId;

#[derive(Debug)]
pub struct VerifiedChunks {
    by_signature: HashMap<[u8; 64], (StreamId, Arc<Chunk>)>,
    /// Insertion order, to forget the oldest past `capacity`.
    order: VecDeque<[u8; 64]>,
    capacity: usize,
    /// Signatures actually checked (misses).
    pub checked: u64,
    /// Checks saved (hits).
    pub remembered: u64,
}

impl VerifiedChunks {
    pub fn new(capacity: usize) -> Self {
        VerifiedChunks {
            by_signature: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            checked: 0,
            remembered: 0,
        }
    }

    /// Same answer as [`Chunk::verify`], computed at most once per distinct chunk.
    pub fn verify(
        &mut self,
        stream: &StreamId,
        key: &VerifyingKey,
        chunk: &Arc<Chunk>,
    ) -> Result<(), Rejection> {
        if let Some((known_stream, known)) = self.by_signature.get(&chunk.signature) {
            if known_stream == stream && (Arc::ptr_eq(known, chunk) || **known == **chunk) {
                self.remembered += 1;
                return Ok(());
            }
        }
        self.checked += 1;
        chunk.verify(stream, key)?;
        if self
            .by_signature
            .insert(chunk.signature, (*stream, chunk.clone()))
            .is_none()
        {
            self.order.push_back(chunk.signature);
        }
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.by_signature.remove(&oldest);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::identity::StreamKey;

    fn chunk(key: &StreamKey, seq: u64) -> Chunk {
        let mut payload = vec![seq as u8; 188];
        payload[0] = 0x47;
        Chunk::sign(key, seq, 1, 0, payload)
    }

    #[test]
    fn remembers_good_chunks_and_still_rejects_forgeries() {
        let key = StreamKey::from_seed([3; 32]);
        let id = key.id();
        let vk = id.verifying_key().unwrap();
        let mut memo = VerifiedChunks::new(2);
        let good = Arc::new(chunk(&key, 1));
        assert_eq!(memo.verify(&id, &vk, &good), Ok(()));
        // An equal copy (decoded elsewhere) is a hit.
        assert_eq!(memo.verify(&id, &vk, &Arc::new((*good).clone())), Ok(()));
        assert_eq!((memo.checked, memo.remembered), (1, 1));
        // The same signature over other bytes is checked, and fails.
        let mut forged = (*good).clone();
        forged.payload[5] ^= 1;
        assert!(memo.verify(&id, &vk, &Arc::new(forged)).is_err());
        // The same chunk for another stream is checked, and fails.
        let other = StreamKey::from_seed([4; 32]).id();
        let other_vk = other.verifying_key().unwrap();
        assert!(memo.verify(&other, &other_vk, &good).is_err());
        // Bounded: the oldest is forgotten.
        for seq in 2..10 {
            memo.verify(&id, &vk, &Arc::new(chunk(&key, seq))).unwrap();
        }
        assert!(memo.by_signature.len() <= 2 && memo.order.len() <= 2);
    }
}
