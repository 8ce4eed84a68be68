use std::process::ExitCode;

fn main() -> ExitCode {
    bl::cli::main("bl-seed", bl::cmd::seed::run)
}
