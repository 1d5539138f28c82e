//! SVG charts of the eval report besides the cost-quality plane: the
//! learning curve and the reliability diagram of P(success).

use std::path::Path;

use plotters::prelude::*;

use crate::curve::{shown, CurveRouter, LearningCurve};
use crate::metrics::ReliabilityBin;

type ChartResult = Result<(), Box<dyn std::error::Error>>;

const PALETTE: [RGBColor; 8] = [
    BLUE,
    RED,
    GREEN,
    MAGENTA,
    CYAN,
    RGBColor(255, 140, 0),
    RGBColor(120, 120, 120),
    RGBColor(128, 0, 128),
];

/// The metric against training rows: the sizes evenly spaced (they are
/// roughly geometric, so this reads like a log axis without its clutter),
/// each labelled with its rows; one line per learned router with its seed
/// range as a vertical bar, the zero router dashed.
pub fn learning_curve_svg(curve: &LearningCurve, path: &Path) -> ChartResult {
    let names: Vec<String> = curve
        .router_names()
        .into_iter()
        .filter(|n| shown(n))
        .collect();
    let xs: Vec<f64> = (0..curve.points.len()).map(|i| i as f64).collect();
    let labels: Vec<String> = curve
        .points
        .iter()
        .map(|p| match p.size {
            crate::curve::CurveSize::All => format!("all ({:.0})", p.train_rows),
            crate::curve::CurveSize::Rows(_) => format!("{:.0}", p.train_rows),
        })
        .collect();
    let (x0, x1) = (-0.3, xs.len() as f64 - 0.7);
    let values: Vec<f64> = curve
        .points
        .iter()
        .flat_map(|p| p.routers.iter().filter(|r| shown(&r.name)))
        .flat_map(|r| r.values.iter().flatten().copied())
        .collect();
    if values.is_empty() {
        return Err(format!("no {} values to draw", curve.metric).into());
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.08).max(0.005);
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .caption(
            format!(
                "{} vs logged outcomes ({} test rows, mean of {} seeds)",
                curve.metric, curve.test_rows, curve.seeds
            ),
            ("sans-serif", 20),
        )
        .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))?;
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_desc("training rows (prompts with logged outcomes) per fold")
        .y_desc(curve.metric)
        .x_labels(xs.len())
        .x_label_formatter(&label_of)
        .disable_x_mesh()
        .draw()?;
    for (i, name) in names.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let routers: Vec<(f64, &CurveRouter)> = curve
            .points
            .iter()
            .zip(&xs)
            .filter_map(|(p, &x)| p.router(name).map(|r| (x, r)))
            .collect();
        let line: Vec<(f64, f64)> = routers
            .iter()
            .filter_map(|(x, r)| r.mean().map(|m| (*x, m)))
            .collect();
        if name == "zero" {
            chart
                .draw_series(DashedLineSeries::new(line, 8, 5, color.stroke_width(2)))?
                .label("zero router (hull of the single models)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            continue;
        }
        let label = match curve.pays_from(name) {
            Some(s) => format!("{name} (>= zero from {s} rows)"),
            None => format!("{name} (below zero at some size)"),
        };
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        // Seed range: a vertical bar from the lowest to the highest seed.
        chart.draw_series(routers.iter().filter_map(|(x, r)| {
            r.range()
                .filter(|(a, b)| b > a)
                .map(|(a, b)| PathElement::new(vec![(*x, a), (*x, b)], color.stroke_width(1)))
        }))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Reliability diagram: mean observed score against mean predicted
/// P(success) per bin, one line per router, the diagonal dashed; the
/// legend carries each router's ECE.
pub fn reliability_svg(
    routers: &[(&str, &[ReliabilityBin], Option<f64>)],
    path: &Path,
) -> ChartResult {
    let root = SVGBackend::new(path, (700, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .caption(
            "reliability of P(success), held-out rows",
            ("sans-serif", 20),
        )
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("mean predicted P(success) in the bin")
        .y_desc("mean observed score in the bin")
        .draw()?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            6,
            4,
            BLACK.stroke_width(1),
        ))?
        .label("perfect calibration")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    for (i, (name, bins, ece)) in routers.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let total: usize = bins.iter().map(|b| b.count).sum::<usize>().max(1);
        let pts: Vec<(f64, f64)> = bins
            .iter()
            .map(|b| (b.mean_predicted, b.mean_observed))
            .collect();
        let label = match ece {
            Some(e) => format!("{name} (ECE {e:.3})"),
            None => name.to_string(),
        };
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        // Marker area grows with the bin's share of predictions.
        chart.draw_series(bins.iter().map(|b| {
            let share = b.count as f64 / total as f64;
            Circle::new(
                (b.mean_predicted, b.mean_observed),
                (2.0 + 12.0 * share.sqrt()) as i32,
                color.mix(0.6).filled(),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
