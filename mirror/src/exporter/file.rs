//! Reports appended to a file, one JSON document per line (JSON Lines). Each line is one
//! write to a descriptor opened with O_APPEND, so lines of concurrent sessions never
//! interleave; no user-space buffering, so nothing is lost if MaxScale dies.

use super::Exporter;
use crate::stats::Stats;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub struct FileExporter {
    file: File,
    path: String,
    stats: Arc<Stats>,
}

impl FileExporter {
    pub fn open(path: &str, stats: Arc<Stats>) -> Result<Self, String> {
        // Rust opens with O_CLOEXEC, so the descriptor does not leak into child processes.
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o664)
            .open(path)
            .map_err(|e| format!("cannot open export file '{path}': {e}"))?;
        Ok(FileExporter {
            file,
            path: path.to_string(),
            stats,
        })
    }
}

impl Exporter for FileExporter {
    fn ship(&self, line: &str) {
        match (&self.file).write_all(line.as_bytes()) {
            Ok(()) => {
                self.stats.exported.fetch_add(1, Relaxed);
            }
            Err(e) => {
                if self.stats.drop_one() {
                    bridge::log_error!("cannot write a report to '{}': {e}", self.path);
                }
            }
        }
    }
}
