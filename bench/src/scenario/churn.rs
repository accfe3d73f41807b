//! `churn`: keep a population of N connections, replace `--cycles` of them (disconnect then
//! reconnect) at `--churn-rate`, optionally under traffic, then check that the server's fds and
//! RSS return: to the ramp level with the same population, and to the baseline once all close.

use std::time::{Duration, Instant};

use super::{
    ServerUnderTest, Setup, connect_publisher, ramp, record_final_connections, record_ramp,
    validate_publish, wait_for_deliveries,
};
use crate::cli::ChurnArgs;
use crate::client::ClientPool;
use crate::error::{BenchError, BenchResult};
use crate::report::{ChurnSummary, delivery_problems, delivery_summary};
use crate::server::ProcSample;

/// Time allowed for the server to release closed connections before the last reading.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Runs the scenario.
pub fn run(args: &ChurnArgs) -> BenchResult<()> {
    validate_publish(&args.publish)?;
    if args.churn_rate <= 0.0 || args.cycles == 0 {
        return Err(BenchError::Config(
            "--churn-rate and --cycles must be positive".into(),
        ));
    }
    let config = serde_json::to_value(args).expect("options serialize");
    let mut setup = Setup::new("churn", &args.common, config, "127.0.0.1:9050")?;
    let server = ServerUnderTest::start(&setup)?;
    let publish = &args.publish;
    let channel_names = setup.channel_names(1)?;
    let baseline = server.sample();
    let pool = ClientPool::start(setup.client_config(
        &channel_names,
        publish.publishers,
        publish.payload_bytes,
        publish.payload_kind,
    ))?;
    let outcome = ramp(&pool, &setup)?;
    std::thread::sleep(setup.common.settle);
    let after_ramp = server.sample();
    let ramp_report = pool.snapshot(vec![0; publish.publishers], 1)?;
    record_ramp(
        &mut setup.summary,
        args.common.connections,
        &outcome,
        &ramp_report,
    );

    let churn_started = Instant::now();
    let cycles_before = pool.totals().churn_cycles;
    pool.start_churn(args.churn_rate, args.cycles)?;
    // Traffic (if any) runs for --duration while the churn goes on; the churn itself is bounded
    // by its own deadline below.
    let publish_report = if publish.rate > 0.0 {
        let mut publisher = connect_publisher(&setup, publish, &channel_names)?;
        Some(publisher.run(publish.rate, setup.common.duration, 1)?)
    } else {
        None
    };
    let churn_deadline = Duration::from_secs_f64(args.cycles as f64 / args.churn_rate * 2.0)
        + setup.common.connect_timeout
        + Duration::from_secs(5);
    // Bounded by the churn deadline.
    while pool.totals().churn_cycles - cycles_before < args.cycles
        && churn_started.elapsed() < churn_deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let churn_s = churn_started.elapsed().as_secs_f64();
    let cycles_completed = pool.totals().churn_cycles - cycles_before;
    if let Some(report) = &publish_report {
        wait_for_deliveries(&pool, u64::MAX, setup.common.drain);
        let measured = pool.snapshot(report.sent_per_stream.clone(), 2)?;
        let mut delivery = delivery_summary(&measured, Some(report), report.elapsed_s, None);
        // A churned connection's receipts cannot be taken back from the per-broadcast receiver
        // counts, so "last receiver" is undefined under churn: report it as not measured.
        delivery.last_receiver = Default::default();
        delivery.broadcasts_complete = 0;
        delivery.broadcasts_incomplete = 0;
        setup
            .summary
            .problems
            .extend(delivery_problems(&delivery, "connections never churned: "));
        setup.summary.delivery = Some(delivery);
    }
    std::thread::sleep(setup.common.settle);
    let after_churn = server.sample();
    let final_report = pool.snapshot(vec![0; publish.publishers], 3)?;
    record_final_connections(&mut setup.summary, &final_report);
    pool.close_all()?;
    std::thread::sleep(RELEASE_WAIT.max(setup.common.settle));
    let after_close = server.sample();
    pool.stop()?;

    let churn = churn_summary(
        args,
        cycles_completed,
        churn_s,
        [baseline, after_ramp, after_churn, after_close],
    );
    if cycles_completed < args.cycles {
        setup.summary.problems.push(format!(
            "only {cycles_completed} of {} churn cycles completed",
            args.cycles
        ));
    }
    if churn.fds_returned_to_baseline == Some(false) {
        setup.summary.problems.push(format!(
            "server fds did not return to baseline: {:?} more after close",
            churn.fd_delta_after_close
        ));
    }
    if churn.rss_returned_to_baseline == Some(false) {
        setup.summary.problems.push(format!(
            "server RSS did not return to baseline: {:?} bytes more after close ({:?} bytes growth during the churn itself; \
             an allocator keeping freed memory looks the same as a leak here)",
            churn.rss_delta_after_close_bytes, churn.rss_delta_after_churn_bytes
        ));
    }
    setup.summary.churn = Some(churn);
    server.finish(&mut setup.summary);
    setup.finish()
}

/// Builds the churn section from the four readings.
fn churn_summary(
    args: &ChurnArgs,
    cycles_completed: u64,
    churn_s: f64,
    samples: [Option<ProcSample>; 4],
) -> ChurnSummary {
    let [baseline, after_ramp, after_churn, after_close] = samples;
    let delta =
        |from: Option<ProcSample>, to: Option<ProcSample>, field: fn(&ProcSample) -> u64| {
            from.zip(to)
                .map(|(from, to)| field(&to) as i64 - field(&from) as i64)
        };
    let fds = |sample: &ProcSample| sample.fds;
    let rss = |sample: &ProcSample| sample.rss_bytes;
    let fd_delta_after_close = delta(baseline, after_close, fds);
    let rss_delta_after_close_bytes = delta(baseline, after_close, rss);
    let ramp_growth = delta(baseline, after_ramp, rss).unwrap_or(0).max(0);
    ChurnSummary {
        cycles_requested: args.cycles,
        cycles_completed,
        churn_s,
        baseline,
        after_ramp,
        after_churn,
        after_close,
        fd_delta_after_churn: delta(after_ramp, after_churn, fds),
        fd_delta_after_close,
        rss_delta_after_churn_bytes: delta(after_ramp, after_churn, rss),
        rss_delta_after_close_bytes,
        fds_returned_to_baseline: fd_delta_after_close.map(|delta| delta <= 0),
        rss_returned_to_baseline: rss_delta_after_close_bytes
            .map(|delta| delta <= (1 << 20) + ramp_growth / 10),
    }
}
