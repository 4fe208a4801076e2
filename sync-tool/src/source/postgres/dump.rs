//! Dump: every selected table read through a cursor inside one REPEATABLE READ transaction
//! (importing the slot's exported snapshot), written to etcd in batches; then keys the dump
//! did not write (rows deleted while we were away) are removed.

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use tokio_postgres::SimpleQueryMessage;

use super::{quote_ident, Session};
use crate::metrics::METRICS;
use crate::sink::Sink;
use crate::source::{upsert, Progress};
use crate::value::{pg_text, Row};

pub async fn dump(s: &mut Session, sink: &mut Sink, snapshot: Option<&str>) -> Result<()> {
    let rev = sink.revision().await?;
    let sql = &s.sql;
    sql.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .context("dump: begin")?;
    if let Some(snap) = snapshot {
        sql.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{}'", snap.replace('\'', "''")))
            .await
            .context("dump: import snapshot")?;
    }
    let fetch = s.cfg.sync.dump_fetch_rows;
    for t in &s.tables {
        let label = t.meta.label();
        let mut progress = Progress::new(&label);
        let cols = t.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ");
        sql.batch_execute(&format!(
            "DECLARE sync_dump NO SCROLL CURSOR FOR SELECT {cols} FROM {}.{}",
            quote_ident(&t.meta.schema),
            quote_ident(&t.meta.name)
        ))
        .await
        .with_context(|| format!("dump: declare cursor on {label}"))?;
        loop {
            let msgs = sql
                .simple_query(&format!("FETCH {fetch} FROM sync_dump"))
                .await
                .with_context(|| format!("dump: fetch from {label}"))?;
            let mut n = 0;
            for m in msgs {
                if let SimpleQueryMessage::Row(r) = m {
                    n += 1;
                    let mut row = Row::new();
                    for (i, c) in t.columns.iter().enumerate() {
                        let v = match r.try_get(i)? {
                            None => Value::Null,
                            Some(text) => pg_text(&c.kind, text)
                                .map_err(|e| anyhow!("table {label} column {}: {e}", c.name))?,
                        };
                        row.insert(c.name.clone(), v);
                    }
                    upsert(sink, &t.meta, &row).await?;
                    progress.row();
                }
            }
            if n < fetch {
                break;
            }
        }
        sql.batch_execute("CLOSE sync_dump").await.context("dump: close cursor")?;
        let names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        sink.put_state(&format!("columns/{label}"), &Value::from(names)).await?;
        progress.done();
    }
    sql.batch_execute("COMMIT").await.context("dump: commit")?;
    sink.flush_data().await?;
    for t in &s.tables {
        let removed = sink.remove_stale(&t.meta.prefix, rev).await?;
        if removed > 0 {
            METRICS.stale_keys_removed.add(removed);
            tracing::info!(table = %t.meta.label(), removed, "removed keys of rows that no longer exist");
        }
    }
    Ok(())
}
