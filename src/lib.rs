//! bl: peer-to-peer live video as small Unix filters. See README.md and docs/ARCHITECTURE.md.
//!
//! The layers, bottom up: [`media`] (TS, chunks, signatures, playout order), [`proto`] (the
//! datagrams), [`core`] (the sans-IO swarm state machine), [`net`] (the mio driver around
//! it), [`sim`] (thousands of cores in virtual time) and [`cmd`] (the tools).

pub mod cmd;
pub mod core;
pub mod discover;
pub mod media;
pub mod net;
pub mod proto;
pub mod serve;
pub mod sim;

// Stable paths for the tests, the binaries and the docs.
pub use cmd::cli;
pub use media::{chunk, frame, identity, ts};
pub use proto::wire;
