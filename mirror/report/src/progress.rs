//! Progress on standard error: a bar when it is a terminal, otherwise a line every few
//! seconds once the input has taken that long (nothing for short inputs).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// Lines between two looks at the clock.
const CHECK_EVERY: u64 = 16_384;

pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    start: Instant,
    last_plain: Instant,
    lines: u64,
}

impl Progress {
    /// `total_bytes`: the input's size when known (files).
    pub fn new(total_bytes: Option<u64>, quiet: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (terminal && !quiet).then(|| match total_bytes {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} [{bar:24}] {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg}").expect("valid template"),
            ),
        });
        let now = Instant::now();
        Progress {
            bar,
            plain: !terminal && !quiet,
            start: now,
            last_plain: now,
            lines: 0,
        }
    }

    /// One more line read; `bytes`: input bytes consumed so far.
    #[inline]
    pub fn line(&mut self, bytes: impl FnOnce() -> u64) {
        self.lines += 1;
        if !self.lines.is_multiple_of(CHECK_EVERY) {
            return;
        }
        let rate = self.lines as f64 / self.start.elapsed().as_secs_f64().max(1e-3);
        if let Some(b) = &self.bar {
            b.set_position(bytes());
            b.set_message(format!("{} lines, {:.0}k/s", self.lines, rate / 1000.0));
        } else if self.plain && self.last_plain.elapsed() >= PLAIN_EVERY {
            self.last_plain = Instant::now();
            eprintln!(
                "mirror-report: {} lines read, {:.0}k lines/s",
                self.lines,
                rate / 1000.0
            );
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
