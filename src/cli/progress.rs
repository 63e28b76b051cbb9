//! Progress bars on a terminal (silent when stderr is not one, or with `--quiet`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nasbench::generate::Progress;

/// An indicatif bar driven by the library's [`Progress`] calls.
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar on stderr, hidden when `quiet` or when stderr is not a terminal.
    pub fn new(quiet: bool) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        let style = ProgressStyle::with_template(
            "{msg:<36} [{bar:30}] {human_pos}/{human_len} ({per_sec}, {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Bar(bar)
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn start(&self, stage: &str, total: u64) {
        self.0.set_message(stage.to_string());
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.reset_eta();
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}
