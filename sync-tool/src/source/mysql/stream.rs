//! The ROW binlog from a file/position. Rows are decoded with the TABLE_MAP that precedes
//! them (binlog_row_metadata=FULL: column names, ENUM/SET labels, primary key), so each row is
//! read with the schema valid at its position, also across ALTER TABLE. A source transaction
//! ends at XID (or COMMIT, or a DDL statement); its end position becomes the checkpoint that
//! the shared sink writes in the same etcd transaction as the data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use futures_util::{FutureExt, StreamExt};
use mysql_async::binlog::events::{
    EventData, OptionalMetaExtractor, OptionalMetadataField, TableMapEvent,
};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::{BinlogStreamRequest, Conn};

use super::rows::{codecs, rows, Codec, Image};
use super::types::{map_value, MyCol, MyKind};
use super::{
    by_name, checkpoint, classify, connect, json_columns, position_num, replica_server_id,
    signed_mediumints, MyTable, Start,
};
use crate::config::Config;
use crate::retry::fatal;
use crate::shutdown::Stop;
use crate::sink::Sink;
use crate::source::snapshot::Snapshots;
use crate::source::{migrate_columns, RowEncoder, TableMeta};
use mysql_async::prelude::Queryable;

/// What the TABLE_MAP does not say, read from information_schema (refreshed after DDL).
#[derive(Default, Clone)]
struct Extra {
    json: HashSet<String>,
    signed24: HashSet<String>,
}

async fn extra(sql: &mut Conn, schema: &str, table: &str) -> Result<Extra> {
    Ok(Extra {
        json: json_columns(sql, schema, table).await?,
        signed24: signed_mediumints(sql, schema, table).await?,
    })
}

/// A TABLE_MAP of a selected table, decoded.
struct Mapped {
    meta: Arc<TableMeta>,
    cols: Vec<MyCol>,
    codecs: Vec<Codec>,
    enc: RowEncoder,
}

/// Column kinds (and primary key) from a TABLE_MAP with full metadata.
fn cols_from_tme(tme: &TableMapEvent<'_>, extra: &Extra) -> Result<(Vec<MyCol>, Vec<usize>)> {
    let json = &extra.json;
    let n = tme.columns_count() as usize;
    let ex = OptionalMetaExtractor::new(tme.iter_optional_meta())?;
    let names: Vec<String> = ex
        .iter_column_name()
        .map(|r| r.map(|c| c.name().into_owned()))
        .collect::<std::io::Result<_>>()?;
    if names.len() != n {
        return Err(fatal(format!(
            "TABLE_MAP of {}.{} has no column names: the server needs binlog_row_metadata=FULL",
            tme.database_name(),
            tme.table_name()
        )));
    }
    // the charset iterator is infinite with DEFAULT_CHARSET: one entry per character column
    let n_char = (0..n)
        .filter(|&i| {
            tme.get_column_type(i)
                .ok()
                .flatten()
                .is_some_and(|t| t.is_character_type())
        })
        .count();
    let charsets: Vec<u16> = ex
        .iter_charset()
        .take(n_char)
        .collect::<std::io::Result<_>>()?;
    let mut enums: Vec<Vec<String>> = Vec::new();
    let mut sets: Vec<Vec<String>> = Vec::new();
    for f in tme.iter_optional_meta() {
        match f? {
            OptionalMetadataField::EnumStrValue(x) => {
                for v in x.iter_values() {
                    enums.push(v?.values().iter().map(|s| s.value().into_owned()).collect());
                }
            }
            OptionalMetadataField::SetStrValue(x) => {
                for v in x.iter_values() {
                    sets.push(v?.values().iter().map(|s| s.value().into_owned()).collect());
                }
            }
            _ => {}
        }
    }
    let pk: Vec<usize> = ex
        .iter_primary_key()
        .map(|r| r.map(|i| i as usize))
        .collect::<std::io::Result<_>>()?;
    let (mut ci, mut ei, mut si) = (0usize, 0usize, 0usize);
    let mut cols = Vec::with_capacity(n);
    for (i, name) in names.into_iter().enumerate() {
        let ty = tme
            .get_column_type(i)
            .map_err(|e| anyhow!("column {name}: {e:?}"))?
            .ok_or_else(|| anyhow!("column {name}: no type"))?;
        let meta = tme.get_column_metadata(i).unwrap_or(&[]);
        use ColumnType::*;
        let kind = match ty {
            MYSQL_TYPE_INT24 if extra.signed24.contains(&name) => MyKind::Int24Signed,
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG
            | MYSQL_TYPE_INT24 => MyKind::Int,
            MYSQL_TYPE_FLOAT => MyKind::Float,
            MYSQL_TYPE_DOUBLE => MyKind::Double,
            MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => MyKind::Decimal,
            MYSQL_TYPE_VARCHAR
            | MYSQL_TYPE_VAR_STRING
            | MYSQL_TYPE_STRING
            | MYSQL_TYPE_BLOB
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB => {
                let cs = charsets.get(ci).copied().unwrap_or(0);
                ci += 1;
                if cs == 63 && ty == MYSQL_TYPE_STRING {
                    // BINARY(n): length from the metadata (same rule as mysql_common's parser)
                    let (b0, b1) = (
                        meta.first().copied().unwrap_or(0) as usize,
                        meta.get(1).copied().unwrap_or(0) as usize,
                    );
                    let len = if b0 & 0x30 != 0x30 {
                        b1 | (((b0 & 0x30) ^ 0x30) << 4)
                    } else {
                        b1
                    };
                    MyKind::BinaryFixed(len)
                } else if cs == 63 {
                    MyKind::Binary
                } else if json.contains(&name) {
                    MyKind::Json
                } else {
                    MyKind::Text
                }
            }
            MYSQL_TYPE_GEOMETRY => MyKind::Binary,
            MYSQL_TYPE_JSON => MyKind::Json,
            MYSQL_TYPE_ENUM => {
                ei += 1;
                MyKind::Enum(
                    enums
                        .get(ei - 1)
                        .cloned()
                        .ok_or_else(|| anyhow!("column {name}: no ENUM values in TABLE_MAP"))?,
                )
            }
            MYSQL_TYPE_SET => {
                si += 1;
                MyKind::Set(
                    sets.get(si - 1)
                        .cloned()
                        .ok_or_else(|| anyhow!("column {name}: no SET values in TABLE_MAP"))?,
                )
            }
            MYSQL_TYPE_BIT => {
                let bits = meta.get(1).copied().unwrap_or(0) as u32 * 8
                    + meta.first().copied().unwrap_or(0) as u32;
                MyKind::Bit(bits)
            }
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => MyKind::Date,
            MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => MyKind::DateTime,
            MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => MyKind::Timestamp,
            MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => MyKind::Time,
            MYSQL_TYPE_YEAR => MyKind::Year,
            other => bail!("column {name}: unsupported binlog column type {other:?}"),
        };
        cols.push(MyCol { name, kind });
    }
    Ok((cols, pk))
}

fn decode(m: &Mapped, vals: Image<'_>) -> Result<Vec<serde_json::Value>> {
    if vals.len() != m.cols.len() {
        return Err(fatal(format!(
            "table {}: binlog row has {} of {} columns (the server needs binlog_row_image=FULL)",
            m.meta.label(),
            vals.len(),
            m.cols.len()
        )));
    }
    let mut out = Vec::with_capacity(vals.len());
    for (c, v) in m.cols.iter().zip(vals) {
        let j = match v {
            BinlogValue::Value(v) => map_value(&c.kind, v),
            BinlogValue::Jsonb(j) => {
                serde_json::Value::try_from(j).map_err(|e| anyhow!("JSON value: {e:?}"))
            }
            BinlogValue::JsonDiff(_) => Err(anyhow!(
                "partial JSON update (set binlog_row_value_options='')"
            )),
        }
        .map_err(|e| anyhow!("table {} column {}: {e}", m.meta.label(), c.name))?;
        out.push(j);
    }
    Ok(out)
}

/// `TRUNCATE [TABLE] x` / `DROP TABLE [IF EXISTS] a, b`: the tables whose rows all vanish.
pub fn ddl_removed_tables(sql: &str, default_schema: &str) -> Vec<(String, String)> {
    let s = sql.trim_start();
    let up = s.to_ascii_uppercase();
    let rest = if let Some(r) = up.strip_prefix("TRUNCATE") {
        let r = r.trim_start();
        let skip = if r.starts_with("TABLE ") {
            s.len() - r.len() + 6
        } else {
            s.len() - r.len()
        };
        &s[skip..]
    } else if up.starts_with("DROP TABLE") || up.starts_with("DROP TEMPORARY") {
        if up.starts_with("DROP TEMPORARY") {
            return Vec::new();
        }
        let mut r = &s[10..];
        if r.trim_start().to_ascii_uppercase().starts_with("IF EXISTS") {
            r = &r.trim_start()[9..];
        }
        r
    } else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let b: Vec<char> = rest.chars().collect();
    let mut i = 0;
    let ident = |i: &mut usize| -> Option<String> {
        while *i < b.len() && b[*i].is_whitespace() {
            *i += 1;
        }
        if *i < b.len() && b[*i] == '`' {
            let mut s = String::new();
            *i += 1;
            while *i < b.len() {
                if b[*i] == '`' {
                    if b.get(*i + 1) == Some(&'`') {
                        s.push('`');
                        *i += 2;
                        continue;
                    }
                    *i += 1;
                    return Some(s);
                }
                s.push(b[*i]);
                *i += 1;
            }
            None
        } else {
            let st = *i;
            while *i < b.len() && (b[*i].is_alphanumeric() || b[*i] == '_' || b[*i] == '$') {
                *i += 1;
            }
            (*i > st).then(|| b[st..*i].iter().collect())
        }
    };
    while let Some(a) = ident(&mut i) {
        let name = if b.get(i) == Some(&'.') {
            i += 1;
            match ident(&mut i) {
                Some(t) => (a, t),
                None => break,
            }
        } else {
            (default_schema.to_string(), a)
        };
        out.push(name);
        while i < b.len() && b[i].is_whitespace() {
            i += 1;
        }
        if b.get(i) == Some(&',') {
            i += 1;
        } else {
            break;
        }
    }
    out
}

/// MariaDB's GTID event (type 162), sent instead of BEGIN to a client announcing
/// `@mariadb_slave_capability=4`: (domain, "domain-server-seq", standalone).
pub fn mariadb_gtid_event(body: &[u8], server_id: u32) -> Option<(u32, String, bool)> {
    let seq = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(body.get(8..12)?.try_into().ok()?);
    let flags = *body.get(12)?;
    Some((
        domain,
        format!("{domain}-{server_id}-{seq}"),
        flags & 1 != 0,
    ))
}

/// Parses a MariaDB GTID position (`0-1-100,1-2-7`) into domain → GTID.
pub fn parse_gtid_pos(s: &str) -> BTreeMap<u32, String> {
    s.split(',')
        .map(str::trim)
        .filter_map(|g| Some((g.split('-').next()?.parse::<u32>().ok()?, g.to_string())))
        .collect()
}

fn gtid_pos_str(m: &BTreeMap<u32, String>) -> String {
    m.values().cloned().collect::<Vec<_>>().join(",")
}

/// LOG_EVENT_ARTIFICIAL_F: an event the server made up for this connection (not in its binlog).
const ARTIFICIAL: u16 = 0x20;

/// The source transaction the stream is in, and the GTID position (the last GTID of every
/// replication domain, MariaDB) that every checkpoint carries.
#[derive(Default)]
struct TxnState {
    open: bool,
    /// GTID of the open transaction (or of the standalone statement that follows).
    gtid: Option<(u32, String)>,
    gtids: BTreeMap<u32, String>,
    /// A transaction of this connection ended (a bad start position shows up before that).
    ended: bool,
}

impl TxnState {
    fn begin(&mut self, sink: &mut Sink) {
        self.open = true;
        sink.begin_txn();
    }

    /// The transaction (or standalone statement) ends at `file:pos`: its checkpoint goes with
    /// its last changes.
    fn end(
        &mut self,
        sink: &mut Sink,
        server: &str,
        fingerprint: &str,
        file: &str,
        pos: u64,
        ts: Option<f64>,
    ) {
        self.open = false;
        self.ended = true;
        if let Some((d, g)) = self.gtid.take() {
            self.gtids.insert(d, g);
        }
        sink.commit(
            checkpoint(
                server,
                fingerprint,
                "stream",
                file,
                pos,
                &gtid_pos_str(&self.gtids),
            ),
            ts,
        );
    }

    /// The open transaction never ends: drops its changes; false if some already went out.
    fn abandon(&mut self, sink: &mut Sink) -> bool {
        self.open = false;
        self.gtid = None;
        sink.abort_txn()
    }
}

/// Graceful stop between transactions: everything read goes to etcd with its checkpoint.
async fn finish(sink: &mut Sink, file: &str) -> Result<()> {
    sink.flush().await?;
    sink.drain().await?;
    tracing::info!(file = %file, "stopped between transactions; everything read is in etcd");
    Ok(())
}

/// The file a ROTATE event names: the events after it come from that file, whether the
/// rotate is real (written at the end of the previous file) or fake (timestamp 0, log_pos 0,
/// flag ARTIFICIAL, made up by the server's dump thread). MariaDB sends a fake one at connect
/// and at every file switch; a file that a crash left without its closing rotate is followed
/// by the next one with only the fake rotate. Before the connection's FORMAT_DESCRIPTION the
/// parser cannot know that events end in a CRC32, so the name may carry those 4 bytes: it is
/// then resolved against the names the server has (`known`).
pub fn rotate_target(raw: &[u8], fde_seen: bool, known: &[String]) -> Option<String> {
    if fde_seen {
        return Some(String::from_utf8_lossy(raw).into_owned());
    }
    [0, 4]
        .into_iter()
        .filter(|&cut| cut <= raw.len())
        .map(|cut| String::from_utf8_lossy(&raw[..raw.len() - cut]).into_owned())
        .find(|n| known.contains(n))
}

/// The server refused to send the binlog from where the stream asked (or sent something there
/// that is no binlog event): retrying the same position cannot help.
#[derive(Debug)]
pub struct PositionRefused {
    pub by_gtid: bool,
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for PositionRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the server refuses to send the binlog from {}: {}",
            self.at, self.message
        )
    }
}

impl std::error::Error for PositionRefused {}

/// Error 1236 (ER_MASTER_FATAL_ERROR_READING_BINLOG): the position is inside an event, past the
/// file's end, in a purged file, a GTID the server does not have, a corrupt event. Not the
/// variant about another replica with the same server id (that one goes away on a retry).
fn refusal(e: &mysql_async::Error) -> Option<String> {
    match e {
        mysql_async::Error::Server(s) if s.code == 1236 && !s.message.contains("same server") => {
            Some(s.message.clone())
        }
        _ => None,
    }
}

/// The client could not parse what the server sent as an event.
fn is_undecodable(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Io(mysql_async::IoError::Io(io)) if io.kind() == std::io::ErrorKind::InvalidData)
}

#[allow(clippy::too_many_arguments)]
pub async fn stream(
    cfg: &Config,
    mut sql: Conn,
    tables: &[MyTable],
    sink: &mut Sink,
    server: &str,
    fingerprint: &str,
    start: Start,
    gtid: &str,
    mariadb_gtid: bool,
    mut snapshots: Snapshots,
    mut stop: Stop,
) -> Result<()> {
    let selected = by_name(tables);
    let mut json: HashMap<(String, String), Extra> = HashMap::new();
    for t in tables {
        json.insert(
            (t.meta.schema.clone(), t.meta.name.clone()),
            extra(&mut sql, &t.meta.schema, &t.meta.name).await?,
        );
    }
    let mut bconn = connect(cfg).await?;
    let server_id = replica_server_id(cfg);
    if mariadb_gtid {
        // real GTID events (not dummies), so that each transaction's GTID is known
        bconn
            .query_drop("SET @mariadb_slave_capability=4")
            .await
            .map_err(|e| classify(e, "binlog dump setup"))?;
    }
    let (file, pos, by_gtid) = match &start {
        Start::FilePos(f, p) => (f.clone(), *p, false),
        Start::Gtid(g) => {
            bconn
                .query_drop(format!(
                    "SET @slave_connect_state='{}'",
                    g.replace('\'', "")
                ))
                .await
                .map_err(|e| classify(e, "SET @slave_connect_state"))?;
            bconn
                .query_drop("SET @slave_gtid_strict_mode=1")
                .await
                .map_err(|e| classify(e, "SET @slave_gtid_strict_mode"))?;
            (String::new(), 4, true)
        }
    };
    // the names the first rotate (read before the connection's FORMAT_DESCRIPTION) may give
    let logs: Vec<mysql_async::Row> = sql
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| classify(e, "SHOW BINARY LOGS"))?;
    let mut binlogs: Vec<String> = logs.iter().filter_map(|r| r.get::<String, _>(0)).collect();
    binlogs.push(file.clone());
    let start_at = match &start {
        Start::FilePos(f, p) => format!("{f}:{p}"),
        Start::Gtid(g) => format!("GTID {g}"),
    };
    let refused = |message: String| {
        anyhow!(PositionRefused {
            by_gtid,
            at: start_at.clone(),
            message
        })
    };
    let req = BinlogStreamRequest::new(server_id)
        .with_filename(file.as_bytes())
        .with_pos(pos);
    let mut bs = match bconn.get_binlog_stream(req).await {
        Ok(bs) => bs,
        Err(e) => match refusal(&e) {
            Some(m) => return Err(refused(m)),
            None => return Err(classify(e, "binlog dump")),
        },
    };
    match &start {
        Start::FilePos(..) => tracing::info!(file = %file, pos, server_id, "streaming binlog"),
        Start::Gtid(g) => {
            tracing::info!(gtid = %g, server_id, "streaming binlog from GTID position")
        }
    }

    let mut cur_file = file;
    let mut txn = TxnState {
        gtids: parse_gtid_pos(gtid),
        ..Default::default()
    };
    // the events' CRC32 is stripped once the connection's FORMAT_DESCRIPTION was read
    let mut fde_seen = false;
    let mut mapped: HashMap<u64, Option<Arc<Mapped>>> = HashMap::new();
    // column list last seen per table (stored rows follow it)
    let mut known_cols: HashMap<String, Vec<String>> = HashMap::new();

    loop {
        // Group commits: flush when nothing more is immediately available and no etcd
        // transaction is in flight; while one is, keep collecting into the next batch.
        if !txn.open && stop.requested() {
            return finish(sink, &cur_file).await;
        }
        if !txn.open {
            snapshots.step(sink).await?;
        }
        let next = loop {
            if let Some(r) = bs.next().now_or_never() {
                break r;
            }
            sink.check()?;
            if !txn.open
                && (sink.has_pending_checkpoint() || sink.buffered() > 0)
                && sink.in_flight() == 0
            {
                sink.flush().await?;
            }
            tokio::select! {
                r = bs.next() => break r,
                _ = sink.changed() => {}
                _ = snapshots.ready(), if !txn.open => snapshots.step(sink).await?,
                _ = stop.wait(), if !txn.open => return finish(sink, &cur_file).await,
            }
        };
        let ev = match next {
            None => bail!("binlog stream ended"),
            Some(Err(e)) => {
                if let Some(m) = refusal(&e) {
                    return Err(refused(if cur_file.is_empty() {
                        m
                    } else {
                        format!("{m} (streaming in {cur_file})")
                    }));
                }
                if !txn.ended && is_undecodable(&e) {
                    return Err(refused(format!("{e} (no binlog event at that position)")));
                }
                return Err(anyhow!(e).context("binlog stream"));
            }
            Some(Ok(ev)) => ev,
        };
        let hdr = ev.header();
        let end_pos = hdr.log_pos() as u64;
        let ts = hdr.timestamp() as f64;
        tracing::trace!(file = %cur_file, end_pos, event_type = hdr.event_type_raw(), flags = hdr.flags_raw(), timestamp = hdr.timestamp(), "binlog event");
        if end_pos > 0 && hdr.flags_raw() & ARTIFICIAL == 0 && !cur_file.is_empty() {
            // where the stream is, and the tag of the changes this event makes
            let at = position_num(&cur_file, end_pos);
            snapshots.seen(at);
            sink.set_change_tag(at);
        }
        if hdr.event_type_raw() == 162 {
            // MariaDB GTID event: starts a transaction (unless standalone, e.g. DDL)
            let g = mariadb_gtid_event(ev.data(), hdr.server_id())
                .ok_or_else(|| anyhow!("short MariaDB GTID event at {cur_file}:{end_pos}"))?;
            if !g.2 {
                txn.begin(sink);
            }
            txn.gtid = Some((g.0, g.1));
            continue;
        }
        if hdr.event_type_raw() == 163
            && hdr.flags_raw() & ARTIFICIAL != 0
            && by_gtid
            && end_pos > 0
            && !txn.open
        {
            // After a GTID start the server says with a made-up GTID_LIST where in the file it
            // goes on: the checkpoint gets a real file/position at once.
            txn.end(sink, server, fingerprint, &cur_file, end_pos, None);
            continue;
        }
        let data = match ev.read_data() {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(e) if !txn.ended => {
                return Err(refused(format!(
                    "undecodable binlog event at {cur_file}:{end_pos}: {e}"
                )))
            }
            Err(e) => return Err(anyhow!("binlog event at {cur_file}:{end_pos}: {e}")),
        };
        match data {
            EventData::FormatDescriptionEvent(_) => fde_seen = true,
            EventData::RotateEvent(r) => {
                tracing::trace!(name = ?r.name_raw(), position = r.position(), "rotate");
                let name = rotate_target(r.name_raw(), fde_seen, &binlogs).ok_or_else(|| {
                    anyhow!(
                        "binlog rotate to {:?}: not a file SHOW BINARY LOGS knows",
                        r.name()
                    )
                })?;
                if name == cur_file {
                    continue;
                }
                if cur_file.is_empty() {
                    tracing::info!(file = %name, "GTID start resolved to binlog file");
                } else {
                    tracing::debug!(from = %cur_file, to = %name, fake = end_pos == 0, "binlog file switch");
                }
                if txn.open {
                    // The file ended inside a transaction: the server crashed while writing it
                    // (no XID), and its crash recovery rolled it back.
                    if !txn.abandon(sink) {
                        sink.discard();
                        sink.write_checkpoint(&checkpoint(server, fingerprint, "dump", "", 0, ""))
                            .await?;
                        bail!("binlog {cur_file} ends inside a transaction (the server crashed while writing it and rolled it back), part of which is already in etcd; the next start re-dumps");
                    }
                    tracing::warn!(file = %cur_file, "binlog file ends inside a transaction (the server crashed while writing it and rolled it back): its changes are dropped");
                }
                cur_file = name;
                if !binlogs.contains(&cur_file) {
                    binlogs.push(cur_file.clone());
                }
            }
            EventData::QueryEvent(q) => {
                let text = q.query();
                let t = text.trim();
                if t.eq_ignore_ascii_case("BEGIN") {
                    txn.begin(sink);
                    continue;
                }
                if t.starts_with('#') {
                    continue; // MariaDB GTID (or other) event replaced by a dummy for this client
                }
                if t.eq_ignore_ascii_case("COMMIT") || t.eq_ignore_ascii_case("ROLLBACK") {
                    txn.end(sink, server, fingerprint, &cur_file, end_pos, Some(ts));
                    continue;
                }
                // DDL (its own transaction)
                let schema = q.schema().into_owned();
                for (s, n) in ddl_removed_tables(t, &schema) {
                    if let Some(tb) = selected.get(&(s, n)) {
                        tracing::info!(table = %tb.meta.label(), statement = %t, "table truncated/dropped; removing its keys");
                        sink.delete_prefix(&tb.meta.prefix).await?;
                    }
                }
                for ((s, n), set) in json.iter_mut() {
                    *set = extra(&mut sql, s, n).await?;
                }
                txn.end(sink, server, fingerprint, &cur_file, end_pos, Some(ts));
            }
            EventData::TableMapEvent(tme) => {
                let key = (
                    tme.database_name().into_owned(),
                    tme.table_name().into_owned(),
                );
                let m = match selected.get(&key) {
                    None => None,
                    Some(tb) => {
                        let js = json.get(&key).cloned().unwrap_or_default();
                        let (cols, pk) = cols_from_tme(&tme, &js)
                            .map_err(|e| anyhow!("TABLE_MAP of {}: {e:#}", tb.meta.label()))?;
                        let meta = if pk.is_empty() {
                            tb.meta.clone()
                        } else {
                            let names: Vec<String> = pk
                                .iter()
                                .filter_map(|&i| cols.get(i).map(|c| c.name.clone()))
                                .collect();
                            if names == tb.meta.pk {
                                tb.meta.clone()
                            } else {
                                let mut m = (*tb.meta).clone();
                                m.pk = names;
                                Arc::new(m)
                            }
                        };
                        let names: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
                        let codecs = codecs(&tme)
                            .map_err(|e| anyhow!("TABLE_MAP of {}: {e:#}", meta.label()))?;
                        let enc = RowEncoder::new(&meta, &names)?;
                        if known_cols.get(&meta.label()) != Some(&names) {
                            migrate_columns(sink, &meta, &names).await?;
                            known_cols.insert(meta.label(), names);
                        }
                        Some(Arc::new(Mapped {
                            meta,
                            cols,
                            codecs,
                            enc,
                        }))
                    }
                };
                mapped.insert(tme.table_id(), m);
            }
            EventData::RowsEvent(re) => {
                let Some(Some(m)) = mapped.get(&re.table_id()).cloned() else {
                    continue;
                };
                // mysql_common's row parser can panic on some values (e.g. a negative TIME(1|2)
                // with a fraction, an overflow in its decoder): turn that into an error.
                let decoded =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Vec<_>> {
                        let mut changes = Vec::new();
                        let images = rows(&re, &m.codecs)
                            .map_err(|e| anyhow!("table {}: rows event: {e:#}", m.meta.label()))?;
                        for (before, after) in images {
                            let before = before.map(|b| decode(&m, b)).transpose()?;
                            let after = after.map(|a| decode(&m, a)).transpose()?;
                            changes.push((before, after));
                        }
                        Ok(changes)
                    }));
                let changes = match decoded {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(fatal(format!(
                            "table {}: the binlog row decoder failed at {cur_file}:{end_pos} (unsupported value)",
                            m.meta.label()
                        )))
                    }
                };
                for (before, after) in changes {
                    match (before, after) {
                        (None, Some(a)) => m.enc.upsert(sink, &m.meta, &a).await?,
                        (Some(b), Some(a)) => {
                            let (ok, nk) = (m.enc.key(&m.meta, &b)?, m.enc.key(&m.meta, &a)?);
                            m.enc.update(sink, &m.meta, Some(ok), nk, &a).await?
                        }
                        (Some(b), None) => m.enc.delete(sink, &m.meta, &b).await?,
                        (None, None) => {}
                    }
                }
            }
            EventData::XidEvent(_) => {
                txn.end(sink, server, fingerprint, &cur_file, end_pos, Some(ts));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn gtid_helpers() {
        let mut body = 100u64.to_le_bytes().to_vec();
        body.extend(3u32.to_le_bytes());
        body.push(1);
        assert_eq!(
            mariadb_gtid_event(&body, 7),
            Some((3, "3-7-100".to_string(), true))
        );
        assert_eq!(mariadb_gtid_event(&body[..10], 7), None);
        let mut m = parse_gtid_pos("0-1-100, 2-5-7");
        assert_eq!(gtid_pos_str(&m), "0-1-100,2-5-7");
        m.insert(1, "1-9-3".into());
        assert_eq!(gtid_pos_str(&m), "0-1-100,1-9-3,2-5-7");
        assert!(parse_gtid_pos("").is_empty());
    }

    #[test]
    fn rotate_names() {
        let known = vec!["binlog.000007".to_string(), "binlog.000008".to_string()];
        let crc = |n: &str| [n.as_bytes(), &[0xe5, 0xb9, 0x32, 0xc9]].concat();
        // before the connection's FORMAT_DESCRIPTION: the CRC32 may still be on the name
        assert_eq!(
            rotate_target(&crc("binlog.000008"), false, &known).as_deref(),
            Some("binlog.000008")
        );
        assert_eq!(
            rotate_target(b"binlog.000007", false, &known).as_deref(),
            Some("binlog.000007")
        );
        assert_eq!(rotate_target(&crc("binlog.000009"), false, &known), None);
        // afterwards the name is exact, also for a file the tool has not heard of yet
        assert_eq!(
            rotate_target(b"binlog.000009", true, &known).as_deref(),
            Some("binlog.000009")
        );
    }

    #[test]
    fn refusals() {
        let server = |code, message: &str| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: message.into(),
                state: "HY000".into(),
            })
        };
        assert!(refusal(&server(1236, "binlog truncated in the middle of event")).is_some());
        assert!(refusal(&server(
            1236,
            "A slave with the same server_uuid/server_id as this slave has connected"
        ))
        .is_none());
        assert!(refusal(&server(1045, "Access denied")).is_none());
    }

    #[test]
    fn ddl_parse() {
        let d = |s: &str| ddl_removed_tables(s, "db");
        assert_eq!(d("TRUNCATE TABLE t1"), vec![("db".into(), "t1".into())]);
        assert_eq!(d("truncate `x`.`a``b`"), vec![("x".into(), "a`b".into())]);
        assert_eq!(
            d("DROP TABLE IF EXISTS `a`,b.c /* generated by server */"),
            vec![("db".into(), "a".into()), ("b".into(), "c".into())]
        );
        assert!(d("ALTER TABLE t ADD c int").is_empty());
        assert!(d("DROP TEMPORARY TABLE t").is_empty());
    }
}
