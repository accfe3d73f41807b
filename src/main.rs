//! The `ringcast` binary: parse the command line, validate it, run the server.

use std::process::ExitCode;

use clap::Parser;
use ringcast::config::Config;

fn main() -> ExitCode {
    let config = Config::parse();
    env_logger::Builder::new()
        .parse_filters(&config.log)
        .format_timestamp_millis()
        .init();
    if let Err(message) = config.validate() {
        eprintln!("ringcast: {message}");
        return ExitCode::from(2);
    }
    #[cfg(feature = "test-hooks")]
    if let Err(message) = ringcast::faults::install(&config.test_fault) {
        eprintln!("ringcast: {message}");
        return ExitCode::from(2);
    }
    let apps = match config.load_apps() {
        Ok(apps) => apps,
        Err(message) => {
            eprintln!("ringcast: {message}");
            return ExitCode::from(2);
        }
    };
    match ringcast::server::run(config, apps) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::FAILURE
        }
    }
}
