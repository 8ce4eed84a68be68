//! bl-peer: join a bl swarm, forward to other viewers, write the stream to stdout.
//! The work is in `bl::cmd::peer`.

use std::process::ExitCode;

fn main() -> ExitCode {
    bl::cli::main("bl-peer", bl::cmd::peer::run)
}
