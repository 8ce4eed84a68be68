//! bl-seed: serve a chunk stream from stdin to a bl swarm over UDP.
//! The work is in `bl::cmd::seed`.

use std::process::ExitCode;

fn main() -> ExitCode {
    bl::cli::main("bl-seed", bl::cmd::seed::run)
}
