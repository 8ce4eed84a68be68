//! The tools' run functions. Each binary in src/bin is `cli::main(name, cmd::x::run)`.

pub mod chunk;
pub mod cli;
pub mod join;
pub mod peer;
pub mod seed;
pub mod sim;
pub mod stat;
mod swarm_args;
