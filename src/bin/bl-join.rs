//! bl-join: verify, merge and reorder chunk streams; write MPEG-TS (or chunks) to stdout.
//! The work is in `bl::cmd::join`.

use std::process::ExitCode;

fn main() -> ExitCode {
    bl::cli::main("bl-join", bl::cmd::join::run)
}
