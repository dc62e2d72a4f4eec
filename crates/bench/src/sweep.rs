//! `peerlane bench sweep`: one-way bulk throughput against message size for the three stacks,
//! as a table and optionally an SVG line chart.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, ensure};
use plotters::prelude::*;

use crate::args::{ALL_STACKS, BenchArgs, Runtime, Spec, Stack, Workload, stack_name};
use crate::check::SEQ_BYTES;
use crate::report::Report;

/// Message sizes unless given: 1 KiB to 16 MiB.
const DEFAULT_SIZES: [usize; 8] = [
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
];
/// Bytes moved per point unless given.
const DEFAULT_BYTES_PER_POINT: u64 = 96 << 20;

/// The sweep's settings.
#[derive(Debug)]
pub(super) struct Options {
    sizes: Vec<usize>,
    bytes_per_point: u64,
    plot: Option<PathBuf>,
    json: bool,
}

impl Options {
    pub(super) fn new(args: &BenchArgs) -> anyhow::Result<Self> {
        let sizes = args.sizes.clone().unwrap_or_else(|| DEFAULT_SIZES.to_vec());
        ensure!(!sizes.is_empty(), "--sizes needs at least one size");
        for size in &sizes {
            ensure!(
                (SEQ_BYTES..=32 << 20).contains(size),
                "--sizes: {size} is outside 8 bytes to 32 MiB"
            );
        }
        let bytes_per_point = args.bytes_per_point.unwrap_or(DEFAULT_BYTES_PER_POINT);
        ensure!(bytes_per_point > 0, "--bytes-per-point must be at least 1");
        Ok(Self {
            sizes,
            bytes_per_point,
            plot: args.plot.clone(),
            json: args.json,
        })
    }
}

/// Runs the sweep: for each size, for each repetition, every stack.
pub(super) fn run(options: Options, reps: usize) -> anyhow::Result<ExitCode> {
    // reports[size index][stack index]
    let mut reports: Vec<Vec<Report>> = Vec::new();
    for &size in &options.sizes {
        let spec = Spec {
            workload: Workload::Sweep,
            count: (options.bytes_per_point / size as u64).max(1),
            size,
            warmup: 0,
            concurrency: 1,
            isolate: false,
            flood_sockets: 0,
            runtime: Runtime::MultiThread,
        };
        let mut runs: Vec<Vec<Report>> = vec![Vec::new(); ALL_STACKS.len()];
        for _ in 0..reps {
            for (s, stack) in ALL_STACKS.iter().enumerate() {
                let m = crate::run::run_isolated(*stack, spec)?;
                runs[s].push(Report::from_run(*stack, &spec, &m));
            }
        }
        let row: Vec<Report> = runs.iter().map(|r| Report::median(r)).collect();
        if options.json {
            for report in &row {
                println!("{}", serde_json::to_string(report)?);
            }
        } else {
            if reports.is_empty() {
                println!(
                    "{:>9} {:>7} {:>10} {:>10} {:>10} {:>8}",
                    "size", "count", "tcp MB/s", "noise MB/s", "peerlane", "/noise"
                );
            }
            let mb = |s: usize| row[s].mb_per_s.unwrap_or(0.0);
            println!(
                "{:>9} {:>7} {:>10.1} {:>10.1} {:>10.1} {:>7.2}x",
                human_size(size as f64),
                spec.count,
                mb(0),
                mb(1),
                mb(2),
                mb(2) / mb(1).max(f64::MIN_POSITIVE)
            );
        }
        reports.push(row);
    }
    if let Some(path) = &options.plot {
        plot(path, &options.sizes, &reports)
            .with_context(|| format!("writing the plot to {}", path.display()))?;
        if !options.json {
            println!("plot written to {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `1 KiB`, `16 MiB`, or bytes.
fn human_size(bytes: f64) -> String {
    if bytes >= f64::from(1 << 20) {
        format!("{} MiB", (bytes / f64::from(1 << 20)).round())
    } else if bytes >= 1024.0 {
        format!("{} KiB", (bytes / 1024.0).round())
    } else {
        format!("{} B", bytes.round())
    }
}

/// An SVG line chart: log2 of the message size across, MB/s up, one line per stack.
fn plot(path: &PathBuf, sizes: &[usize], reports: &[Vec<Report>]) -> anyhow::Result<()> {
    let xs: Vec<f64> = sizes.iter().map(|s| (*s as f64).log2()).collect();
    let (x_min, x_max) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    let (x_min, x_max) = if x_max > x_min {
        (x_min, x_max)
    } else {
        (x_min - 1.0, x_max + 1.0)
    };
    let y_max = reports
        .iter()
        .flatten()
        .filter_map(|r| r.mb_per_s)
        .fold(0.0_f64, f64::max)
        * 1.1;
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };

    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "one-way bulk throughput over loopback (2 worker threads)",
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_min..x_max, 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .y_desc("MB/s (10^6 bytes)")
        .x_labels(xs.len().max(2))
        .x_label_formatter(&|x| human_size(x.exp2()))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_error)?;
    let colors = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x2c, 0xa0, 0x2c),
    ];
    for (s, stack) in ALL_STACKS.iter().enumerate() {
        let color = colors[s];
        let points: Vec<(f64, f64)> = xs
            .iter()
            .zip(reports)
            .map(|(x, row)| (*x, row[s].mb_per_s.unwrap_or(0.0)))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(stack_label(*stack))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn stack_label(stack: Stack) -> &'static str {
    stack_name(stack)
}

/// plotters' errors borrow the backend's error type; keep their text.
fn plot_error(err: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{err}")
}
