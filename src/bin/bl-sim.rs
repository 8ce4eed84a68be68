//! bl-sim: simulate a bl swarm of thousands of peers in virtual time, deterministically.
//! The work is in `bl::cmd::sim`.

use std::process::ExitCode;

fn main() -> ExitCode {
    bl::cli::main("bl-sim", bl::cmd::sim::run)
}
