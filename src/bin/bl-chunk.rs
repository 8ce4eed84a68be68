//! bl-chunk: cut MPEG-TS from stdin into signed chunks on stdout.
//! The work is in `bl::cmd::chunk`.

use std::process::ExitCode;

fn main() -> ExitCode {
    bl::cli::main("bl-chunk", bl::cmd::chunk::run)
}
