fn main() {
    std::process::exit(repovault_cli::main_entry());
}
