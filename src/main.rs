use std::process::ExitCode;

fn main() -> ExitCode {
    labctl::run()
}
