//! Dump: every selected table read with COPY inside one REPEATABLE READ transaction
//! (importing the slot's exported snapshot), written to etcd in batches; then keys the dump
//! did not write (rows deleted while we were away) are removed.

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use serde_json::Value;

use super::copy_text::Rows;
use super::{quote_ident, Session};
use crate::sink::Sink;
use crate::source::{Progress, RowEncoder, StaleKeys};
use crate::value::pg_text;

pub async fn dump(s: &mut Session, sink: &mut Sink, snapshot: Option<&str>) -> Result<()> {
    let stale = StaleKeys::before_dump(sink, s.tables.iter().map(|t| &*t.meta)).await?;
    let sql = &s.sql;
    sql.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .context("dump: begin")?;
    if let Some(snap) = snapshot {
        sql.batch_execute(&format!(
            "SET TRANSACTION SNAPSHOT '{}'",
            snap.replace('\'', "''")
        ))
        .await
        .context("dump: import snapshot")?;
    }
    for t in &s.tables {
        let label = t.meta.label();
        let mut progress = Progress::new(&label);
        let cols = t
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        // COPY streams the rows without a round trip per batch (a cursor's FETCH left etcd
        // idle while the next batch came); TCP back-pressure bounds the memory.
        let copy = format!(
            "COPY (SELECT {cols} FROM {}.{}) TO STDOUT",
            quote_ident(&t.meta.schema),
            quote_ident(&t.meta.name)
        );
        let stream = sql
            .copy_out(copy.as_str())
            .await
            .with_context(|| format!("dump: COPY from {label}"))?;
        futures_util::pin_mut!(stream);
        let mut rows = Rows::default();
        let mut fields = Vec::with_capacity(t.columns.len());
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        let enc = RowEncoder::new(&t.meta, &names)?;
        let mut values = Vec::with_capacity(t.columns.len());
        while let Some(chunk) = stream.next().await {
            rows.push(&chunk.with_context(|| format!("dump: COPY from {label}"))?);
            while rows
                .next_row(&mut fields)
                .with_context(|| format!("dump: table {label}"))?
            {
                if fields.len() != t.columns.len() {
                    bail!(
                        "dump: table {label}: COPY row has {} columns, expected {}",
                        fields.len(),
                        t.columns.len()
                    );
                }
                values.clear();
                for (c, f) in t.columns.iter().zip(fields.drain(..)) {
                    values.push(match f {
                        None => Value::Null,
                        Some(text) => pg_text(&c.kind, &text)
                            .map_err(|e| anyhow!("table {label} column {}: {e}", c.name))?,
                    });
                }
                enc.upsert(sink, &t.meta, &values).await?;
                progress.row();
            }
        }
        rows.finish()
            .with_context(|| format!("dump: table {label}"))?;
        let names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        sink.put_state(&format!("columns/{label}"), &Value::from(names))
            .await?;
        progress.done();
    }
    sql.batch_execute("COMMIT").await.context("dump: commit")?;
    sink.flush_data().await?;
    stale.remove(sink).await?;
    Ok(())
}
