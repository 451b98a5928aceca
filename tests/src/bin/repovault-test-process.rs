//! The real `repovault` entry point, built inside the tests crate so multi-process tests can
//! start workers they can pause (SIGSTOP) and kill.

fn main() {
    std::process::exit(repovault_cli::main_entry());
}
