//! The `companion-hub` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    companion_hub::cli::main_entry()
}
