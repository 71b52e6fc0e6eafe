//! `churn-rss.svg`: RSS and the cache's `bytes` over the churn run (upper panel), entries,
//! graph points and tombstones (lower panel).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::CacheBenchError;
use super::churn::{ChurnResult, Sample};

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 760;
const FONT: &str = "sans-serif";

const RSS: RGBColor = RGBColor(214, 39, 40);
const BYTES: RGBColor = RGBColor(31, 119, 180);
const ENTRIES: RGBColor = RGBColor(44, 160, 44);
const POINTS: RGBColor = RGBColor(31, 119, 180);
const TOMBS: RGBColor = RGBColor(255, 127, 14);

type Panel<'a, 'b> = DrawingArea<SVGBackend<'a>, Shift>;
type Fallible = Result<(), Box<dyn std::error::Error + 'static>>;
type Value = fn(&Sample) -> f64;

/// The churn run's timeline as an SVG document.
pub fn churn_svg(c: &ChurnResult) -> Result<String, CacheBenchError> {
    let mut svg = String::new();
    draw(c, &mut svg).map_err(|e| CacheBenchError::Plot(e.to_string()))?;
    Ok(svg)
}

fn draw(c: &ChurnResult, svg: &mut String) -> Fallible {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "cache churn: {} shards × {} entries, {} tasks, {:.0}% lookups",
        c.spec.shards,
        c.spec.capacity,
        c.spec.tasks,
        c.spec.lookup_share * 100.0
    );
    let root = root.titled(&title, (FONT, 20))?;
    let (upper, lower) = root.split_vertically(HEIGHT * 52 / 100);
    panel(
        &upper,
        &c.samples,
        "Memory (MB)",
        "MB",
        &[
            ("process RSS", RSS, |s: &Sample| s.rss as f64 / 1e6),
            (
                "cache `bytes` stat (answers + vectors)",
                BYTES,
                |s: &Sample| s.stats.bytes as f64 / 1e6,
            ),
        ],
    )?;
    panel(
        &lower,
        &c.samples,
        "Index (all shards)",
        "count",
        &[
            ("entries", ENTRIES, |s: &Sample| s.stats.entries as f64),
            ("graph points", POINTS, |s: &Sample| {
                s.stats.index_size as f64
            }),
            ("tombstones", TOMBS, |s: &Sample| s.stats.tombstones as f64),
        ],
    )?;
    root.present()?;
    Ok(())
}

fn panel(
    area: &Panel<'_, '_>,
    samples: &[Sample],
    caption: &str,
    unit: &str,
    series: &[(&str, RGBColor, Value)],
) -> Fallible {
    let max = samples
        .iter()
        .flat_map(|s| series.iter().map(move |(_, _, v)| v(s)))
        .fold(0.0, f64::max);
    let top = if max > 0.0 { max * 1.12 } else { 1.0 };
    let right = samples.last().map_or(1.0, |s| s.t.max(1.0));
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 17))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..right, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(unit)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (name, color, value) in series {
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.t, value(s))),
                style,
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
