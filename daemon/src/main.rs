//! The `guanxi` binary: see the `guanxi` library crate for everything it does.

fn main() -> std::process::ExitCode {
    guanxi::main_entry()
}
