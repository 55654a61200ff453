//! How `dockwatch pull` shows a pull: one progress bar per layer on a
//! terminal, like `docker pull`; plain lines, one per layer status change,
//! when stdout is not a terminal. Both are drawn from the shared fold.

use std::collections::HashMap;
use std::io::Write;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use dockwatch::folds::progress::{Layer, LayerStatus, Progress};

/// Renders pull progress as it arrives.
#[derive(Debug)]
pub enum PullView {
    Bars {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
    },
    Lines {
        seen: HashMap<String, LayerStatus>,
    },
}

fn phase_bytes(layer: &Layer) -> (u64, Option<u64>) {
    match layer.status {
        LayerStatus::Extracting | LayerStatus::Complete => {
            (layer.extract.current, layer.extract.total.or(layer.size()))
        }
        _ => (layer.download.current, layer.download.total),
    }
}

fn bar_style() -> ProgressStyle {
    // The template is a constant; the fallback only guards a typo.
    ProgressStyle::with_template("{prefix} {msg:<14} [{bar:30}] {bytes}/{total_bytes}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl PullView {
    /// Bars if `terminal`, else plain lines on stdout.
    pub fn new(terminal: bool) -> Self {
        if terminal {
            Self::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                bars: HashMap::new(),
            }
        } else {
            Self::Lines {
                seen: HashMap::new(),
            }
        }
    }

    pub fn update(&mut self, progress: &Progress) {
        match self {
            Self::Bars { multi, bars } => {
                for layer in &progress.layers {
                    let bar = bars.entry(layer.id.clone()).or_insert_with(|| {
                        multi.add(
                            ProgressBar::new(0)
                                .with_style(bar_style())
                                .with_prefix(layer.id.clone()),
                        )
                    });
                    let (current, total) = phase_bytes(layer);
                    bar.set_length(total.unwrap_or(current));
                    bar.set_position(current);
                    match layer.status {
                        LayerStatus::Complete => bar.finish_with_message("pull complete"),
                        LayerStatus::AlreadyExists => bar.finish_with_message("already exists"),
                        s => bar.set_message(s.as_str()),
                    }
                }
            }
            Self::Lines { seen } => {
                let mut out = std::io::stdout().lock();
                for layer in &progress.layers {
                    if seen.get(&layer.id) == Some(&layer.status) {
                        continue;
                    }
                    seen.insert(layer.id.clone(), layer.status);
                    let (current, total) = phase_bytes(layer);
                    let bytes = match total {
                        Some(t) => format!(" {}/{}", HumanBytes(current), HumanBytes(t)),
                        None if current > 0 => format!(" {}", HumanBytes(current)),
                        None => String::new(),
                    };
                    // A closed stdout must not stop the pull.
                    let _ = writeln!(out, "{}: {}{bytes}", layer.id, layer.status.as_str());
                }
            }
        }
    }

    /// Leaves finished bars on screen and stops drawing.
    pub fn finish(&mut self) {
        if let Self::Bars { bars, .. } = self {
            for bar in bars.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            // The last bar line has no newline of its own.
            if !bars.is_empty() {
                println!();
            }
        }
    }
}
