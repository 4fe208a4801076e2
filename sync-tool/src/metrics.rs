//! Prometheus text-format metrics served on `metrics.address` (`GET /metrics`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Default)]
pub struct Counter(AtomicU64);
impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct Metrics {
    pub rows_applied: Counter,
    pub etcd_txns: Counter,
    pub errors: Counter,
    pub dump_rows: Counter,
    pub stale_keys_removed: Counter,
    pub is_leader: Counter,
    pub dumps: Counter,
    /// checkpoint position as a number (PG: LSN; MySQL: binlog position in the file)
    pub checkpoint_position: Counter,
    /// unix time (ms) of the last checkpoint write
    pub checkpoint_time_ms: Counter,
    /// commit time (ms) of the source transaction last applied
    pub last_commit_ms: Counter,
    /// lag (ms) source commit → etcd commit of the last applied transaction
    pub lag_ms: Counter,
    tables: Mutex<BTreeMap<String, u64>>,
    dump_tables: Mutex<BTreeMap<String, u64>>,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Metrics {
    pub fn add_table_rows(&self, table: &str, n: u64) {
        if let Ok(mut m) = self.tables.lock() {
            *m.entry(table.to_string()).or_default() += n;
        }
    }
    /// Row operations written per table so far.
    pub fn table_rows(&self) -> BTreeMap<String, u64> {
        self.tables.lock().map(|m| m.clone()).unwrap_or_default()
    }
    pub fn add_dump_rows(&self, table: &str, n: u64) {
        self.dump_rows.add(n);
        if let Ok(mut m) = self.dump_tables.lock() {
            *m.entry(table.to_string()).or_default() += n;
        }
    }
    pub fn set_checkpoint(&self, cp: &Value) {
        if let Some(p) = cp.get("position_num").and_then(Value::as_u64) {
            self.checkpoint_position.set(p);
        }
        self.checkpoint_time_ms.set((now_unix() * 1000.0) as u64);
    }
    pub fn observe_commit(&self, commit_unix: f64) {
        let now = now_unix();
        self.last_commit_ms.set((commit_unix * 1000.0) as u64);
        self.lag_ms
            .set(((now - commit_unix).max(0.0) * 1000.0) as u64);
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut c = |name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        c(
            "sync_rows_applied_total",
            "counter",
            "Row operations written to etcd (stream and dump)",
            self.rows_applied.get().to_string(),
        );
        c(
            "sync_etcd_txns_total",
            "counter",
            "etcd transactions committed",
            self.etcd_txns.get().to_string(),
        );
        c(
            "sync_errors_total",
            "counter",
            "Errors that caused a retry",
            self.errors.get().to_string(),
        );
        c(
            "sync_dump_rows_total",
            "counter",
            "Rows read by dumps",
            self.dump_rows.get().to_string(),
        );
        c(
            "sync_dumps_total",
            "counter",
            "Dumps started",
            self.dumps.get().to_string(),
        );
        c(
            "sync_stale_keys_removed_total",
            "counter",
            "Keys removed after a re-dump",
            self.stale_keys_removed.get().to_string(),
        );
        c(
            "sync_is_leader",
            "gauge",
            "1 if this instance is the active one",
            self.is_leader.get().to_string(),
        );
        c(
            "sync_checkpoint_position",
            "gauge",
            "Last checkpoint written (PG LSN / binlog offset)",
            self.checkpoint_position.get().to_string(),
        );
        c(
            "sync_checkpoint_timestamp_seconds",
            "gauge",
            "Unix time of the last checkpoint write",
            format!("{:.3}", self.checkpoint_time_ms.get() as f64 / 1000.0),
        );
        c(
            "sync_last_source_commit_timestamp_seconds",
            "gauge",
            "Commit time of the last applied source transaction",
            format!("{:.3}", self.last_commit_ms.get() as f64 / 1000.0),
        );
        c(
            "sync_lag_seconds",
            "gauge",
            "Source commit to etcd commit delay of the last applied transaction",
            format!("{:.3}", self.lag_ms.get() as f64 / 1000.0),
        );
        let _ = writeln!(s, "# HELP sync_table_rows_applied_total Row operations written per table\n# TYPE sync_table_rows_applied_total counter");
        if let Ok(m) = self.tables.lock() {
            for (t, n) in m.iter() {
                let _ = writeln!(
                    s,
                    "sync_table_rows_applied_total{{table=\"{}\"}} {n}",
                    t.replace('"', "\\\"")
                );
            }
        }
        let _ = writeln!(s, "# HELP sync_table_dump_rows_total Rows dumped per table\n# TYPE sync_table_dump_rows_total counter");
        if let Ok(m) = self.dump_tables.lock() {
            for (t, n) in m.iter() {
                let _ = writeln!(
                    s,
                    "sync_table_dump_rows_total{{table=\"{}\"}} {n}",
                    t.replace('"', "\\\"")
                );
            }
        }
        s
    }
}

pub async fn serve(addr: &str) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics: bind {addr}"))?;
    tracing::info!(address = addr, "metrics endpoint listening");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                        .await;
                let body = METRICS.render();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(())
}
