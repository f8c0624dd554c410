//! Line charts: one coloured line with markers per series over a numeric x axis.

use super::chart::{Chart, FAMILY, color, msg, y_top};
use crate::error::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

/// A line chart.
pub(crate) struct Lines {
    pub(crate) title: String,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    /// (series name, (x, y) points in x order).
    pub(crate) series: Vec<(String, Vec<(f64, f64)>)>,
}

impl Chart for Lines {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let points = || self.series.iter().flat_map(|s| s.1.iter());
        let x_max = points().map(|p| p.0).fold(0.0, f64::max);
        let x_min = points().map(|p| p.0).fold(x_max, f64::min);
        let y_max = points().map(|p| p.1).fold(0.0, f64::max);
        let pad = ((x_max - x_min) * 0.05).max(0.5);
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FAMILY, 22))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d((x_min - pad).max(0.0)..x_max + pad, 0f64..y_top(y_max))
            .map_err(msg)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 15))
            .draw()
            .map_err(msg)?;
        for (j, (name, pts)) in self.series.iter().enumerate() {
            let c = color(j);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .map_err(msg)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(msg)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 13))
            .draw()
            .map_err(msg)
    }
}
