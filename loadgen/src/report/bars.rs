//! Grouped bar charts: one group per category, one coloured bar per series.

use super::chart::{Chart, FAMILY, category_chart, category_labels, color, msg, y_top};
use crate::error::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

/// A grouped bar chart.
pub(crate) struct Bars {
    pub(crate) title: String,
    pub(crate) y_label: String,
    pub(crate) categories: Vec<String>,
    /// (series name, one value per category; `None` leaves a gap).
    pub(crate) series: Vec<(String, Vec<Option<f64>>)>,
}

impl Chart for Bars {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let n = self.categories.len().max(1);
        let max = self
            .series
            .iter()
            .flat_map(|s| s.1.iter().flatten().copied())
            .fold(0.0, f64::max);
        let legend_room = if self.series.len() > 1 { 1.25 } else { 1.0 };
        // Extra headroom keeps the legend clear of the tallest bars.
        let mut chart = category_chart(
            area,
            &self.title,
            &self.y_label,
            n,
            y_top(max) * legend_room,
        )?;
        let k = self.series.len().max(1) as f64;
        let width = 0.8 / k;
        for (j, (name, values)) in self.series.iter().enumerate() {
            let c = color(j);
            let bars = values.iter().enumerate().filter_map(|(i, v)| {
                let v = (*v)?;
                let x0 = i as f64 + 0.1 + j as f64 * width;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.92, v)],
                    c.filled(),
                ))
            });
            chart
                .draw_series(bars)
                .map_err(msg)?
                .label(name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], c.filled()));
            let labels = values.iter().enumerate().filter_map(|(i, v)| {
                let v = (*v)?;
                let x = i as f64 + 0.1 + (j as f64 + 0.5) * width;
                Some(Text::new(
                    value_text(v),
                    (x, v),
                    TextStyle::from((FAMILY, 11).into_font()).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Bottom,
                        ),
                    ),
                ))
            });
            chart.draw_series(labels).map_err(msg)?;
        }
        if self.series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FAMILY, 13))
                .draw()
                .map_err(msg)?;
        }
        category_labels(area, |x| chart.backend_coord(&(x, 0.0)), &self.categories)
    }
}

/// Short text of a bar's value.
fn value_text(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
