//! The per-run plot, `latency.svg`: per-second p50 and p99 latency (from the intended send
//! time) in the upper panel, target rate, achieved throughput and errors in the lower one.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::LoadgenError;
use super::report::{Report, TimelinePoint};

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 760;
const FONT: &str = "sans-serif";

const P50: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(214, 39, 40);
const TARGET: RGBColor = RGBColor(190, 190, 190);
const OK: RGBColor = RGBColor(44, 160, 44);
const ERRORS: RGBColor = RGBColor(255, 127, 14);

/// Reads one series' value from a second of the timeline.
type Value = fn(&TimelinePoint) -> Option<f64>;
type Panel<'a, 'b> = DrawingArea<SVGBackend<'a>, Shift>;
type Fallible = Result<(), Box<dyn std::error::Error + 'static>>;

/// The report's timeline drawn as an SVG document.
pub fn latency_svg(report: &Report) -> Result<String, LoadgenError> {
    let mut svg = String::new();
    draw(report, &mut svg).map_err(|e| LoadgenError::Plot(e.to_string()))?;
    Ok(svg)
}

fn draw(report: &Report, svg: &mut String) -> Fallible {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "loadgen {} — {} — {}",
        report.scenario.name,
        report.scenario.chat_url(),
        report.started_at
    );
    let root = root.titled(&title, (FONT, 20))?;
    let (upper, lower) = root.split_vertically(HEIGHT * 52 / 100);
    latency_panel(&upper, &report.timeline)?;
    rate_panel(&lower, &report.timeline)?;
    root.present()?;
    Ok(())
}

/// Seconds on the x axis: at least one, so an empty run still draws its axes.
fn x_range(timeline: &[TimelinePoint]) -> std::ops::Range<f64> {
    0.0..(timeline.len().max(1) as f64)
}

/// Headroom above the highest value, never an empty range.
fn y_top(max: f64) -> f64 {
    if max > 0.0 { max * 1.12 } else { 1.0 }
}

fn latency_panel(area: &Panel<'_, '_>, timeline: &[TimelinePoint]) -> Fallible {
    let max = timeline
        .iter()
        .filter_map(|p| p.p99_ms.or(p.p50_ms))
        .fold(0.0, f64::max);
    let caption = if max > 0.0 {
        "Latency from the intended send time, per second (ms)"
    } else {
        "Latency from the intended send time (no successful request)"
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 17))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range(timeline), 0.0..y_top(max))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the measured start")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("ms")
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (name, color, value) in [
        ("p99", P99, (|p: &TimelinePoint| p.p99_ms) as Value),
        ("p50", P50, |p: &TimelinePoint| p.p50_ms),
    ] {
        series(&mut chart, timeline, name, color.stroke_width(2), value)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn rate_panel(area: &Panel<'_, '_>, timeline: &[TimelinePoint]) -> Fallible {
    let max = timeline
        .iter()
        .map(|p| p.scheduled.max(p.ok).max(p.errors))
        .max()
        .unwrap_or(0) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption("Requests per second", (FONT, 17))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range(timeline), 0.0..y_top(max))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the measured start")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("requests / s")
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    // The target is drawn wide and pale underneath, so it shows where the others cover it.
    for (name, style, value) in [
        (
            "target (scheduled)",
            TARGET.stroke_width(7),
            (|p: &TimelinePoint| Some(p.scheduled as f64)) as Value,
        ),
        ("achieved (ok)", OK.stroke_width(2), |p: &TimelinePoint| {
            Some(p.ok as f64)
        }),
        ("errors", ERRORS.stroke_width(2), |p: &TimelinePoint| {
            Some(p.errors as f64)
        }),
    ] {
        series(&mut chart, timeline, name, style, value)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// One series, drawn in pieces where seconds have no value, with one legend entry.
fn series(
    chart: &mut Chart<'_, '_>,
    timeline: &[TimelinePoint],
    name: &str,
    style: ShapeStyle,
    value: Value,
) -> Fallible {
    chart
        .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    for run in runs(timeline, value) {
        // Dots mark the seconds on thin lines; the wide target line needs none.
        let dots = if style.stroke_width < 4 { 2 } else { 0 };
        chart.draw_series(LineSeries::new(run, style).point_size(dots))?;
    }
    Ok(())
}

/// The points of one series, split where a second has no value, each at its second's middle.
fn runs(timeline: &[TimelinePoint], value: Value) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for p in timeline {
        match value(p) {
            Some(v) => {
                if let Some(run) = runs.last_mut() {
                    run.push((p.second as f64 + 0.5, v));
                }
            }
            None => runs.push(Vec::new()),
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}
