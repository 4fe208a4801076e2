//! The active instance's progress, put every few seconds to `<state_path>/status` with its
//! election lease (so the key goes away with the instance): what `sync-tool status` shows
//! besides the checkpoint.

use std::time::Duration;

use etcd_client::{Client, PutOptions};
use serde_json::{json, Value};

use crate::metrics::{now_unix, METRICS};

const EVERY: Duration = Duration::from_secs(2);

fn ms(unix: f64) -> u64 {
    (unix * 1000.0) as u64
}

/// The counters of this process (since it started) and who it is.
pub fn snapshot(instance: &str, leader_since_ms: u64) -> Value {
    let m = &*METRICS;
    json!({
        "instance": instance,
        "leader_since_ms": leader_since_ms,
        "updated_ms": ms(now_unix()),
        "rows_applied": m.rows_applied.get(),
        "dump_rows": m.dump_rows.get(),
        "dumps": m.dumps.get(),
        "etcd_txns": m.etcd_txns.get(),
        "errors": m.errors.get(),
        "stale_keys_removed": m.stale_keys_removed.get(),
        "lag_ms": m.lag_ms.get(),
        "last_source_commit_ms": m.last_commit_ms.get(),
        "checkpoint_written_ms": m.checkpoint_time_ms.get(),
        "table_rows_applied": m.table_rows(),
    })
}

/// Puts the snapshot every [`EVERY`] until aborted; a put that fails (the lease is gone: the
/// instance is no longer active) is retried at the next tick.
pub async fn publish(client: Client, key: String, lease: i64, instance: String) {
    let since = ms(now_unix());
    let mut kv = client.kv_client();
    loop {
        let v = snapshot(&instance, since).to_string();
        if let Err(e) = kv
            .put(key.as_str(), v, Some(PutOptions::new().with_lease(lease)))
            .await
        {
            tracing::debug!(error = %e, "could not publish the status");
        }
        tokio::time::sleep(EVERY).await;
    }
}
