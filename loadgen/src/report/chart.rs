//! Drawing a chart once for any plotters backend and saving it as PNG and SVG.

use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::Once;

/// Chart size in pixels.
pub(crate) const SIZE: (u32, u32) = (960, 540);

/// The bundled DejaVu Sans (see assets/DejaVuSans-LICENSE.txt).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Font family every chart uses; registered from the bundled TTF on first use.
pub(crate) const FAMILY: &str = "sans-serif";

fn register_font() {
    REGISTER.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::warn!("bundled font failed to load; chart text will be missing");
        }
    });
}

/// A chart that can draw itself on any backend.
pub(crate) trait Chart {
    /// Draws onto `area` (already filled white).
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Turns a plotters error (its type depends on the backend) into the crate's error.
pub(crate) fn msg<E: std::fmt::Display>(e: E) -> Error {
    Error::Draw(e.to_string())
}

/// Series colour number `i`.
pub(crate) fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

/// Writes category names centred under positions `i + 0.5` of a chart's x axis.
pub(crate) fn category_labels<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: impl Fn(f64) -> (i32, i32),
    names: &[String],
) -> Result<()> {
    let size = if names.len() > 6 { 11 } else { 14 };
    let style = TextStyle::from((FAMILY, size).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, name) in names.iter().enumerate() {
        let (x, y) = at(i as f64 + 0.5);
        // Stagger long label rows so neighbours do not overlap.
        let dy = if names.len() > 4 && i % 2 == 1 { 18 } else { 6 };
        area.draw(&Text::new(name.clone(), (x, y + dy), style.clone()))
            .map_err(msg)?;
    }
    Ok(())
}

/// A y-axis top with some headroom over `max` (1 when everything is zero).
pub(crate) fn y_top(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        max * 1.15
    } else {
        1.0
    }
}

/// Saves `chart` as `dir/stem.png` and `dir/stem.svg`; returns the two file names.
pub(crate) fn save(chart: &impl Chart, dir: &Path, stem: &str) -> Result<[String; 2]> {
    register_font();
    let err = |reason: String| Error::Chart {
        name: stem.to_string(),
        reason,
    };
    let png = format!("{stem}.png");
    let svg = format!("{stem}.svg");
    {
        let path = dir.join(&png);
        let root = BitMapBackend::new(&path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        chart.draw(&root).map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    {
        let path = dir.join(&svg);
        let root = SVGBackend::new(&path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        chart.draw(&root).map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok([png, svg])
}

/// A chart of `n` categories along x (labels drawn separately by [`category_labels`]) and values
/// from 0 to `y_max` along y, with the caption, mesh and fonts every category chart shares.
pub(crate) fn category_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    y_label: &str,
    n: usize,
    y_max: f64,
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..n as f64, 0f64..y_max)
        .map_err(msg)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&|_| String::new())
        .y_desc(y_label)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(msg)?;
    Ok(chart)
}
