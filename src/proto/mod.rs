//! The protocol layer: what travels between nodes. `wire` encodes and decodes datagrams
//! (every decoder bounded), `link` parses and prints `bl://` links.

pub mod link;
pub mod wire;
