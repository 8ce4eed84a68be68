//! Any chunk body: `Chunk::decode` returns a chunk or an error, never panics; shape checks
//! and verification of what it accepts never panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(chunk) = bl::chunk::Chunk::decode(data) {
        let _ = chunk.check_shape();
        let key = bl::identity::StreamKey::from_seed([7; 32]);
        let id = key.id();
        if let Ok(vk) = id.verifying_key() {
            let _ = chunk.verify(&id, &vk);
        }
    }
});
