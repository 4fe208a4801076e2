//! The HTML page's charts as inline SVG, drawn with plotters (no script, no fetch).

use crate::analysis::timeline::Bin;
use crate::verdict::Verdict;
use plotters::coord::CoordTranslate;
use plotters::prelude::*;

const SIZE: (u32, u32) = (580, 300);
/// Where the log-scale latency axis starts: 0 ms durations are drawn here.
const LOWEST_MS: f64 = 0.5;

/// Main dark blue, compared targets in warm colours, the baseline grey.
fn color(role: &str, i: usize) -> RGBColor {
    const COMPARED: [RGBColor; 4] = [
        RGBColor(0xe6, 0x55, 0x0d),
        RGBColor(0xc6, 0x28, 0x28),
        RGBColor(0x8e, 0x24, 0xaa),
        RGBColor(0x2e, 0x7d, 0x32),
    ];
    match role {
        "main" => RGBColor(0x15, 0x65, 0xc0),
        "baseline" => RGBColor(0x75, 0x75, 0x75),
        _ => COMPARED[i % COMPARED.len()],
    }
}

fn failed(e: impl std::fmt::Display) -> String {
    format!("cannot draw a chart: {e}")
}

fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(at)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(failed)
}

/// Each target's latency distribution: the share of its statements at or below a latency.
pub fn latency_cdf(v: &Verdict) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let max = v
            .latency
            .iter()
            .flat_map(|l| l.cdf.iter().map(|p| p.0))
            .fold(1.0, f64::max)
            .max(2.0)
            * 1.2;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d((LOWEST_MS..max).log_scale(), 0f64..100f64)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_desc("latency, ms (log scale; 0 ms drawn at 0.5)")
            .y_desc("% of statements at or below")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(failed)?;
        for (i, l) in v.latency.iter().enumerate() {
            let color = color(l.role, i);
            let points: Vec<(f64, f64)> =
                l.cdf.iter().map(|&(x, y)| (x.max(LOWEST_MS), y)).collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(failed)?
                .label(format!("{} ({})", l.target, l.role))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// A bar series: its legend, colour and what a bin's bar shows.
type Bars = (&'static str, RGBColor, fn(&Bin) -> u64);

/// Conflicts per run of consecutive statements, with those where the baseline differs too.
pub fn conflicts_over_input(v: &Verdict) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let bins = &v.timeline.bins;
        let end = bins
            .last()
            .map_or(1, |b| b.first_statement + b.statements)
            .max(1);
        let top = bins.iter().map(|b| b.conflicts).max().unwrap_or(0).max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d(0u64..end, 0u64..top + top / 10 + 1)
            .map_err(failed)?;
        chart
            .configure_mesh()
            .x_desc(format!(
                "statement, in input order ({} per bar)",
                v.timeline.statements_per_bin
            ))
            .y_desc("conflicting statements")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(failed)?;
        let red = RGBColor(0xc6, 0x28, 0x28);
        let grey = RGBColor(0x9e, 0x9e, 0x9e);
        let mut series: Vec<Bars> = vec![("conflicts", red, |b| b.conflicts)];
        if v.baseline.is_some() {
            series.push(("of which the baseline differs too", grey, |b| {
                b.baseline_differs
            }));
        }
        for (label, color, height) in series {
            let bars = bins.iter().map(|b| {
                Rectangle::new(
                    [
                        (b.first_statement, 0),
                        (b.first_statement + b.statements, height(b)),
                    ],
                    color.filled(),
                )
            });
            chart
                .draw_series(bars)
                .map_err(failed)?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(failed)?;
    }
    Ok(svg)
}
