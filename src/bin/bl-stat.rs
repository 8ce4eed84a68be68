use std::process::ExitCode;

fn main() -> ExitCode {
    bl::cli::main("bl-stat", bl::cmd::stat::run)
}
