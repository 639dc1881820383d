//! The `guanxi` daemon, built inside the tests package so that its integration
//! tests can start it as a real process. Same entry point as the real binary.

fn main() -> std::process::ExitCode {
    guanxi::main_entry()
}
