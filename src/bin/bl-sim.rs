use std::process::ExitCode;

fn main() -> ExitCode {
    bl::cli::main("bl-sim", bl::cmd::sim::run)
}
