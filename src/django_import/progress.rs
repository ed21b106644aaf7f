//! The progress bar an import draws while it writes.
use indicatif::{ProgressBar, ProgressStyle};

/// The progress bar on stderr; draws nothing when stderr is not a terminal or when off.
pub(super) struct Progress(ProgressBar);

impl Progress {
    pub(super) fn new(on: bool) -> Self {
        let bar = if on { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
        Self(bar)
    }

    pub(super) fn start(&self, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} rows  {msg}") {
            self.0.set_style(style);
        }
    }

    pub(super) fn phase(&self, message: String) {
        self.0.set_message(message);
    }

    pub(super) fn add(&self, rows: usize) {
        self.0.inc(rows as u64);
    }

    pub(super) fn finish(&self) {
        self.0.finish_and_clear();
    }
}
