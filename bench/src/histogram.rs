//! Latency histograms: creation, percentile summaries and the `.hgrm` text format.
//!
//! Values are recorded in nanoseconds (1 ns .. 1 hour, 3 significant digits) and printed in
//! microseconds. `write_hgrm` reproduces HdrHistogram's `outputPercentileDistribution` (Java)
//! byte for byte in layout, so the files load in HdrHistogram's plotter and compare with wrk2
//! and friends: a `Value Percentile TotalCount 1/(1-Percentile)` table with 5 ticks per half
//! distance, then the `#[Mean ...]`, `#[Max ...]` and `#[Buckets ...]` footer.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest trackable value: one hour in nanoseconds (anything slower is saturated there).
pub const LATENCY_NS_MAX: u64 = 3_600 * 1_000_000_000;
/// Significant decimal digits kept for every value.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Percentile ticks per half distance to 100%, as HdrHistogram's default output.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Nanoseconds per printed unit (microseconds).
pub const NS_PER_US: f64 = 1_000.0;

/// Creates an empty latency histogram in nanoseconds.
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, SIGNIFICANT_DIGITS)
        .expect("constant bounds 1..1h with 3 digits are valid")
}

/// Records one latency, clamping into the trackable range instead of failing.
pub fn record_latency_ns(histogram: &mut Histogram<u64>, latency_ns: u64) {
    histogram.saturating_record(latency_ns.clamp(1, LATENCY_NS_MAX));
}

/// The usual percentiles of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Smallest sample.
    pub min_us: f64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p99_9_us: f64,
    /// 99.99th percentile.
    pub p99_99_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

/// Summarises a nanosecond histogram in microseconds.
pub fn summarize(histogram: &Histogram<u64>) -> LatencySummary {
    if histogram.is_empty() {
        return LatencySummary::default();
    }
    let at = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / NS_PER_US;
    LatencySummary {
        count: histogram.len(),
        min_us: histogram.min() as f64 / NS_PER_US,
        mean_us: histogram.mean() / NS_PER_US,
        p50_us: at(0.5),
        p90_us: at(0.9),
        p99_us: at(0.99),
        p99_9_us: at(0.999),
        p99_99_us: at(0.9999),
        max_us: histogram.max() as f64 / NS_PER_US,
    }
}

/// Sub-buckets per bucket, as HdrHistogram computes it for `SIGNIFICANT_DIGITS`.
fn sub_bucket_count() -> u32 {
    let single_unit_max = 2 * 10u64.pow(u32::from(SIGNIFICANT_DIGITS));
    single_unit_max.next_power_of_two() as u32
}

/// One row of the percentile table (also what the plot draws).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PercentileRow {
    /// Value at this percentile, in the output unit (microseconds).
    pub value: f64,
    /// Quantile in 0..=1.
    pub quantile: f64,
    /// Samples at or below `value`.
    pub total_count: u64,
}

/// The rows HdrHistogram prints: quantile iteration with `TICKS_PER_HALF_DISTANCE`.
pub fn percentile_rows(histogram: &Histogram<u64>, ns_per_unit: f64) -> Vec<PercentileRow> {
    let mut rows = Vec::new();
    let mut total_count = 0u64;
    for value in histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total_count += value.count_since_last_iteration();
        rows.push(PercentileRow {
            value: value.value_iterated_to() as f64 / ns_per_unit,
            quantile: value.quantile_iterated_to(),
            total_count,
        });
    }
    rows
}

/// Writes `histogram` (nanoseconds) in HdrHistogram's percentile distribution format, with values
/// divided by `ns_per_unit` (1000.0 prints microseconds).
pub fn write_hgrm(histogram: &Histogram<u64>, ns_per_unit: f64) -> String {
    let digits = usize::from(SIGNIFICANT_DIGITS);
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for row in percentile_rows(histogram, ns_per_unit) {
        if row.quantile < 1.0 {
            let inverse = 1.0 / (1.0 - row.quantile);
            let _ = writeln!(
                out,
                "{:>12.digits$} {:>2.12} {:>10} {:>14.2}",
                row.value, row.quantile, row.total_count, inverse
            );
        } else {
            let _ = writeln!(
                out,
                "{:>12.digits$} {:>2.12} {:>10}",
                row.value, row.quantile, row.total_count
            );
        }
    }
    let (mean, stdev, max) = if histogram.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            histogram.mean() / ns_per_unit,
            histogram.stdev() / ns_per_unit,
            histogram.max() as f64 / ns_per_unit,
        )
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        sub_bucket_count()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_histogram() -> Histogram<u64> {
        let mut histogram = new_latency_histogram();
        for value_us in 1..=1000u64 {
            record_latency_ns(&mut histogram, value_us * 1_000);
        }
        histogram
    }

    #[test]
    fn hgrm_has_hdrhistogram_layout() {
        let text = write_hgrm(&sample_histogram(), NS_PER_US);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        // Every table row: value with 3 decimals, quantile with 12, count, and 1/(1-q) except the
        // last row (q = 1).
        let rows: Vec<&str> = lines
            .iter()
            .skip(2)
            .take_while(|line| !line.starts_with('#'))
            .copied()
            .collect();
        assert!(rows.len() > 20);
        let first: Vec<&str> = rows[0].split_whitespace().collect();
        assert_eq!(first.len(), 4);
        assert_eq!(first[1], "0.000000000000");
        assert!(
            first[0].ends_with(|c: char| c.is_ascii_digit())
                && first[0].split('.').nth(1).unwrap().len() == 3
        );
        let last: Vec<&str> = rows[rows.len() - 1].split_whitespace().collect();
        assert_eq!(last.len(), 3);
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "1000");
        let footer: Vec<&str> = lines
            .iter()
            .filter(|line| line.starts_with("#["))
            .copied()
            .collect();
        assert_eq!(footer.len(), 3);
        assert!(footer[0].starts_with("#[Mean    = ") && footer[0].contains(", StdDeviation   = "));
        assert!(
            footer[1].starts_with("#[Max     = ")
                && footer[1].contains("Total count    =         1000]")
        );
        assert!(
            footer[2].starts_with("#[Buckets = ")
                && footer[2].ends_with("SubBuckets     =         2048]")
        );
        // Quantiles never decrease and counts never decrease.
        let parsed: Vec<(f64, u64)> = rows
            .iter()
            .map(|row| {
                let fields: Vec<&str> = row.split_whitespace().collect();
                (fields[1].parse().unwrap(), fields[2].parse().unwrap())
            })
            .collect();
        assert!(
            parsed
                .windows(2)
                .all(|pair| pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1)
        );
    }

    #[test]
    fn empty_histogram_still_writes_header_and_footer() {
        let text = write_hgrm(&new_latency_histogram(), NS_PER_US);
        assert!(text.starts_with("       Value"));
        assert!(text.contains("Total count    =            0]"));
    }

    #[test]
    fn summary_is_in_microseconds() {
        let summary = summarize(&sample_histogram());
        assert_eq!(summary.count, 1000);
        assert!((summary.p50_us - 500.0).abs() < 1.0);
        assert!((summary.max_us - 1000.0).abs() < 1.0);
        assert!((summary.p99_us - 990.0).abs() < 1.0);
    }

    #[test]
    fn out_of_range_values_are_clamped_not_dropped() {
        let mut histogram = new_latency_histogram();
        record_latency_ns(&mut histogram, 0);
        record_latency_ns(&mut histogram, u64::MAX);
        assert_eq!(histogram.len(), 2);
    }
}
