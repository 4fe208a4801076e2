//! Reports as INFO messages of the MaxScale log (written only when `log_info` is on).

use super::Exporter;
use crate::stats::Stats;
use bridge::log::{self, Level};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub struct LogExporter {
    stats: Arc<Stats>,
}

impl LogExporter {
    pub fn new(stats: Arc<Stats>) -> Self {
        LogExporter { stats }
    }
}

impl Exporter for LogExporter {
    fn ship(&self, line: &str) {
        if log::enabled(Level::Info) {
            log::write(Level::Info, line.strip_suffix('\n').unwrap_or(line));
            self.stats.exported.fetch_add(1, Relaxed);
        } else if self.stats.drop_one() {
            bridge::log_warning!(
                "exporter=log but info messages are not logged (log_info=false): reports are lost"
            );
        }
    }
}
