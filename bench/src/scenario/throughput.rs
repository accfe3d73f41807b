//! `throughput`: raise the publish rate step by step until a step loses messages (or the server
//! answers 503, or the publisher cannot keep up) or its p99 passes the budget; report the highest
//! sustained deliveries per second and per server core (deliveries / server CPU seconds).

use super::{
    ServerUnderTest, Setup, connect_publisher, measure_epoch, ramp, record_final_connections,
    record_ramp, validate_publish, write_latency_files,
};
use crate::cli::ThroughputArgs;
use crate::client::ClientPool;
use crate::error::{BenchError, BenchResult};
use crate::report::{
    StepSummary, ThroughputSummary, compare_with_floors, delivery_problems, delivery_summary,
};

/// Steps at most (epochs are one byte; epoch 0 is the ramp).
const STEPS_LIMIT: u32 = 200;

/// Runs the scenario.
pub fn run(args: &ThroughputArgs) -> BenchResult<()> {
    validate_publish(&args.publish)?;
    if args.publish.rate <= 0.0
        || args.rate_factor <= 1.0
        || args.steps_max == 0
        || args.steps_max > STEPS_LIMIT
    {
        return Err(BenchError::Config(format!(
            "need --rate > 0, --rate-factor > 1 and --steps-max in 1..={STEPS_LIMIT}"
        )));
    }
    if args.channels == 0 || args.channels > args.common.connections {
        return Err(BenchError::Config(
            "--channels must be in 1..=--connections".into(),
        ));
    }
    let config = serde_json::to_value(args).expect("options serialize");
    let mut setup = Setup::new("throughput", &args.common, config, "127.0.0.1:9050")?;
    let server = ServerUnderTest::start(&setup)?;
    let channel_names = setup.channel_names(args.channels)?;
    let publish = &args.publish;
    let pool = ClientPool::start(setup.client_config(
        &channel_names,
        publish.publishers,
        publish.payload_bytes,
        publish.payload_kind,
    ))?;
    let outcome = ramp(&pool, &setup)?;
    let streams = args.channels * publish.publishers;
    let ramp_report = pool.snapshot(vec![0; streams], 1)?;
    record_ramp(
        &mut setup.summary,
        args.common.connections,
        &outcome,
        &ramp_report,
    );
    let mut publisher = connect_publisher(&setup, publish, &channel_names)?;
    let subscribers = setup.subscribers_per_channel(args.channels);
    let mut summary = ThroughputSummary {
        p99_budget_ms: args.p99_budget_ms,
        stop_reason: format!("reached --steps-max {}", args.steps_max),
        ..Default::default()
    };
    let mut best_report = None;
    let mut rate = publish.rate;
    for step in 1..=args.steps_max {
        let measured = measure_epoch(
            &setup,
            &pool,
            &mut publisher,
            &server,
            rate,
            step as u8,
            &subscribers,
        )?;
        let delivery = delivery_summary(
            &measured.report,
            Some(&measured.publish),
            measured.publish.elapsed_s,
            measured.server_cpu_seconds,
        );
        let mut failures = delivery_problems(&delivery, "");
        if delivery.latency.p99_us > args.p99_budget_ms * 1000.0 {
            failures.push(format!(
                "p99 {:.1} ms over the {} ms budget",
                delivery.latency.p99_us / 1000.0,
                args.p99_budget_ms
            ));
        }
        let sustained = failures.is_empty();
        eprintln!(
            "step {step}: rate {rate:.0}/s -> {:.0} deliveries/s, p99 {:.1} us, lost {}{}",
            delivery.deliveries_per_s,
            delivery.latency.p99_us,
            delivery.loss.lost,
            if sustained { "" } else { " (not sustained)" }
        );
        record_final_connections(&mut setup.summary, &measured.report);
        summary.steps.push(StepSummary {
            step,
            delivery,
            sustained,
            failure: (!sustained).then(|| failures.join("; ")),
        });
        if !sustained {
            summary.stop_reason =
                format!("step {step} at {rate:.0} msg/s: {}", failures.join("; "));
            break;
        }
        best_report = Some((step, measured.report));
        rate *= args.rate_factor;
    }
    if let Some((best_step, report)) = &best_report {
        let best = &summary.steps[*best_step as usize - 1].delivery;
        summary.max_sustained_deliveries_per_s = Some(best.deliveries_per_s);
        summary.max_sustained_deliveries_per_server_core = best.deliveries_per_server_core;
        summary.max_sustained_rate_per_s = best
            .publish
            .as_ref()
            .map(|publish| publish.rate_target_per_s);
        setup.summary.comparisons = compare_with_floors(best, &args.common.compare_floor)?;
        write_latency_files(
            &setup,
            report,
            &format!(
                "throughput: best sustained step {best_step}, {} subscribers",
                args.common.connections
            ),
        )?;
    } else {
        setup.summary.problems.push("no step was sustained".into());
    }
    for step in &summary.steps {
        if step.sustained {
            continue;
        }
        setup.summary.problems.push(format!(
            "step {} (the stopping step) was not sustained: {}",
            step.step,
            step.failure.as_deref().unwrap_or("")
        ));
    }
    setup.summary.throughput = Some(summary);
    pool.close_all()?;
    pool.stop()?;
    server.finish(&mut setup.summary);
    setup.finish()
}
