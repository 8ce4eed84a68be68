//! The HTTP engine (`--http ADDR`): the verified, in-order stream for players that speak
//! HTTP. `/stream.ts` for VLC, mpv and TVs, low-latency HLS for Safari, phones and hls.js,
//! a player page and `/stats.json`. It runs on its own thread beside the node's loop.

mod client;
pub mod live;
mod page;
pub mod request;
mod server;

pub use server::{HttpCounters, HttpServer, HEAD_TIMEOUT_US, MAX_CLIENTS, STALLED_DROP_US};
