//! The sans-IO swarm core: the seed and peer state machine and the structures it owns. It
//! never reads a clock, a socket or the OS RNG; the driver and the simulator feed it time and
//! bytes and drain what it wants sent, played and said.

pub mod addr_map;
pub mod climb;
pub mod config;
pub mod guard;
pub mod history;
pub mod membership;
pub mod missing;
pub mod neighbours;
pub mod node;
pub mod outbox;
pub mod place;
pub mod playout;
pub mod proximity;
pub mod push_log;
pub mod reachability;
pub mod repair;
pub mod rng;
pub mod root_release;
pub mod seq_times;
pub mod stats;
pub mod stripes;
pub mod timers;
pub mod tree;
pub mod units;
