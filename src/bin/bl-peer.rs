use std::process::ExitCode;

fn main() -> ExitCode {
    bl::cli::main("bl-peer", bl::cmd::peer::run)
}
