//! `fanout` and `channels`: subscribers on one or M channels, a fixed publish rate, and the
//! latency of every delivery and of every broadcast's last receiver.

use super::{
    ServerUnderTest, Setup, connect_publisher, measure_epoch, ramp, record_final_connections,
    record_ramp, validate_publish, write_latency_files,
};
use crate::cli::{ChannelsArgs, CommonArgs, FanoutArgs, PublishArgs};
use crate::client::ClientPool;
use crate::error::{BenchError, BenchResult};
use crate::report::{compare_with_floors, delivery_problems, delivery_summary};

/// Runs `fanout`: every subscriber on one channel.
pub fn run_fanout(args: &FanoutArgs) -> BenchResult<()> {
    let config = serde_json::to_value(args).expect("options serialize");
    run_delivery("fanout", &args.common, &args.publish, 1, config)
}

/// Runs `channels`: subscribers spread over `--channels`.
pub fn run_channels(args: &ChannelsArgs) -> BenchResult<()> {
    if args.channels == 0 || args.channels > args.common.connections {
        return Err(BenchError::Config(
            "--channels must be in 1..=--connections".into(),
        ));
    }
    let config = serde_json::to_value(args).expect("options serialize");
    run_delivery(
        "channels",
        &args.common,
        &args.publish,
        args.channels,
        config,
    )
}

/// Ramp, one publishing epoch, drain, report.
fn run_delivery(
    scenario: &'static str,
    common: &CommonArgs,
    publish: &PublishArgs,
    channels: usize,
    config: serde_json::Value,
) -> BenchResult<()> {
    validate_publish(publish)?;
    let mut setup = Setup::new(scenario, common, config, "127.0.0.1:9050")?;
    let server = ServerUnderTest::start(&setup)?;
    let channel_names = setup.channel_names(channels)?;
    let pool = ClientPool::start(setup.client_config(
        &channel_names,
        publish.publishers,
        publish.payload_bytes,
        publish.payload_kind,
    ))?;
    let outcome = ramp(&pool, &setup)?;
    let ramp_report = pool.snapshot(vec![0; channels * publish.publishers], 1)?;
    record_ramp(
        &mut setup.summary,
        common.connections,
        &outcome,
        &ramp_report,
    );
    let mut publisher = connect_publisher(&setup, publish, &channel_names)?;
    let subscribers = setup.subscribers_per_channel(channels);
    let measured = measure_epoch(
        &setup,
        &pool,
        &mut publisher,
        &server,
        publish.rate,
        1,
        &subscribers,
    )?;
    let delivery = delivery_summary(
        &measured.report,
        Some(&measured.publish),
        measured.publish.elapsed_s,
        measured.server_cpu_seconds,
    );
    setup
        .summary
        .problems
        .extend(delivery_problems(&delivery, ""));
    setup.summary.comparisons = compare_with_floors(&delivery, &common.compare_floor)?;
    setup.summary.delivery = Some(delivery);
    record_final_connections(&mut setup.summary, &measured.report);
    write_latency_files(
        &setup,
        &measured.report,
        &format!(
            "{scenario}: {} subscribers, {} channel(s), {} msg/s",
            common.connections, channels, publish.rate
        ),
    )?;
    pool.close_all()?;
    pool.stop()?;
    server.finish(&mut setup.summary);
    setup.finish()
}
