//! The media layer: MPEG-TS in, signed chunks, and MPEG-TS out again. No sockets, no swarm.
//!
//! `ts` finds packets and keyframes, `chunker` cuts them into chunks, `chunk` signs and
//! verifies one, `identity` is the stream key and id, `frame` is the chunk stream on pipes
//! (bl-chunk(5)), `verified` remembers signatures already checked, and `join` puts chunks from
//! any number of inputs back in order for playout.

pub mod chunk;
pub mod chunker;
pub mod frame;
pub mod identity;
pub mod join;
pub mod ts;
pub mod verified;
