//! `scaling.svg`: throughput against replicas of the scaled service (left) and the
//! latencies that replicas should shorten (right), one point per run.

use std::path::Path;

use plotters::prelude::*;

use crate::report::RunFigures;

/// Writes the plot of `runs` (scaled service `scaled`) to `path`.
pub fn write(path: &Path, runs: &[RunFigures], scaled: &str) -> anyhow::Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (left, right) = root.split_horizontally(550);
        let max_replicas = runs.iter().map(|r| r.replicas).max().unwrap_or(1) as f64 + 0.5;
        draw(
            &left,
            &format!("tasks completed per second vs {scaled} replicas"),
            "tasks/s",
            max_replicas,
            &[("tasks/s", BLUE, runs.iter().map(|r| (r.replicas as f64, r.tasks_per_second)).collect())],
        )?;
        let stage = |name: &str, p99: bool| -> Vec<(f64, f64)> {
            runs.iter()
                .filter_map(|r| {
                    let s = r.stages.get(name)?;
                    Some((r.replicas as f64, if p99 { s.p99_ms } else { s.p50_ms } / 1000.0))
                })
                .collect()
        };
        draw(
            &right,
            "latency (s) vs replicas",
            "seconds",
            max_replicas,
            &[
                ("end to end p50", BLUE, stage("end_to_end", false)),
                ("end to end p99", CYAN, stage("end_to_end", true)),
                ("submitted->evaluated p50", RED, stage("submitted_to_evaluated", false)),
                ("submitted->evaluated p99", MAGENTA, stage("submitted_to_evaluated", true)),
            ],
        )?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    std::fs::write(path, svg)?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
/// A named, coloured line of (replicas, value) points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

fn draw(area: &Area<'_>, title: &str, y_desc: &str, max_x: f64, series: &[Series<'_>]) -> anyhow::Result<()> {
    let err = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("{e}");
    let max_y = series.iter().flat_map(|(_, _, points)| points.iter().map(|p| p.1)).fold(0.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..max_x, 0.0..max_y.max(1e-3))
        .map_err(err)?;
    chart.configure_mesh().x_desc("replicas").y_desc(y_desc).draw().map_err(err)?;
    for (label, color, points) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    Ok(())
}
