//! The files the engine serves for browsers, built into the binary: nothing is fetched from
//! the internet at run time.

/// The player page (`GET /`).
pub const INDEX: &[u8] = include_bytes!("../../web/index.html");
/// hls.js's light build, from the npm registry, pinned (web/vendor/hls.js/README.md).
pub const HLS_JS: &[u8] = include_bytes!("../../web/vendor/hls.js/hls.light.min.js");
/// hls.js's licence (Apache-2.0), served beside it.
pub const HLS_JS_LICENCE: &[u8] = include_bytes!("../../web/vendor/hls.js/LICENSE");
