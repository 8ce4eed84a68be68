//! Any chunk stream on a pipe: the reader yields chunks, corrupt-frame reports, an end or an
//! error, never panics, and stops.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = bl::frame::FrameReader::new(std::io::Cursor::new(data)) else {
        return;
    };
    // Each item consumes input: at most one per byte.
    for _ in 0..=data.len() {
        match reader.next_item() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
