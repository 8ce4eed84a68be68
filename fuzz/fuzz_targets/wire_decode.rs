//! Any datagram: `wire::decode` returns a message or an error, never panics, and what it
//! accepts re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = bl::wire::decode(data) {
        let again = bl::wire::encode(&message).expect("a decoded message encodes");
        assert_eq!(bl::wire::decode(&again).ok(), Some(message));
    }
});
