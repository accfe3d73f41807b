//! `ringcast-bench`: parse the command line and run the chosen scenario. No logic lives here.

mod cli;
mod client;
mod clock;
mod error;
mod floor;
mod histogram;
mod payload;
mod plot;
mod publisher;
mod pusher;
mod report;
mod scenario;
mod sequence;
mod server;
mod sysinfo;
mod ws;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match scenario::run(cli.scenario) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringcast-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
