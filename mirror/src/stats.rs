//! Counters shown under `router_diagnostics` of the service.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct TargetStats {
    /// Requests routed to the target.
    pub queries: AtomicU64,
    /// Connection failures.
    pub errors: AtomicU64,
    /// Requests whose reply differed (by checksum) from main's.
    pub conflicts: AtomicU64,
    /// Sessions that dropped the target for falling too far behind main (sync=false).
    pub backlog_drops: AtomicU64,
    /// Times the target was connected again after it was lost (reconnect=true).
    pub reconnects: AtomicU64,
}

#[derive(Default)]
pub struct Stats {
    targets: Mutex<BTreeMap<String, Arc<TargetStats>>>,
    pub exported: AtomicU64,
    pub dropped: AtomicU64,
}

impl Stats {
    pub fn target(&self, name: &str) -> Arc<TargetStats> {
        let mut t = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        t.entry(name.to_string()).or_default().clone()
    }

    /// Counts a report that could not be exported; true when it is worth a log line (the
    /// first drop and then every power of two, so a dead exporter cannot flood the log).
    pub fn drop_one(&self) -> bool {
        let n = self.dropped.fetch_add(1, Relaxed) + 1;
        n.is_power_of_two()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let targets: serde_json::Map<String, serde_json::Value> = self
            .targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    serde_json::json!({
                        "queries": v.queries.load(Relaxed),
                        "errors": v.errors.load(Relaxed),
                        "conflicts": v.conflicts.load(Relaxed),
                        "backlog_drops": v.backlog_drops.load(Relaxed),
                        "reconnects": v.reconnects.load(Relaxed),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "reports_exported": self.exported.load(Relaxed),
            "reports_dropped": self.dropped.load(Relaxed),
            "targets": targets,
        })
    }
}
