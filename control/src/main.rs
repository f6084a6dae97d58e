use clap::Parser;
use telegen::cli::{Cli, Command};

#[global_allocator]
static GLOBAL: telegen_dataplane::alloc::MiMalloc = telegen_dataplane::alloc::MiMalloc;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => telegen::run::run(args),
        Command::Discover(args) => telegen::discovery::run_discover(args),
    };
    if let Err(e) = result {
        eprintln!("telegen: error: {e:#}");
        std::process::exit(1);
    }
}
