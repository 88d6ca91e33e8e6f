//! The rate-distortion plot: bits per image against PSNR, one line per
//! codec, lossless codecs as vertical lines at their one rate.

use plotters::prelude::*;

use super::BenchError;
use super::report::BenchReport;

const SIZE: (u32, u32) = (960, 640);

/// Draws the report's rows as an SVG document.
pub(crate) fn rd_svg(report: &BenchReport) -> Result<String, BenchError> {
    let mut svg = String::new();
    draw(report, &mut svg).map_err(BenchError::Plot)?;
    Ok(svg)
}

/// One line of the plot: a codec's (bits per image, PSNR) points by rate.
struct Curve {
    name: String,
    points: Vec<(f64, f64)>,
    lossless_bits: Option<f64>,
}

fn curves(report: &BenchReport) -> Vec<Curve> {
    let mut names: Vec<&str> = Vec::new();
    for r in &report.rows {
        if !names.contains(&r.codec.as_str()) {
            names.push(&r.codec);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let rows: Vec<_> = report.codec_rows(name).collect();
            let mut points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.psnr_db().is_finite())
                .map(|r| (r.bits_per_image(), r.psnr_db()))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let lossless_bits = rows
                .iter()
                .filter(|r| r.lossless())
                .map(|r| r.bits_per_image())
                .min_by(f64::total_cmp);
            Curve {
                name: name.to_string(),
                points,
                lossless_bits,
            }
        })
        .collect()
}

fn draw(report: &BenchReport, svg: &mut String) -> Result<(), String> {
    let curves = curves(report);
    let finite = || curves.iter().flat_map(|c| c.points.iter());
    let x_max = finite()
        .map(|p| p.0)
        .chain(curves.iter().filter_map(|c| c.lossless_bits))
        .fold(0.0f64, f64::max)
        * 1.05;
    let y_min = finite().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = finite().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (y_min, y_max) = if y_min.is_finite() && y_max.is_finite() {
        ((y_min - 1.0).floor(), (y_max + 1.0).ceil())
    } else {
        (0.0, 50.0)
    };
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };

    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Rate-distortion, {} images, each its own file",
                report.images
            ),
            ("sans-serif", 22),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, y_min..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("bits per image")
        .y_desc("PSNR, dB (of mean MSE)")
        .draw()
        .map_err(|e| e.to_string())?;

    for (i, curve) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = color.stroke_width(2);
        if let Some(bits) = curve.lossless_bits {
            chart
                .draw_series(LineSeries::new([(bits, y_min), (bits, y_max)], style))
                .map_err(|e| e.to_string())?
                .label(format!("{} (lossless, {:.0} bits)", curve.name, bits))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
            continue;
        }
        chart
            .draw_series(LineSeries::new(curve.points.iter().copied(), style))
            .map_err(|e| e.to_string())?
            .label(curve.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        chart
            .draw_series(
                curve
                    .points
                    .iter()
                    .map(|&p| Circle::new(p, 3, color.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
