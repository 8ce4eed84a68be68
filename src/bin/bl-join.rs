use std::process::ExitCode;

fn main() -> ExitCode {
    bl::cli::main("bl-join", bl::cmd::join::run)
}
