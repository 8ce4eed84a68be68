//! The tools' run functions. Each binary in src/bin is `cli::main(name, cmd::x::run)`.

pub mod chunk;
pub mod join;
