//! bl: peer-to-peer live video as small Unix filters. See README.md and docs/.

pub mod addr_map;
pub mod calendar;
pub mod chunk;
pub mod chunker;
pub mod cli;
pub mod cmd;
pub mod driver;
pub mod frame;
pub mod history;
pub mod identity;
pub mod input;
pub mod join;
pub mod link;
pub mod missing;
pub mod node;
pub mod probe;
pub mod sim;
pub mod stats;
pub mod ts;
pub mod verified;
pub mod wire;
