//! `idle`: N connections and no traffic; what each connection costs the server at rest.
//!
//! Reads the server's RSS and the kernel's TCP memory before the ramp and after it (plus the
//! settle pause), divides by the open connections, then holds the connections for `--duration`
//! answering the server's pings, so a server that drops idle-but-alive clients shows up.

use std::time::{Duration, Instant};

use super::{
    ServerUnderTest, Setup, memory_summary, ramp, record_final_connections, record_ramp, sockstat,
};
use crate::cli::IdleArgs;
use crate::client::ClientPool;
use crate::error::BenchResult;
use crate::payload::{HEADER_BYTES, PayloadKind};

/// Runs the scenario.
pub fn run(args: &IdleArgs) -> BenchResult<()> {
    let config = serde_json::to_value(args).expect("options serialize");
    let mut setup = Setup::new("idle", &args.common, config, "127.0.0.1:9050")?;
    let server = ServerUnderTest::start(&setup)?;
    let channels = setup.channel_names(1)?;
    let (before, sock_before) = (server.sample(), sockstat());
    let pool =
        ClientPool::start(setup.client_config(&channels, 1, HEADER_BYTES, PayloadKind::Text))?;
    let outcome = ramp(&pool, &setup)?;
    std::thread::sleep(setup.common.settle);
    let (after, sock_after) = (server.sample(), sockstat());
    let ramp_report = pool.snapshot(vec![0], 1)?;
    record_ramp(
        &mut setup.summary,
        setup.common.connections,
        &outcome,
        &ramp_report,
    );
    setup.summary.memory = Some(memory_summary(
        before,
        after,
        sock_before,
        sock_after,
        outcome.open,
    ));
    let hold_started = Instant::now();
    // Bounded by --duration.
    while hold_started.elapsed() < setup.common.duration {
        std::thread::sleep(Duration::from_millis(100));
    }
    let final_report = pool.snapshot(vec![0], 2)?;
    record_final_connections(&mut setup.summary, &final_report);
    let still_open = pool.totals().open;
    if still_open < outcome.open {
        setup.summary.problems.push(format!(
            "{} idle connections were closed during the {:?} hold",
            outcome.open - still_open,
            setup.common.duration
        ));
    }
    pool.close_all()?;
    pool.stop()?;
    server.finish(&mut setup.summary);
    setup.finish()
}
