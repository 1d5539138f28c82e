//! Turning router results into metrics and writing them out: one JSON
//! document, a text table, Markdown and an SVG chart.

use std::path::Path;

use plotters::prelude::*;
use serde_json::{json, Value};

use crate::error::EvalError;
use crate::harness::RouterResult;
use crate::metrics::{aiq, apgr, cost_to_reach, cpt, Point, ReliabilityBin};

/// One router's metrics. Fields that do not apply are None.
#[derive(Debug, Clone)]
pub struct RouterSummary {
    pub name: String,
    /// (mean cost in USD, mean quality) per setting.
    pub points: Vec<Point>,
    /// Share of calls per model at each point (aligned with the summary's models).
    pub shares: Vec<Vec<f64>>,
    pub setting: &'static str,
    pub settings: Vec<f64>,
    pub aiq: Option<f64>,
    pub apgr: Option<f64>,
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
    pub ece: Option<f64>,
    /// The reliability diagram behind `ece` (empty for routers without P).
    pub reliability: Vec<ReliabilityBin>,
    /// Least mean cost at which the router's hull reaches the best single model's quality.
    pub cost_to_match_best_single: Option<f64>,
}

/// Every router's metrics on one set of test rows.
#[derive(Debug, Clone)]
pub struct Summary {
    pub rows: usize,
    pub models: Vec<String>,
    /// The AIQ cost range: cheapest to dearest single model (USD per row).
    pub cost_range: (f64, f64),
    /// Routers in display order; "zero" is the hull of the single models.
    pub routers: Vec<RouterSummary>,
}

/// Computes the metrics. The AIQ range is the single models' cost span;
/// APGR and CPT apply when there are exactly two models (strong = the one
/// with the higher test quality).
pub fn summarise(results: &[RouterResult], models: &[String], rows: usize) -> Summary {
    let singles: Vec<Point> = results
        .iter()
        .filter(|r| r.name.starts_with("model:"))
        .map(|r| r.tallies[0].point())
        .collect();
    let c_min = singles.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let c_max = singles
        .iter()
        .map(|p| p.0)
        .fold(f64::NEG_INFINITY, f64::max);
    let best_quality = singles
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let two = (models.len() == 2).then(|| {
        let strong = if singles[1].1 > singles[0].1 { 1 } else { 0 };
        (strong, singles[1 - strong].1, singles[strong].1)
    });
    let summary_of = |name: &str,
                      setting,
                      settings: Vec<f64>,
                      points: Vec<Point>,
                      shares: Vec<Vec<f64>>,
                      calibration: Option<&crate::metrics::Calibration>| {
        let (mut a, mut c5, mut c8) = (None, None, None);
        if let Some((strong, qw, qs)) = two {
            let curve: Vec<(f64, f64)> = shares
                .iter()
                .zip(&points)
                .map(|(s, p)| (s[strong], p.1))
                .collect();
            a = apgr(&curve, qw, qs);
            c5 = cpt(&curve, qw, qs, 0.5);
            c8 = cpt(&curve, qw, qs, 0.8);
        }
        RouterSummary {
            name: name.to_string(),
            aiq: aiq(&points, c_min, c_max),
            apgr: a,
            cpt50: c5,
            cpt80: c8,
            ece: calibration.and_then(|c| c.ece()),
            reliability: calibration.map(|c| c.reliability()).unwrap_or_default(),
            cost_to_match_best_single: cost_to_reach(&points, best_quality - 1e-12),
            points,
            shares,
            setting,
            settings,
        }
    };
    let mut routers: Vec<RouterSummary> = results
        .iter()
        .filter(|r| !r.name.starts_with("model:"))
        .map(|r| {
            let points = r.tallies.iter().map(|t| t.point()).collect();
            let shares = r
                .tallies
                .iter()
                .map(|t| (0..models.len()).map(|m| t.share(m)).collect())
                .collect();
            summary_of(
                &r.name,
                r.setting,
                r.settings.clone(),
                points,
                shares,
                r.calibration.as_ref(),
            )
        })
        .collect();
    let single_shares = (0..models.len())
        .map(|m| {
            (0..models.len())
                .map(|j| f64::from(u8::from(j == m)))
                .collect()
        })
        .collect();
    routers.push(summary_of(
        "zero",
        "model",
        (0..models.len()).map(|m| m as f64).collect(),
        singles,
        single_shares,
        None,
    ));
    Summary {
        rows,
        models: models.to_vec(),
        cost_range: (c_min, c_max),
        routers,
    }
}

impl RouterSummary {
    /// The table cells after the router's name, as both tables print them:
    /// AIQ, max quality, APGR, CPT(50%) and CPT(80%) in percent, ECE, cost
    /// to match the best single model; `missing` where a value is undefined.
    fn cells(&self, missing: &str) -> [String; 7] {
        let f = |v: Option<f64>, d: usize| v.map_or(missing.to_string(), |x| format!("{x:.d$}"));
        let max_quality = self
            .points
            .iter()
            .map(|p| p.1)
            .fold(f64::NEG_INFINITY, f64::max);
        [
            f(self.aiq, 4),
            format!("{max_quality:.4}"),
            f(self.apgr, 3),
            f(self.cpt50.map(|x| x * 100.0), 1),
            f(self.cpt80.map(|x| x * 100.0), 1),
            f(self.ece, 4),
            f(self.cost_to_match_best_single, 6),
        ]
    }
}

impl Summary {
    /// The router called `name`.
    pub fn router(&self, name: &str) -> Option<&RouterSummary> {
        self.routers.iter().find(|r| r.name == name)
    }

    /// The JSON document `pointsman eval --json` prints:
    /// `{"rows", "models", "cost_range", "routers": {name: {"points", "aiq",
    /// "apgr", "cpt50", "cpt80", "ece", ...}}}`; inapplicable fields are null.
    pub fn to_json(&self) -> Value {
        let routers: serde_json::Map<String, Value> = self
            .routers
            .iter()
            .map(|r| {
                let points: Vec<[f64; 2]> = r.points.iter().map(|p| [p.0, p.1]).collect();
                (
                    r.name.clone(),
                    json!({
                        "points": points, "aiq": r.aiq, "apgr": r.apgr, "cpt50": r.cpt50, "cpt80": r.cpt80,
                        "ece": r.ece, "cost_to_match_best_single": r.cost_to_match_best_single,
                        "max_quality": r.points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
                        "setting": r.setting, "settings": r.settings, "shares": r.shares,
                        "reliability": r.reliability.iter().map(|b| json!({
                            "bin": [b.lower, b.upper], "count": b.count,
                            "mean_predicted": b.mean_predicted, "mean_observed": b.mean_observed,
                        })).collect::<Vec<_>>(),
                    }),
                )
            })
            .collect();
        json!({"rows": self.rows, "models": self.models, "cost_range": [self.cost_range.0, self.cost_range.1], "routers": routers})
    }

    /// A fixed-width text table, one router per line.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} test rows, {} models, AIQ cost range {:.6}..{:.6} USD/row\n{:<16} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7} {:>14}\n",
            self.rows, self.models.len(), self.cost_range.0, self.cost_range.1,
            "router", "AIQ", "max q", "APGR", "CPT50", "CPT80", "ECE", "$ to match best"
        );
        for r in &self.routers {
            let [aiq, maxq, apgr, cpt50, cpt80, ece, to_match] = r.cells("-");
            s += &format!(
                "{:<16} {aiq:>7} {maxq:>8} {apgr:>7} {cpt50:>7} {cpt80:>7} {ece:>7} {to_match:>14}\n",
                r.name
            );
        }
        s
    }

    /// Markdown: the table plus the single models' points.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# Routing evaluation\n\n{} test rows, {} models. AIQ over the single models' cost range {:.6}–{:.6} USD per row.\n\n![cost-quality](cost_quality.svg)\n\n| router | AIQ | max quality | APGR | CPT(50%) | CPT(80%) | ECE | cost to match best single (USD/row) |\n|---|---|---|---|---|---|---|---|\n",
            self.rows, self.models.len(), self.cost_range.0, self.cost_range.1
        );
        for r in &self.routers {
            s += &format!("| {} | {} |\n", r.name, r.cells("–").join(" | "));
        }
        if self.routers.iter().any(|r| !r.reliability.is_empty()) {
            s += "\nReliability of P(success) on the held-out rows (10 equal-width bins; ECE is the count-weighted mean gap between the two means):\n\n![reliability](reliability.svg)\n";
        }
        if let Some(zero) = self.router("zero") {
            s += "\n| model | mean cost (USD/row) | quality |\n|---|---|---|\n";
            for (m, p) in self.models.iter().zip(&zero.points) {
                s += &format!("| {m} | {:.6} | {:.4} |\n", p.0, p.1);
            }
        }
        s
    }

    /// Writes `report.md`, `summary.json`, `cost_quality.svg` and (where a
    /// router predicts P(success)) `reliability.svg` into `dir`.
    pub fn write_report(&self, dir: &Path) -> Result<(), EvalError> {
        let io = |source| EvalError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::write(dir.join("report.md"), self.markdown()).map_err(io)?;
        std::fs::write(
            dir.join("summary.json"),
            serde_json::to_string_pretty(&self.to_json()).expect("json"),
        )
        .map_err(io)?;
        self.chart(&dir.join("cost_quality.svg"))
            .map_err(|e| EvalError::Data(format!("chart: {e}")))?;
        let calibrated: Vec<(&str, &[ReliabilityBin], Option<f64>)> = self
            .routers
            .iter()
            .filter(|r| !r.reliability.is_empty())
            .map(|r| (r.name.as_str(), r.reliability.as_slice(), r.ece))
            .collect();
        if calibrated.is_empty() {
            return Ok(());
        }
        crate::charts::reliability_svg(&calibrated, &dir.join("reliability.svg"))
            .map_err(|e| EvalError::Data(format!("reliability chart: {e}")))
    }

    /// The cost-quality plane: swept routers as lines, the rest as points.
    fn chart(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let all: Vec<Point> = self
            .routers
            .iter()
            .flat_map(|r| r.points.iter().copied())
            .collect();
        let (x0, x1) = (
            0.0,
            all.iter().map(|p| p.0).fold(0.0, f64::max) * 1.05 + 1e-12,
        );
        let y0 = all.iter().map(|p| p.1).fold(1.0, f64::min).max(0.0) - 0.02;
        let y1 = all.iter().map(|p| p.1).fold(0.0, f64::max).min(1.0) + 0.02;
        let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(20)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .caption("cost vs quality", ("sans-serif", 20))
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("mean cost per prompt (USD)")
            .y_desc("mean quality")
            .draw()?;
        let palette = [
            &BLUE,
            &RED,
            &GREEN,
            &MAGENTA,
            &CYAN,
            &BLACK,
            &RGBColor(255, 140, 0),
            &RGBColor(120, 120, 120),
        ];
        for (i, r) in self.routers.iter().enumerate() {
            let color = *palette[i % palette.len()];
            let mut pts = r.points.clone();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if r.name == "zero" {
                let hull = crate::metrics::upper_hull(&pts);
                chart
                    .draw_series(LineSeries::new(hull, color.stroke_width(1)))?
                    .label("zero (hull of single models)")
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            } else if pts.len() > 1 {
                chart
                    .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
                    .label(r.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            } else {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 5, color.filled())))?
                    .label(r.name.clone())
                    .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        root.present()?;
        Ok(())
    }
}
