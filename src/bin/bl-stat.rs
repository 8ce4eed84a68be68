//! bl-stat: show the figures of running bl seeds and peers, or of a whole swarm.
//! The work is in `bl::cmd::stat`.

use std::process::ExitCode;

fn main() -> ExitCode {
    bl::cli::main("bl-stat", bl::cmd::stat::run)
}
