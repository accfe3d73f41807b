//! Errors of the harness, one `thiserror` enum per layer.
//!
//! Operating errors (a refused connect, a reset socket, a server that never says it is ready)
//! are values: a connection fault is counted and ends that connection only; a setup fault ends
//! the run with a message. Programmer errors are asserts, not variants.

use std::io;

use thiserror::Error;

/// Errors that end a run (setup, spawn, output); per-connection faults are counters instead.
#[derive(Debug, Error)]
pub enum BenchError {
    /// An option or a combination of options makes no sense.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A system call or file operation failed while setting up or writing results.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The spawned server did not print its readiness line in time, or exited early.
    #[error("server did not become ready: {0}")]
    ServerNotReady(String),
    /// A publisher connection could not be established or was refused by the server.
    #[error("publisher: {0}")]
    Publisher(String),
    /// Clients failed to open enough connections to run the scenario.
    #[error("ramp failed: {0}")]
    Ramp(String),
    /// A results file (for `--compare-floor`) could not be read or parsed.
    #[error("cannot read results file {path}: {reason}")]
    Results {
        /// The file that was read.
        path: String,
        /// Why it could not be used.
        reason: String,
    },
    /// A client or server thread panicked or disappeared.
    #[error("thread failed: {0}")]
    Thread(String),
}

impl BenchError {
    /// Wraps an `io::Error` with what the harness was doing when it happened.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        BenchError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for run-ending errors.
pub type BenchResult<T> = Result<T, BenchError>;
