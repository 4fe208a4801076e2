//! Consistent dump without mysqldump: FLUSH TABLES WITH READ LOCK → START TRANSACTION WITH
//! CONSISTENT SNAPSHOT → SHOW MASTER STATUS → UNLOCK TABLES → SELECT each table (streamed,
//! binary protocol, raw forms of [`dump_expr`]) → COMMIT; then keys the dump did not write are
//! removed. Returns the binlog position the snapshot is aligned with.

use anyhow::{anyhow, Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde_json::Value;

use super::types::{dump_expr, map_value, quote_ident};
use super::{classify, gtid_binlog_pos, master_status, MyTable};
use crate::config::Config;
use crate::sink::Sink;
use crate::source::{Progress, RowEncoder, StaleKeys};

pub async fn dump(
    _cfg: &Config,
    conn: &mut Conn,
    tables: &[MyTable],
    sink: &mut Sink,
) -> Result<(String, u64, String)> {
    let stale = StaleKeys::before_dump(sink, tables.iter().map(|t| &*t.meta)).await?;
    conn.query_drop("FLUSH TABLES WITH READ LOCK")
        .await
        .map_err(|e| classify(e, "FLUSH TABLES WITH READ LOCK"))?;
    let pos = async {
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(|e| classify(e, "dump"))?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .map_err(|e| classify(e, "START TRANSACTION WITH CONSISTENT SNAPSHOT"))?;
        let (file, pos) = master_status(conn).await?;
        // under the global read lock: the GTID position of the same point (MariaDB)
        let gtid = gtid_binlog_pos(conn).await?.unwrap_or_default();
        Ok::<_, anyhow::Error>((file, pos, gtid))
    }
    .await;
    // always release the global read lock quickly
    let unlock = conn.query_drop("UNLOCK TABLES").await;
    let (file, pos, gtid) = pos?;
    unlock.map_err(|e| classify(e, "UNLOCK TABLES"))?;
    tracing::info!(file = %file, pos, gtid = %gtid, "dump: snapshot taken at binlog position");

    for t in tables {
        let label = t.meta.label();
        let mut progress = Progress::new(&label);
        let cols = t.cols.iter().map(dump_expr).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {cols} FROM {}.{}",
            quote_ident(&t.meta.schema),
            quote_ident(&t.meta.name)
        );
        let names: Vec<&str> = t.cols.iter().map(|c| c.name.as_str()).collect();
        let enc = RowEncoder::new(&t.meta, &names)?;
        let mut values = Vec::with_capacity(t.cols.len());
        let mut result = conn
            .exec_iter(sql, ())
            .await
            .map_err(|e| classify(e, &format!("dump {label}")))?;
        while let Some(r) = result
            .next()
            .await
            .map_err(|e| classify(e, &format!("dump {label}")))?
        {
            let vals = r.unwrap();
            if vals.len() != t.cols.len() {
                return Err(anyhow!(
                    "dump {label}: {} values for {} columns",
                    vals.len(),
                    t.cols.len()
                ));
            }
            values.clear();
            for (c, v) in t.cols.iter().zip(vals) {
                values.push(
                    map_value(&c.kind, v)
                        .map_err(|e| anyhow!("table {label} column {}: {e}", c.name))?,
                );
            }
            enc.upsert(sink, &t.meta, &values).await?;
            progress.row();
        }
        drop(result);
        let names: Vec<String> = t.cols.iter().map(|c| c.name.clone()).collect();
        sink.put_state(&format!("columns/{label}"), &Value::from(names))
            .await?;
        progress.done();
    }
    conn.query_drop("COMMIT").await.context("dump: commit")?;
    sink.flush_data().await?;
    stale.remove(sink).await?;
    Ok((file, pos, gtid))
}
