//! A latency-by-percentile SVG plot, drawn like HdrHistogram's plotter.
//!
//! The x axis is `1/(1-percentile)` on a log scale, so 0%, 90%, 99%, 99.9%, 99.99% ... are evenly
//! spaced and the tail gets the room it deserves; the y axis is linear latency. Plain SVG text,
//! no dependency: a few polylines and labels.

use std::fmt::Write as _;

use crate::histogram::PercentileRow;

/// Canvas width in SVG pixels.
const WIDTH_PX: f64 = 900.0;
/// Canvas height in SVG pixels.
const HEIGHT_PX: f64 = 500.0;
/// Margin around the plot area for labels.
const MARGIN_PX: f64 = 70.0;
/// Decades drawn on the x axis at most (99.9999%).
const DECADES_MAX: u32 = 6;
/// Line colours, cycled per series.
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// One line of the plot.
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// The percentile table rows (value in the plot's unit).
    pub rows: &'a [PercentileRow],
}

/// `log10(1/(1-q))`, capped so q = 1 lands at the right edge.
fn x_decades(quantile: f64, decades: u32) -> f64 {
    let tail = (1.0 - quantile).max(10f64.powi(-(decades as i32)));
    (-tail.log10()).min(f64::from(decades))
}

/// A round step for about five y ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|factor| factor * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(magnitude * 10.0)
}

/// Renders the series as an SVG document.
pub fn render_svg(title: &str, y_label: &str, series: &[Series<'_>]) -> String {
    let points = series.iter().flat_map(|line| line.rows.iter());
    let y_max = points
        .clone()
        .map(|row| row.value)
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    let count_max = series
        .iter()
        .map(|line| line.rows.last().map_or(0, |row| row.total_count))
        .max()
        .unwrap_or(0);
    // Enough decades to show the tail the sample count supports, at least 3 (99.9%).
    let decades = ((count_max.max(1) as f64).log10().ceil() as u32).clamp(3, DECADES_MAX);
    let plot_width = WIDTH_PX - 2.0 * MARGIN_PX;
    let plot_height = HEIGHT_PX - 2.0 * MARGIN_PX;
    let to_x = |decade: f64| MARGIN_PX + decade / f64::from(decades) * plot_width;
    let to_y = |value: f64| HEIGHT_PX - MARGIN_PX - value / y_max * plot_height;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{HEIGHT_PX}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="30" text-anchor="middle" font-size="16">{}</text>"#,
        WIDTH_PX / 2.0,
        escape(title)
    );
    for decade in 0..=decades {
        let x = to_x(f64::from(decade));
        let label = percentile_label(decade);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{MARGIN_PX}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            HEIGHT_PX - MARGIN_PX
        );
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            HEIGHT_PX - MARGIN_PX + 18.0
        );
    }
    let step = tick_step(y_max);
    for index in 0..=((y_max / step) as u32) {
        let value = f64::from(index) * step;
        let y = to_y(value);
        let _ = writeln!(
            svg,
            r##"<line x1="{MARGIN_PX}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            WIDTH_PX - MARGIN_PX
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{value}</text>"#,
            MARGIN_PX - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">Percentile</text>"#,
        WIDTH_PX / 2.0,
        HEIGHT_PX - 20.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="20" y="{0}" text-anchor="middle" transform="rotate(-90 20 {0})">{1}</text>"#,
        HEIGHT_PX / 2.0,
        escape(y_label)
    );
    for (index, line) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let coordinates: Vec<String> = line
            .rows
            .iter()
            .map(|row| {
                format!(
                    "{:.1},{:.1}",
                    to_x(x_decades(row.quantile, decades)),
                    to_y(row.value)
                )
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            coordinates.join(" ")
        );
        let legend_y = MARGIN_PX + 16.0 * index as f64;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{legend_y:.1}" fill="{colour}">{}</text>"#,
            MARGIN_PX + 10.0,
            escape(line.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// "0%", "90%", "99%", "99.9%", ... for decade 0, 1, 2, 3, ...
fn percentile_label(decade: u32) -> String {
    match decade {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        _ => format!("99.{}%", "9".repeat(decade as usize - 2)).replace("99.%", "99%"),
    }
}

/// Escapes text for SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::{NS_PER_US, new_latency_histogram, percentile_rows, record_latency_ns};

    #[test]
    fn labels_follow_hdrhistogram() {
        let labels: Vec<String> = (0..5).map(percentile_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }

    #[test]
    fn svg_contains_one_polyline_per_series() {
        let mut histogram = new_latency_histogram();
        for value in 1..10_000u64 {
            record_latency_ns(&mut histogram, value * 100);
        }
        let rows = percentile_rows(&histogram, NS_PER_US);
        let svg = render_svg(
            "t <x>",
            "latency (us)",
            &[
                Series {
                    name: "a",
                    rows: &rows,
                },
                Series {
                    name: "b",
                    rows: &rows,
                },
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("99.99%"));
        assert!(svg.contains("t &lt;x&gt;"));
    }
}
