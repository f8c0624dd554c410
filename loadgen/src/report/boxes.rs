//! Latency box plots: box from P25 to P75, median line, whiskers to min and max, P99 marker.

use super::chart::{Chart, category_chart, category_labels, color, msg, y_top};
use crate::error::Result;
use crate::metrics::Stats;
use plotters::coord::Shift;
use plotters::prelude::*;

/// A box plot with one box per category.
pub(crate) struct Boxes {
    pub(crate) title: String,
    pub(crate) y_label: String,
    /// (category, its distribution).
    pub(crate) boxes: Vec<(String, Stats)>,
}

impl Chart for Boxes {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let n = self.boxes.len().max(1);
        let max = self.boxes.iter().map(|b| b.1.max).fold(0.0, f64::max);
        let mut chart = category_chart(area, &self.title, &self.y_label, n, y_top(max))?;
        for (i, (_, s)) in self.boxes.iter().enumerate() {
            let c = color(i);
            let (l, r, mid) = (i as f64 + 0.3, i as f64 + 0.7, i as f64 + 0.5);
            let (cl, cr) = (i as f64 + 0.4, i as f64 + 0.6);
            chart
                .draw_series([Rectangle::new(
                    [(l, s.p25), (r, s.p75)],
                    c.mix(0.35).filled(),
                )])
                .map_err(msg)?;
            chart
                .draw_series([Rectangle::new([(l, s.p25), (r, s.p75)], c.stroke_width(2))])
                .map_err(msg)?;
            let lines = [
                vec![(l, s.median), (r, s.median)],
                vec![(mid, s.min), (mid, s.p25)],
                vec![(mid, s.p75), (mid, s.max)],
                vec![(cl, s.min), (cr, s.min)],
                vec![(cl, s.max), (cr, s.max)],
            ];
            chart
                .draw_series(
                    lines
                        .into_iter()
                        .map(|p| PathElement::new(p, c.stroke_width(2))),
                )
                .map_err(msg)?;
            chart
                .draw_series([Cross::new((mid, s.p99), 5, BLACK.stroke_width(2))])
                .map_err(msg)?;
        }
        let names: Vec<String> = self.boxes.iter().map(|b| b.0.clone()).collect();
        category_labels(area, |x| chart.backend_coord(&(x, 0.0)), &names)
    }
}
