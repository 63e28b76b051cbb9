//! Progress bars on a terminal (silent when stderr is not one, or with `--quiet`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nasbench::cell::generate::Progress;

/// An indicatif bar driven by the library's [`Progress`] calls.
pub struct Bar(ProgressBar);

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Bar {
    /// A bar on stderr, hidden when `quiet` or when stderr is not a terminal.
    pub fn new(quiet: bool) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Bar(ProgressBar::with_draw_target(None, target))
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }

    /// Shows a spinner with `stage` until the next stage or [`Bar::finish`].
    pub fn start_spinner(&self, stage: &str) {
        self.0.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        self.0.set_message(stage.to_string());
        self.0
            .enable_steady_tick(std::time::Duration::from_millis(120));
    }

    fn begin(&self, template: &str, stage: &str, total: u64) {
        self.0.disable_steady_tick();
        self.0.set_style(style(template));
        self.0.set_message(stage.to_string());
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.reset_eta();
    }
}

impl Progress for Bar {
    fn start(&self, stage: &str, total: u64) {
        self.begin(
            "{msg:<36} [{bar:30}] {human_pos}/{human_len} ({per_sec}, {eta})",
            stage,
            total,
        );
    }

    fn start_bytes(&self, stage: &str, total: u64) {
        self.begin(
            "{msg:<36} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            stage,
            total,
        );
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}
