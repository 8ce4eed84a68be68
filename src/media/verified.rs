//! A memo of chunks whose signatures were already checked, shared by many cores in one
//! process. The simulator runs thousands of unchanged cores on the same chunks; checking each
//! ed25519 signature once instead of once per core is what makes 100,000 peers practical.
//!
//! Sound because a hit needs the whole chunk to be equal to one that verified for the same
//! stream: a forger that reuses a valid signature on other bytes misses and is checked.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;

use crate::media::chunk::{all_verify, Chunk, Rejection};
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
        if self.knows(stream, chunk) {
            self.remembered += 1;
            return Ok(());
        }
        self.checked += 1;
        chunk.verify(stream, key)?;
        self.remember(stream, chunk);
        Ok(())
    }

    /// Checks the signatures of those of `chunks` not yet remembered as one batch
    /// ([`all_verify`]), and remembers them all if the batch holds, so that
    /// [`VerifiedChunks::verify`] finds them. A failed batch remembers nothing: each chunk is
    /// then checked alone when it is verified, which names the forgery. Fewer than two new
    /// chunks are left to that single check, which costs the same. Returns how many chunks
    /// the batch verified.
    pub fn verify_ahead(
        &mut self,
        stream: &StreamId,
        key: &VerifyingKey,
        chunks: &[&Arc<Chunk>],
    ) -> usize {
        let new: Vec<&Arc<Chunk>> = chunks
            .iter()
            .copied()
            .filter(|c| !self.knows(stream, c))
            .collect();
        if new.len() < 2 {
            return 0;
        }
        let plain: Vec<&Chunk> = new.iter().map(|c| &***c).collect();
        if !all_verify(&plain, stream, key) {
            return 0;
        }
        self.checked += new.len() as u64;
        for &chunk in &new {
            self.remember(stream, chunk);
        }
        new.len()
    }

    fn knows(&self, stream: &StreamId, chunk: &Arc<Chunk>) -> bool {
        self.by_signature
            .get(&chunk.signature)
            .is_some_and(|(s, known)| {
                s == stream && (Arc::ptr_eq(known, chunk) || **known == **chunk)
            })
    }

    fn remember(&mut self, stream: &StreamId, chunk: &Arc<Chunk>) {
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

    #[test]
    fn a_batch_checked_ahead_is_remembered_only_when_every_chunk_holds() {
        let key = StreamKey::from_seed([3; 32]);
        let id = key.id();
        let vk = id.verifying_key().unwrap();
        let mut memo = VerifiedChunks::new(64);
        let good: Vec<Arc<Chunk>> = (1..=8).map(|seq| Arc::new(chunk(&key, seq))).collect();
        let refs: Vec<&Arc<Chunk>> = good.iter().collect();
        assert_eq!(memo.verify_ahead(&id, &vk, &refs), 8);
        assert_eq!(memo.checked, 8);
        for c in &good {
            assert_eq!(memo.verify(&id, &vk, c), Ok(()));
        }
        assert_eq!((memo.checked, memo.remembered), (8, 8));

        // One forgery among them: nothing is remembered, each is checked alone, and the
        // forgery fails there.
        let mut memo = VerifiedChunks::new(64);
        let mut forged = chunk(&key, 9);
        forged.payload[5] ^= 1;
        let forged = Arc::new(forged);
        let mut mixed = refs.clone();
        mixed.insert(3, &forged);
        assert_eq!(memo.verify_ahead(&id, &vk, &mixed), 0);
        assert_eq!((memo.checked, memo.by_signature.len()), (0, 0));
        assert_eq!(memo.verify(&id, &vk, &forged), Err(Rejection::BadSignature));
        assert_eq!(memo.verify(&id, &vk, &good[0]), Ok(()));
        assert_eq!(memo.remembered, 0);

        // A malformed chunk (not whole TS packets) fails the batch as its own check would.
        let mut memo = VerifiedChunks::new(64);
        let mut bent = chunk(&key, 10);
        bent.payload.push(0);
        let bent = Arc::new(bent);
        memo.verify_ahead(&id, &vk, &[&good[0], &good[1], &bent]);
        assert_eq!(memo.by_signature.len(), 0);
        assert_eq!(memo.verify(&id, &vk, &bent), Err(Rejection::Malformed));
    }
}
