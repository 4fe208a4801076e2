//! The pgoutput stream: changes are applied to the sink, each commit's `end_lsn` becomes the
//! checkpoint written with the data, and only checkpoints that etcd has committed are
//! acknowledged to PostgreSQL. Transactions at or before the stored checkpoint (resent because
//! the slot's confirmed position may lag etcd) are skipped. Streamed in-progress transactions
//! (PostgreSQL 14+) are spooled to a temporary file per transaction and applied at their commit.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use futures_util::FutureExt;
use serde_json::Value;

use super::pgoutput::{parse, Cell, Msg, Relation};
use super::spool::Spool;
use super::walsender::{ConnectParams, Event, Replication, WalSender};
use super::{checkpoint, lsn_str, Session, SESSION_OPTIONS};
use crate::config::Config;
use crate::retry::fatal;
use crate::shutdown::Stop;
use crate::sink::Sink;
use crate::source::{migrate_columns, RowEncoder, TableMeta};
use crate::value::{pg_text, Kind, Row};

const PG_EPOCH_UNIX: f64 = 946_684_800.0;

/// A replication session, before START_REPLICATION.
pub async fn open_gated(cfg: &Config) -> Result<WalSender> {
    let d = &cfg.database;
    WalSender::connect(&ConnectParams {
        host: &d.host,
        port: d.port(),
        user: &d.user,
        password: &d.password,
        database: &d.name,
        options: SESSION_OPTIONS,
        application_name: "sync-tool",
    })
    .await
}

struct Rel {
    /// A selected table, with the encoder of this column list.
    table: Option<(Arc<TableMeta>, RowEncoder)>,
    cols: Vec<(String, Kind)>,
}

pub async fn stream(
    s: &mut Session,
    sink: &mut Sink,
    ws: WalSender,
    system_id: &str,
    resume_lsn: u64,
    mut stop: Stop,
) -> Result<()> {
    // The slot's own confirmed position is used (LSN 0/0) and older transactions are
    // skipped below.
    let cmd = s
        .features
        .start_replication(&s.cfg.sync.slot, &s.cfg.sync.publication);
    let mut repl = ws
        .start(&cmd, s.cfg.database.replication_status_timeout, resume_lsn)
        .await
        .map_err(|e| anyhow!("{cmd}: {e:#}"))?;
    tracing::info!(slot = %s.cfg.sync.slot, from = %lsn_str(resume_lsn), "streaming changes");

    let by_name: HashMap<(String, String), Arc<TableMeta>> = s
        .tables
        .iter()
        .map(|t| ((t.meta.schema.clone(), t.meta.name.clone()), t.meta.clone()))
        .collect();
    let mut rels: HashMap<u32, Rel> = HashMap::new();
    let mut in_txn = false;
    let mut skipping = false;
    let mut last_end = resume_lsn;
    // streamed transactions in progress, by transaction id; `streaming`: inside a stream block
    let mut spools: HashMap<u32, Spool> = HashMap::new();
    let mut streaming: Option<u32> = None;

    loop {
        // Group commits: flush when nothing more is immediately available and no etcd
        // transaction is in flight; while one is, keep collecting (the next batch grows
        // instead of queueing many small ones). Checkpoints are acknowledged as soon as the
        // writer reports their commit, also while the source is idle.
        if !in_txn && stop.requested() {
            return finish(sink, &repl, last_end).await;
        }
        if !in_txn {
            s.snapshots.step(sink).await?;
        }
        let ev = loop {
            if let Some(r) = repl.recv().now_or_never() {
                break r;
            }
            sink.check()?;
            if !in_txn
                && (sink.has_pending_checkpoint() || sink.buffered() > 0)
                && sink.in_flight() == 0
            {
                sink.flush().await?;
            }
            ack(sink, &repl);
            tokio::select! {
                r = repl.recv() => break r,
                _ = sink.changed() => ack(sink, &repl),
                _ = s.snapshots.ready(), if !in_txn => s.snapshots.step(sink).await?,
                _ = stop.wait(), if !in_txn => return finish(sink, &repl, last_end).await,
            }
        };
        let data = match ev? {
            Event::KeepAlive { wal_end } => {
                s.snapshots.seen(wal_end);
                // Idle: everything received is in etcd, so the slot may move to the WAL end
                // (keeps WAL from piling up when other databases write).
                if !in_txn
                    && spools.is_empty()
                    && sink.buffered() == 0
                    && !sink.has_pending_checkpoint()
                    && wal_end > last_end
                {
                    repl.update_applied_lsn(wal_end);
                }
                continue;
            }
            Event::XLogData { data } => data,
        };
        let (xid, msg) = parse(&data, streaming.is_some())?;
        if let Some(top) = streaming {
            if !matches!(msg, Msg::StreamStop) {
                let sp = spools
                    .get_mut(&top)
                    .ok_or_else(|| anyhow!("pgoutput: stream block without a spool"))?;
                sp.push(xid.unwrap_or(top), &data)?;
                continue;
            }
        }
        match msg {
            Msg::Begin { final_lsn, xid } => {
                sink.set_change_tag(xid.into());
                in_txn = true;
                skipping = final_lsn < resume_lsn;
            }
            Msg::Commit {
                end_lsn,
                commit_time,
            } => {
                in_txn = false;
                if skipping {
                    skipping = false;
                    continue;
                }
                last_end = end_lsn;
                commit(s, sink, &repl, system_id, end_lsn, commit_time);
                s.snapshots.seen(end_lsn);
            }
            Msg::StreamStart { xid } => {
                if let std::collections::hash_map::Entry::Vacant(e) = spools.entry(xid) {
                    e.insert(Spool::new()?);
                }
                streaming = Some(xid);
            }
            Msg::StreamStop => streaming = None,
            Msg::StreamAbort { xid, subxid } => {
                if xid == subxid {
                    spools.remove(&xid);
                } else if let Some(sp) = spools.get_mut(&xid) {
                    sp.abort_subtransaction(subxid);
                }
            }
            Msg::StreamCommit {
                xid,
                commit_lsn,
                end_lsn,
                commit_time,
            } => {
                let sp = spools.remove(&xid).ok_or_else(|| {
                    anyhow!("pgoutput: commit of unknown streamed transaction {xid}")
                })?;
                let skip = commit_lsn < resume_lsn;
                let n = sp.len();
                sink.set_change_tag(xid.into());
                for rec in sp.replay()? {
                    let (_, m) = parse(&rec?, true)?;
                    if let Msg::Relation(r) = m {
                        on_relation(s, sink, &by_name, &mut rels, r).await?;
                    } else if !skip {
                        apply(sink, &rels, m).await?;
                        ack(sink, &repl);
                    }
                }
                if !skip {
                    tracing::info!(xid, messages = n, "streamed transaction applied");
                    last_end = end_lsn;
                    commit(s, sink, &repl, system_id, end_lsn, commit_time);
                    s.snapshots.seen(end_lsn);
                }
            }
            Msg::Relation(r) => on_relation(s, sink, &by_name, &mut rels, r).await?,
            msg => {
                if !skipping {
                    apply(sink, &rels, msg).await?;
                    ack(sink, &repl);
                }
            }
        }
    }
}

fn commit(
    s: &Session,
    sink: &mut Sink,
    repl: &Replication,
    system_id: &str,
    end_lsn: u64,
    commit_time: i64,
) {
    let cp = checkpoint(&s.cfg, system_id, &s.fingerprint, "stream", end_lsn);
    sink.commit(cp, Some(commit_time as f64 / 1e6 + PG_EPOCH_UNIX));
    ack(sink, repl);
}

/// Graceful stop between transactions: everything read goes to etcd with its checkpoint, which
/// is then acknowledged (the server hears of it with the next standby status, if any comes).
async fn finish(sink: &mut Sink, repl: &Replication, last_end: u64) -> Result<()> {
    sink.flush().await?;
    sink.drain().await?;
    ack(sink, repl);
    tracing::info!(lsn = %lsn_str(last_end), "stopped between transactions; everything read is in etcd");
    Ok(())
}

fn ack(sink: &mut Sink, repl: &Replication) {
    if let Some(cp) = sink.take_durable() {
        if let Some(l) = cp.get("position_num").and_then(Value::as_u64) {
            repl.update_applied_lsn(l);
        }
    }
}

async fn on_relation(
    s: &mut Session,
    sink: &mut Sink,
    by_name: &HashMap<(String, String), Arc<TableMeta>>,
    rels: &mut HashMap<u32, Rel>,
    r: Relation,
) -> Result<()> {
    let table = by_name.get(&(r.namespace.clone(), r.name.clone())).cloned();
    let mut cols = Vec::with_capacity(r.columns.len());
    for c in &r.columns {
        let kind = if table.is_some() {
            s.types.kind(&s.sql, c.type_oid).await?
        } else {
            Kind::Text
        };
        cols.push((c.name.clone(), kind));
    }
    let table = match table {
        None => None,
        Some(t) => {
            let names: Vec<String> = cols.iter().map(|(n, _)| n.clone()).collect();
            let enc = RowEncoder::new(&t, &names).map_err(|_| {
                fatal(format!(
                    "table {}: a primary-key column is not among the replicated columns {names:?}",
                    t.label()
                ))
            })?;
            migrate_columns(sink, &t, &names).await?;
            Some((t, enc))
        }
    };
    rels.insert(r.id, Rel { table, cols });
    Ok(())
}

/// The values of a tuple in column order; the positions of unchanged TOAST values (sent as
/// "unchanged", stored as null here) go to `unchanged`.
fn to_values(
    rel: &Rel,
    t: &TableMeta,
    cells: Vec<Cell>,
    unchanged: &mut Vec<usize>,
) -> Result<Vec<Value>> {
    if cells.len() != rel.cols.len() {
        bail!(
            "table {}: tuple has {} columns, relation {}",
            t.label(),
            cells.len(),
            rel.cols.len()
        );
    }
    let mut values = Vec::with_capacity(cells.len());
    for (i, ((name, kind), cell)) in rel.cols.iter().zip(cells).enumerate() {
        values.push(match cell {
            Cell::Null => Value::Null,
            Cell::Unchanged => {
                unchanged.push(i);
                Value::Null
            }
            Cell::Text(text) => pg_text(kind, &text)
                .map_err(|e| anyhow!("table {} column {name}: {e}", t.label()))?,
        });
    }
    Ok(values)
}

async fn apply(sink: &mut Sink, rels: &HashMap<u32, Rel>, msg: Msg) -> Result<()> {
    let rel_of = |id: u32| {
        rels.get(&id)
            .ok_or_else(|| anyhow!("pgoutput: change for unknown relation {id}"))
    };
    match msg {
        Msg::Insert { rel, new } => {
            let r = rel_of(rel)?;
            let Some((t, enc)) = &r.table else {
                return Ok(());
            };
            let values = to_values(r, t, new, &mut Vec::new())?;
            enc.upsert(sink, t, &values).await?;
        }
        Msg::Update { rel, old, new } => {
            let r = rel_of(rel)?;
            let Some((t, enc)) = &r.table else {
                return Ok(());
            };
            let mut unchanged = Vec::new();
            let mut values = to_values(r, t, new, &mut unchanged)?;
            let old_key = match old {
                Some(o) => Some(enc.key(t, &to_values(r, t, o, &mut Vec::new())?)?),
                None => None,
            };
            let new_key = enc.key(t, &values)?;
            if !unchanged.is_empty() {
                // unchanged TOASTed values were not sent: keep the stored ones
                let src = old_key.clone().unwrap_or_else(|| new_key.clone());
                let stored = sink.current(&src).await?;
                let stored: Option<Row> = stored.and_then(|v| serde_json::from_slice(&v).ok());
                for &i in &unchanged {
                    let c = &r.cols[i].0;
                    match stored.as_ref().and_then(|m| m.get(c)) {
                        Some(v) => values[i] = v.clone(),
                        None => {
                            tracing::warn!(table = %t.label(), key = %src, column = %c, "unchanged TOAST value not found in etcd; stored as null")
                        }
                    }
                }
            }
            enc.update(sink, t, old_key, new_key, &values).await?;
        }
        Msg::Delete { rel, old } => {
            let r = rel_of(rel)?;
            let Some((t, enc)) = &r.table else {
                return Ok(());
            };
            let values = to_values(r, t, old, &mut Vec::new())?;
            enc.delete(sink, t, &values).await?;
        }
        Msg::Truncate { rels: ids } => {
            for id in ids {
                if let Some(Rel {
                    table: Some((t, _)),
                    ..
                }) = rels.get(&id)
                {
                    sink.delete_prefix(&t.prefix).await?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}
