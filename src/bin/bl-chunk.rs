use std::process::ExitCode;

fn main() -> ExitCode {
    bl::cli::main("bl-chunk", bl::cmd::chunk::run)
}
