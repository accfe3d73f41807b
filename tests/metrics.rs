//! `/metrics` after known traffic: exact counter values, and a valid exposition.

mod common;

use std::io::Write;

use common::{Server, masked_frame, read_until_close, wait_until};

/// Scrapes and parses `/metrics`; returns (samples, raw text).
fn scrape(server: &Server) -> (prometheus_parse::Scrape, String) {
    let (status, body) = server.http("GET", "/metrics", b"");
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let lines = body.lines().map(|line| Ok(line.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("a valid exposition");
    (scrape, body)
}

/// Sum of the samples named `name` whose labels include every pair of `labels`.
fn sum(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
        .map(|sample| match sample.value {
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => value,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn counters_match_known_traffic_exactly() {
    let server = Server::start(&[]);
    let mut clients: Vec<_> = (0..10).map(|_| server.websocket("/ws/metrics")).collect();
    for index in 0..3 {
        server.publish("metrics", format!("m{index}").as_bytes());
    }
    for client in &mut clients {
        for _ in 0..3 {
            client.read().unwrap();
        }
    }
    let (scrape, _) = scrape(&server);
    assert_eq!(sum(&scrape, "ringcast_deliveries_total", &[]), 30.0);
    assert_eq!(sum(&scrape, "ringcast_published_http_total", &[]), 3.0);
    assert_eq!(sum(&scrape, "ringcast_connections_open", &[]), 10.0);
    assert_eq!(sum(&scrape, "ringcast_websocket_opened_total", &[]), 10.0);
    assert_eq!(sum(&scrape, "ringcast_shard_up", &[]), 2.0);
    assert_eq!(
        sum(&scrape, "ringcast_deliveries_dropped_closing_total", &[])
            + sum(&scrape, "ringcast_deliveries_dropped_slow_total", &[]),
        0.0
    );
    // 10 x 101 + 30 broadcasts, all written.
    assert_eq!(sum(&scrape, "ringcast_frames_written_total", &[]), 40.0);
    assert!(sum(&scrape, "ringcast_write_calls_total", &[]) >= 20.0);
    assert!(sum(&scrape, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(sum(&scrape, "process_open_fds", &[]) > 10.0);
}

#[test]
fn protocol_errors_and_rejections_are_counted_once() {
    let server = Server::start(&[]);
    let mut stream = server.raw_websocket("/ws/bad");
    stream.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    assert_eq!(read_until_close(&mut stream), Some(1002));
    common::assert_closed(&mut stream);
    assert_eq!(server.http("GET", "/nowhere", b"").0, 404);
    let mut frames = server.raw_websocket("/ws/bad");
    frames.write_all(&masked_frame(0x81, &[0xff])).unwrap();
    assert_eq!(read_until_close(&mut frames), Some(1007));
    common::assert_closed(&mut frames);
    wait_until("both closes to be counted", || {
        let (scrape, _) = scrape(&server);
        sum(&scrape, "ringcast_connections_open", &[]) == 0.0
    });
    let (scrape, _) = scrape(&server);
    let closed = |reason: &str, code: &str| {
        sum(
            &scrape,
            "ringcast_connections_closed_total",
            &[("reason", reason), ("code", code)],
        )
    };
    assert_eq!(closed("protocol_error", "1002"), 1.0);
    assert_eq!(closed("invalid_payload", "1007"), 1.0);
    assert_eq!(closed("slow_consumer", "1008"), 0.0);
    assert_eq!(
        sum(
            &scrape,
            "ringcast_http_rejections_total",
            &[("status", "404")]
        ),
        1.0
    );
}

#[test]
fn fanout_latency_histogram_counts_publications_with_subscribers() {
    let server = Server::start(&["--shards", "1"]);
    let mut client = server.websocket("/ws/lat");
    for _ in 0..5 {
        server.publish("lat", b"x");
        client.read().unwrap();
    }
    server.publish("nobody-here", b"x");
    let (scrape, text) = scrape(&server);
    let histogram = scrape
        .samples
        .iter()
        .find(|sample| sample.metric == "ringcast_fanout_latency_seconds")
        .unwrap_or_else(|| panic!("histogram missing in {text}"));
    match &histogram.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let infinite = buckets
                .iter()
                .find(|bucket| bucket.less_than.is_infinite())
                .unwrap();
            assert_eq!(infinite.count, 5.0);
        }
        other => panic!("not a histogram: {other:?}"),
    }
}

#[test]
fn every_documented_metric_is_exposed() {
    let redis = common::RedisServer::start();
    let url = redis.url();
    // An application with a webhook target, so the webhook sender (and its counters) exists;
    // nothing is ever sent to it.
    let apps = std::env::temp_dir().join(format!("ringcast-metrics-{}.toml", std::process::id()));
    std::fs::write(
        &apps,
        "[[app]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n\n[[app.webhooks]]\nurl = \"http://127.0.0.1:9/hooks\"\n",
    )
    .unwrap();
    let server = Server::start(&["--redis", &url, "--apps", apps.to_str().unwrap()]);
    let _ = std::fs::remove_file(&apps);
    // One refusal, so the labelled family has a sample to show.
    assert_eq!(server.http("GET", "/nowhere", b"").0, 404);
    let (_, text) = scrape(&server);
    let documented = documented_metrics();
    assert!(
        documented.len() > 30,
        "the README's metrics table was found"
    );
    for name in &documented {
        assert!(text.contains(name.as_str()), "{name} missing from /metrics");
    }
}

/// Every metric name in the first column of the README's metrics table.
fn documented_metrics() -> Vec<String> {
    let readme = include_str!("../README.md");
    readme
        .lines()
        .filter(|line| line.starts_with("| `ringcast_") || line.starts_with("| `process_"))
        .flat_map(|line| {
            let first_column = line.split('|').nth(1).unwrap_or_default();
            first_column
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|name| name.to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn stat_json_matches_the_text_page() {
    let server = Server::start(&[]);
    let _clients: Vec<_> = (0..3).map(|_| server.websocket("/ws/s")).collect();
    let (status, body) = server.http("GET", "/stat?format=json", b"");
    assert_eq!(status, 200);
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(report["connections"], 3);
    assert_eq!(report["channels"]["s"], 3);
    assert_eq!(report["shards"], 2);
    assert!(report["memory_rss_bytes"].as_u64().unwrap() > 0);
    let text = server.stat();
    assert!(text.contains("channel s: 3 clients"), "{text}");
}
