//! bl: peer-to-peer live video as small Unix filters. See README.md and docs/.

pub mod chunk;
pub mod chunker;
pub mod cli;
pub mod cmd;
pub mod frame;
pub mod identity;
pub mod input;
pub mod join;
pub mod ts;
