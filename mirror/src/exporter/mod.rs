//! Where reports go. An exporter never blocks a routing thread: the file exporter does one
//! append per report, the Kafka exporter hands it to a bounded in-memory queue.

mod file;
mod kafka;
mod log;

use crate::config::ExporterConfig;
use crate::stats::Stats;
use std::sync::Arc;

pub trait Exporter: Send + Sync {
    /// Exports one report: a JSON document and a newline (one line of the file exporter's
    /// output; the others leave the newline out). Counts the outcome in the router's
    /// statistics.
    fn ship(&self, line: &str);
}

pub fn build(cfg: &ExporterConfig, stats: Arc<Stats>) -> Result<Arc<dyn Exporter>, String> {
    Ok(match cfg {
        ExporterConfig::Log => Arc::new(log::LogExporter::new(stats)),
        ExporterConfig::File { path } => Arc::new(file::FileExporter::open(path, stats)?),
        ExporterConfig::Kafka { broker, topic } => {
            Arc::new(kafka::KafkaExporter::new(broker, topic, stats)?)
        }
    })
}

/// Whether a configuration change needs a new exporter. A file exporter is always reopened,
/// so that `maxctrl alter service` after moving the file rotates it; a Kafka producer is kept
/// unless its broker or topic changed (rebuilding it would stall on flushing).
pub fn needs_rebuild(old: &ExporterConfig, new: &ExporterConfig) -> bool {
    matches!(new, ExporterConfig::File { .. }) || old != new
}
