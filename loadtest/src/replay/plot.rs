//! The replay plots as SVG: `cost_accuracy.svg` (baselines as points, the static and router λ
//! sweeps as lines, the target region shaded) and `learning_curve.svg` (windowed and cumulative
//! accuracy and cost of the config's first seed).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::ReplayError;
use super::baselines::TableRule;
use super::report::Report;

const FONT: &str = "sans-serif";
const ROUTER: RGBColor = RGBColor(31, 119, 180);
const STATIC: RGBColor = RGBColor(255, 127, 14);
const STATIC_PRED: RGBColor = RGBColor(214, 39, 40);
const ORACLE: RGBColor = RGBColor(44, 160, 44);
const MODEL: RGBColor = RGBColor(60, 60, 60);
const TARGET: RGBColor = RGBColor(200, 235, 200);

type Fallible = Result<(), Box<dyn std::error::Error + 'static>>;

/// Accuracy against cost per 1k queries for every policy.
pub fn cost_accuracy_svg(report: &Report) -> Result<String, ReplayError> {
    let mut svg = String::new();
    draw_cost_accuracy(report, &mut svg).map_err(|e| ReplayError::Plot(e.to_string()))?;
    Ok(svg)
}

/// The config's learning curve (first seed).
pub fn learning_curve_svg(report: &Report) -> Result<String, ReplayError> {
    let mut svg = String::new();
    draw_learning(report, &mut svg).map_err(|e| ReplayError::Plot(e.to_string()))?;
    Ok(svg)
}

fn draw_cost_accuracy(report: &Report, svg: &mut String) -> Fallible {
    let b = &report.baselines;
    let mut points: Vec<(f64, f64)> = b
        .single
        .iter()
        .map(|(_, s)| (s.cost_per_1k, s.accuracy))
        .collect();
    points.push((b.oracle.cost_per_1k, b.oracle.accuracy));
    points.extend(
        report
            .sweep
            .iter()
            .map(|p| (p.overall.cost_per_1k, p.overall.accuracy)),
    );
    let (xmin, xmax) = points
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let ymin = points.iter().map(|p| p.1).fold(1.0f64, f64::min);
    // Room on the right for the labels of the dearest models.
    let x_range = (xmin.max(1e-4) * 0.7)..(xmax.max(1e-3) * 3.0);
    let y_range = (ymin - 0.03).max(0.0)..1.0;

    let root = SVGBackend::with_string(svg, (1100, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "Routing replay — {} ({} queries): accuracy vs cost",
        report
            .dataset
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        report.dataset.rows
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone().log_scale(), y_range.clone())?;
    chart
        .configure_mesh()
        .x_desc("USD per 1000 queries (log scale)")
        .y_desc("accuracy")
        .x_label_formatter(&|x| format!("{x:.2}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;

    // The target: at least the reference's accuracy at no more than half its cost.
    let r = &report.reference;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [
                (x_range.start, r.target_accuracy),
                (r.target_cost_per_1k, y_range.end),
            ],
            TARGET.filled(),
        )))?
        .label(format!(
            "target: ≥ {:.3} acc at ≤ ${:.2}",
            r.target_accuracy, r.target_cost_per_1k
        ))
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], TARGET.filled()));

    chart
        .draw_series(b.single.iter().map(|(name, s)| {
            EmptyElement::at((s.cost_per_1k, s.accuracy))
                + Circle::new((0, 0), 4, MODEL.filled())
                + Text::new(name.clone(), (6, -4), (FONT, 12).into_font())
        }))?
        .label("single models")
        .legend(|(x, y)| Circle::new((x + 9, y), 4, MODEL.filled()));
    chart.draw_series(std::iter::once(
        EmptyElement::at((b.random_expected.cost_per_1k, b.random_expected.accuracy))
            + Rectangle::new([(-4, -4), (4, 4)], MODEL.mix(0.5).filled())
            + Text::new("random", (6, -4), (FONT, 12).into_font()),
    ))?;
    chart
        .draw_series(std::iter::once(
            EmptyElement::at((b.oracle.cost_per_1k, b.oracle.accuracy))
                + TriangleMarker::new((0, 0), 7, ORACLE.filled())
                + Text::new("oracle", (8, -4), (FONT, 12).into_font()),
        ))?
        .label("oracle (cheapest correct model)")
        .legend(|(x, y)| TriangleMarker::new((x + 9, y), 6, ORACLE.filled()));

    // Static tables along λ (cost-weighted rule), by true category and by predicted label.
    let mut weighted: Vec<_> = b
        .static_routing
        .iter()
        .filter(|s| matches!(s.rule, TableRule::CostWeighted { .. }))
        .collect();
    weighted.sort_by(|a, b| {
        a.true_category
            .cost_per_1k
            .total_cmp(&b.true_category.cost_per_1k)
    });
    let line = |f: &dyn Fn(&super::StaticRouting) -> Option<(f64, f64)>| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = weighted.iter().filter_map(|s| f(s)).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v
    };
    let by_true = line(&|s| Some((s.true_category.cost_per_1k, s.true_category.accuracy)));
    let by_pred = line(&|s| s.predicted_label.map(|p| (p.cost_per_1k, p.accuracy)));
    if !by_true.is_empty() {
        chart
            .draw_series(LineSeries::new(by_true, STATIC.stroke_width(2)).point_size(3))?
            .label("static per true category (λ sweep)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], STATIC.stroke_width(2)));
    }
    if !by_pred.is_empty() {
        chart
            .draw_series(LineSeries::new(by_pred, STATIC_PRED.stroke_width(2)).point_size(3))?
            .label("static per predicted label (λ sweep)")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], STATIC_PRED.stroke_width(2))
            });
    }
    let mut sweep: Vec<(f64, f64)> = report
        .sweep
        .iter()
        .map(|p| (p.overall.cost_per_1k, p.overall.accuracy))
        .collect();
    sweep.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(sweep, ROUTER.stroke_width(3)).point_size(4))?
        .label("router, learning online (λ sweep)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], ROUTER.stroke_width(3)));
    let o = report.router.overall;
    chart.draw_series(std::iter::once(
        EmptyElement::at((o.cost_per_1k, o.accuracy))
            + Circle::new((0, 0), 8, ROUTER.stroke_width(3))
            + Text::new(
                format!("config (λ = {})", report.router.cost_weight),
                (10, 8),
                (FONT, 13).into_font(),
            ),
    ))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

type Panel<'a, 'b> = DrawingArea<SVGBackend<'a>, Shift>;

fn draw_learning(report: &Report, svg: &mut String) -> Fallible {
    let root = SVGBackend::with_string(svg, (1100, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let seed = report.router.runs.first().map_or(0, |r| r.seed);
    let title = format!(
        "Learning curve — config λ = {}, seed {seed}, windows of {} queries",
        report.router.cost_weight, report.router.window
    );
    let root = root.titled(&title, (FONT, 20))?;
    let (upper, lower) = root.split_vertically(380);
    panel(report, &upper, true)?;
    panel(report, &lower, false)?;
    root.present()?;
    Ok(())
}

fn panel(report: &Report, area: &Panel<'_, '_>, accuracy: bool) -> Fallible {
    let curve = report
        .router
        .runs
        .first()
        .map(|r| r.curve.as_slice())
        .unwrap_or_default();
    let get = |s: &super::Score| if accuracy { s.accuracy } else { s.cost_per_1k };
    let r = &report.reference;
    let reference = get(&r.score);
    // The per-category table at the config's λ is the comparison at equal cost; without it,
    // the most accurate table.
    let (static_label, static_value) = match report.cost_matched_static() {
        Some(s) => (
            format!(
                "per-category static, λ = {} (hindsight)",
                report.router.cost_weight
            ),
            Some(get(&s.true_category)),
        ),
        None => (
            "per-category static, best (hindsight)".to_owned(),
            report.best_static().map(|s| get(&s.true_category)),
        ),
    };
    let xmax = curve.last().map_or(1.0, |p| p.queries as f64);
    let values = curve
        .iter()
        .flat_map(|p| [get(&p.window), get(&p.cumulative)])
        .chain([reference]);
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if accuracy {
        ((lo - 0.05).max(0.0), (hi + 0.03).min(1.0))
    } else {
        (0.0, hi * 1.15 + 1e-3)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(
            if accuracy {
                "Accuracy"
            } else {
                "USD per 1000 queries"
            },
            (FONT, 17),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("queries replayed")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .axis_desc_style((FONT, 15))
        .label_style((FONT, 13))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let hline = |v: f64| vec![(0.0, v), (xmax, v)];
    chart
        .draw_series(LineSeries::new(hline(reference), MODEL.stroke_width(1)))?
        .label(format!("always {}", r.model))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], MODEL.stroke_width(1)));
    if let Some(v) = static_value {
        chart
            .draw_series(LineSeries::new(hline(v), STATIC.stroke_width(1)))?
            .label(static_label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], STATIC.stroke_width(1)));
    }
    if !accuracy {
        chart
            .draw_series(LineSeries::new(
                hline(r.target_cost_per_1k),
                ORACLE.stroke_width(1),
            ))?
            .label("target cost (half the reference's)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], ORACLE.stroke_width(1)));
    }
    chart
        .draw_series(
            LineSeries::new(
                curve.iter().map(|p| (p.queries as f64, get(&p.window))),
                ROUTER.mix(0.5).stroke_width(1),
            )
            .point_size(2),
        )?
        .label("router, per window")
        .legend(|(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], ROUTER.mix(0.5).stroke_width(1))
        });
    chart
        .draw_series(LineSeries::new(
            curve.iter().map(|p| (p.queries as f64, get(&p.cumulative))),
            ROUTER.stroke_width(3),
        ))?
        .label("router, cumulative")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], ROUTER.stroke_width(3)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
