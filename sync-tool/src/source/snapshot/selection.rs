//! The table selection stored with the checkpoint (`selection`: label → etcd prefix) against
//! the configured one: a removed table's keys are deleted (or kept, `sync.on_table_removed:
//! keep`), an added table is queued for an incremental snapshot, and the checkpoint is taken
//! as one of the new selection, so that the stream resumes instead of re-dumping.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{json, Value};

use super::FIELD;
use crate::config::{Config, OnTableRemoved};
use crate::sink::Sink;
use crate::source::TableMeta;

/// Checkpoint field holding the selection.
pub const SELECTION: &str = "selection";

fn current(tables: &[TableMeta]) -> BTreeMap<String, String> {
    tables
        .iter()
        .map(|t| (t.label(), t.prefix.clone()))
        .collect()
}

/// Call with the checkpoint read at start, before the driver compares its `tables`
/// fingerprint. Every checkpoint written from now on carries the configured selection. If the
/// checkpoint has a stored selection that differs: removed tables are handled now, and `cp` is
/// changed in memory to carry `fingerprint` and the due snapshots (the added tables, after the
/// ones still due). `incremental`: the source can take incremental snapshots (otherwise the
/// fingerprint differs and the driver re-dumps, as for a checkpoint without a selection).
pub async fn adopt(
    cfg: &Config,
    sink: &mut Sink,
    cp: &mut Option<Value>,
    tables: &[TableMeta],
    fingerprint: &str,
    incremental: bool,
) -> Result<()> {
    let now = current(tables);
    sink.set_checkpoint_field(SELECTION, Some(json!(now)));
    let Some(cp) = cp.as_mut() else {
        return Ok(());
    };
    let Some(stored) = cp.get(SELECTION).and_then(Value::as_object) else {
        return Ok(());
    };
    let stored: BTreeMap<String, String> = stored
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let removed: Vec<(&String, &String)> = stored
        .iter()
        .filter(|(l, p)| now.get(*l) != Some(p))
        .collect();
    let added: Vec<String> = now
        .iter()
        .filter(|(l, p)| stored.get(*l) != Some(p))
        .map(|(l, _)| l.clone())
        .collect();
    if removed.is_empty() && added.is_empty() {
        return Ok(());
    }
    if !incremental && !added.is_empty() {
        tracing::warn!(added = ?added, "tables were added to the selection; this server cannot take incremental snapshots (MariaDB's binlog_snapshot_position is missing): re-dumping");
        return Ok(());
    }
    for (label, prefix) in &removed {
        let overlaps = now
            .values()
            .any(|p| p.starts_with(prefix.as_str()) || prefix.starts_with(p.as_str()));
        match cfg.sync.on_table_removed {
            OnTableRemoved::Keep => {
                tracing::info!(table = %label, prefix = %prefix, "table left the selection; its keys are kept (sync.on_table_removed: keep)")
            }
            OnTableRemoved::Delete if overlaps => {
                tracing::warn!(table = %label, prefix = %prefix, "table left the selection; its keys are not deleted: the prefix overlaps a selected table's")
            }
            OnTableRemoved::Delete => {
                tracing::info!(table = %label, prefix = %prefix, "table left the selection; deleting its keys");
                sink.delete_prefix(prefix).await?;
            }
        }
    }
    sink.flush_data().await?;
    // snapshots still due (of tables still selected), then the added tables
    let mut due: Vec<String> = cp
        .get(FIELD)
        .and_then(|s| s["tables"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let first = due.first().cloned();
    due.retain(|l| now.contains_key(l) && !added.contains(l));
    if cfg.sync.dump {
        due.extend(added.iter().cloned());
    } else if !added.is_empty() {
        tracing::info!(added = ?added, "tables added to the selection are streamed without a copy of their rows (sync.dump: false)");
    }
    let mut snap = cp.get(FIELD).cloned().unwrap_or_else(|| json!({}));
    if due.first() != first.as_ref() {
        snap = json!({});
    }
    snap["tables"] = json!(due);
    if due.is_empty() {
        cp.as_object_mut().map(|m| m.remove(FIELD));
    } else {
        cp[FIELD] = snap;
    }
    tracing::info!(added = ?added, removed = ?removed.iter().map(|(l, _)| l).collect::<Vec<_>>(), "table selection changed since the checkpoint: streaming goes on, added tables are copied by incremental snapshots");
    cp["tables"] = json!(fingerprint);
    cp[SELECTION] = json!(now);
    // the same position, now for the new selection: a restart before the stream writes a
    // checkpoint does not handle the removed tables again
    sink.write_checkpoint(cp).await?;
    Ok(())
}
