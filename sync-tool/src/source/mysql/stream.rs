//! The ROW binlog from a file/position. Rows are decoded with the TABLE_MAP that precedes
//! them (binlog_row_metadata=FULL: column names, ENUM/SET labels, primary key), so each row is
//! read with the schema valid at its position, also across ALTER TABLE. A source transaction
//! ends at XID (or COMMIT, or a DDL statement); its end position becomes the checkpoint that
//! the shared sink writes in the same etcd transaction as the data.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use futures_util::{FutureExt, StreamExt};
use mysql_async::binlog::events::{EventData, OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::{BinlogStreamRequest, Conn};

use super::rows::{codecs, rows, Codec, Image};
use super::types::{map_value, MyCol, MyKind};
use super::{by_name, checkpoint, classify, connect, json_columns, replica_server_id, signed_mediumints, MyTable, Start};
use mysql_async::prelude::Queryable;
use crate::config::Config;
use crate::retry::fatal;
use crate::sink::Sink;
use crate::source::{migrate_columns, RowEncoder, TableMeta};

/// What the TABLE_MAP does not say, read from information_schema (refreshed after DDL).
#[derive(Default, Clone)]
struct Extra {
    json: HashSet<String>,
    signed24: HashSet<String>,
}

async fn extra(sql: &mut Conn, schema: &str, table: &str) -> Result<Extra> {
    Ok(Extra { json: json_columns(sql, schema, table).await?, signed24: signed_mediumints(sql, schema, table).await? })
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
    let names: Vec<String> =
        ex.iter_column_name().map(|r| r.map(|c| c.name().into_owned())).collect::<std::io::Result<_>>()?;
    if names.len() != n {
        return Err(fatal(format!(
            "TABLE_MAP of {}.{} has no column names: the server needs binlog_row_metadata=FULL",
            tme.database_name(),
            tme.table_name()
        )));
    }
    // the charset iterator is infinite with DEFAULT_CHARSET: one entry per character column
    let n_char = (0..n)
        .filter(|&i| tme.get_column_type(i).ok().flatten().is_some_and(|t| t.is_character_type()))
        .count();
    let charsets: Vec<u16> = ex.iter_charset().take(n_char).collect::<std::io::Result<_>>()?;
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
    let pk: Vec<usize> = ex.iter_primary_key().map(|r| r.map(|i| i as usize)).collect::<std::io::Result<_>>()?;
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
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_INT24 => MyKind::Int,
            MYSQL_TYPE_FLOAT => MyKind::Float,
            MYSQL_TYPE_DOUBLE => MyKind::Double,
            MYSQL_TYPE_NEWDECIMAL | MYSQL_TYPE_DECIMAL => MyKind::Decimal,
            MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING | MYSQL_TYPE_STRING | MYSQL_TYPE_BLOB | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB => {
                let cs = charsets.get(ci).copied().unwrap_or(0);
                ci += 1;
                if cs == 63 && ty == MYSQL_TYPE_STRING {
                    // BINARY(n): length from the metadata (same rule as mysql_common's parser)
                    let (b0, b1) = (meta.first().copied().unwrap_or(0) as usize, meta.get(1).copied().unwrap_or(0) as usize);
                    let len = if b0 & 0x30 != 0x30 { b1 | (((b0 & 0x30) ^ 0x30) << 4) } else { b1 };
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
                MyKind::Enum(enums.get(ei - 1).cloned().ok_or_else(|| anyhow!("column {name}: no ENUM values in TABLE_MAP"))?)
            }
            MYSQL_TYPE_SET => {
                si += 1;
                MyKind::Set(sets.get(si - 1).cloned().ok_or_else(|| anyhow!("column {name}: no SET values in TABLE_MAP"))?)
            }
            MYSQL_TYPE_BIT => {
                let bits = meta.get(1).copied().unwrap_or(0) as u32 * 8 + meta.first().copied().unwrap_or(0) as u32;
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
            BinlogValue::Jsonb(j) => serde_json::Value::try_from(j).map_err(|e| anyhow!("JSON value: {e:?}")),
            BinlogValue::JsonDiff(_) => Err(anyhow!("partial JSON update (set binlog_row_value_options='')")),
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
        let skip = if r.starts_with("TABLE ") { s.len() - r.len() + 6 } else { s.len() - r.len() };
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
    Some((domain, format!("{domain}-{server_id}-{seq}"), flags & 1 != 0))
}

/// Parses a MariaDB GTID position (`0-1-100,1-2-7`) into domain → GTID.
pub fn parse_gtid_pos(s: &str) -> std::collections::BTreeMap<u32, String> {
    s.split(',')
        .map(str::trim)
        .filter_map(|g| Some((g.split('-').next()?.parse::<u32>().ok()?, g.to_string())))
        .collect()
}

fn gtid_pos_str(m: &std::collections::BTreeMap<u32, String>) -> String {
    m.values().cloned().collect::<Vec<_>>().join(",")
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
) -> Result<()> {
    let selected = by_name(tables);
    let mut json: HashMap<(String, String), Extra> = HashMap::new();
    for t in tables {
        json.insert((t.meta.schema.clone(), t.meta.name.clone()), extra(&mut sql, &t.meta.schema, &t.meta.name).await?);
    }
    let mut bconn = connect(cfg).await?;
    let server_id = replica_server_id(cfg);
    // GTID state: the last GTID per replication domain (MariaDB), stored in every checkpoint
    let mut gtids = parse_gtid_pos(gtid);
    let mut pending_gtid: Option<(u32, String)> = None;
    if mariadb_gtid {
        // real GTID events (not dummies), so that each transaction's GTID is known
        bconn.query_drop("SET @mariadb_slave_capability=4").await.map_err(|e| classify(e, "binlog dump setup"))?;
    }
    let (file, pos, by_gtid) = match &start {
        Start::FilePos(f, p) => (f.clone(), *p, false),
        Start::Gtid(g) => {
            bconn
                .query_drop(format!("SET @slave_connect_state='{}'", g.replace('\'', "")))
                .await
                .map_err(|e| classify(e, "SET @slave_connect_state"))?;
            bconn.query_drop("SET @slave_gtid_strict_mode=1").await.map_err(|e| classify(e, "SET @slave_gtid_strict_mode"))?;
            (String::new(), 4, true)
        }
    };
    let binlogs: Vec<String> = if by_gtid {
        let rows: Vec<mysql_async::Row> = sql.query("SHOW BINARY LOGS").await.map_err(|e| classify(e, "SHOW BINARY LOGS"))?;
        rows.iter().filter_map(|r| r.get::<String, _>(0)).collect()
    } else {
        Vec::new()
    };
    let req = BinlogStreamRequest::new(server_id).with_filename(file.as_bytes()).with_pos(pos);
    let mut bs = match bconn.get_binlog_stream(req).await {
        Ok(bs) => bs,
        Err(e) => {
            if by_gtid {
                if let mysql_async::Error::Server(se) = &e {
                    if se.code == 1236 {
                        // the GTID is not in this server's binlog: re-dump at the next start
                        sink.write_checkpoint(&checkpoint(server, fingerprint, "dump", "", 0, "")).await?;
                        bail!("GTID position {gtid} is not available on this server ({}); the next start re-dumps", se.message);
                    }
                }
            }
            return Err(classify(e, "binlog dump"));
        }
    };
    match &start {
        Start::FilePos(..) => tracing::info!(file = %file, pos, server_id, "streaming binlog"),
        Start::Gtid(g) => tracing::info!(gtid = %g, server_id, "streaming binlog from GTID position"),
    }

    let mut cur_file = file;
    let mut in_txn = false;
    let mut mapped: HashMap<u64, Option<Arc<Mapped>>> = HashMap::new();
    // column list last seen per table (stored rows follow it)
    let mut known_cols: HashMap<String, Vec<String>> = HashMap::new();

    loop {
        // Group commits: flush when nothing more is immediately available and no etcd
        // transaction is in flight; while one is, keep collecting into the next batch.
        let next = loop {
            if let Some(r) = bs.next().now_or_never() {
                break r;
            }
            sink.check()?;
            if !in_txn && (sink.has_pending_checkpoint() || sink.buffered() > 0) && sink.in_flight() == 0 {
                sink.flush().await?;
            }
            tokio::select! {
                r = bs.next() => break r,
                _ = sink.changed() => {}
            }
        };
        let ev = match next {
            None => bail!("binlog stream ended"),
            Some(Err(e)) => {
                if let mysql_async::Error::Server(s) = &e {
                    if s.code == 1236 {
                        bail!("binlog position {cur_file}:{pos} is not readable on the server ({}); the next start re-dumps if it was purged", s.message);
                    }
                }
                return Err(anyhow!(e).context("binlog stream"));
            }
            Some(Ok(ev)) => ev,
        };
        let hdr = ev.header();
        let end_pos = hdr.log_pos() as u64;
        let ts = hdr.timestamp() as f64;
        tracing::trace!(file = %cur_file, end_pos, event_type = ?hdr.event_type(), "binlog event");
        if hdr.event_type_raw() == 162 {
            // MariaDB GTID event: starts a transaction (unless standalone, e.g. DDL)
            let g = mariadb_gtid_event(ev.data(), hdr.server_id())
                .ok_or_else(|| anyhow!("short MariaDB GTID event at {cur_file}:{end_pos}"))?;
            in_txn = !g.2;
            pending_gtid = Some((g.0, g.1));
            continue;
        }
        let data = match ev.read_data() {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(e) => return Err(anyhow!("binlog event at {cur_file}:{end_pos}: {e}")),
        };
        match data {
            EventData::RotateEvent(r) => {
                // The fake rotate at the start names the file we asked for (and arrives before
                // the format description, so its name may carry the checksum bytes): skip it.
                if !(r.is_fake() || end_pos == 0) {
                    cur_file = r.name().into_owned();
                } else if by_gtid && cur_file.is_empty() {
                    // started from a GTID: the fake rotate names the file the server chose
                    // (possibly followed by checksum bytes: take the name SHOW BINARY LOGS knows)
                    let raw = r.name_raw();
                    cur_file = (0..=4.min(raw.len()))
                        .map(|cut| String::from_utf8_lossy(&raw[..raw.len() - cut]).into_owned())
                        .find(|n| binlogs.contains(n))
                        .ok_or_else(|| anyhow!("binlog file {:?} of the GTID start is not in SHOW BINARY LOGS", r.name()))?;
                    tracing::info!(file = %cur_file, "GTID start resolved to binlog file");
                }
            }
            EventData::QueryEvent(q) => {
                let text = q.query();
                let t = text.trim();
                if t.eq_ignore_ascii_case("BEGIN") {
                    in_txn = true;
                    continue;
                }
                if t.starts_with('#') {
                    continue; // MariaDB GTID (or other) event replaced by a dummy for this client
                }
                if t.eq_ignore_ascii_case("COMMIT") || t.eq_ignore_ascii_case("ROLLBACK") {
                    in_txn = false;
                    if let Some((d, g)) = pending_gtid.take() {
                    gtids.insert(d, g);
                }
                sink.commit(checkpoint(server, fingerprint, "stream", &cur_file, end_pos, &gtid_pos_str(&gtids)), Some(ts));
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
                in_txn = false;
                if let Some((d, g)) = pending_gtid.take() {
                    gtids.insert(d, g);
                }
                sink.commit(checkpoint(server, fingerprint, "stream", &cur_file, end_pos, &gtid_pos_str(&gtids)), Some(ts));
            }
            EventData::TableMapEvent(tme) => {
                let key = (tme.database_name().into_owned(), tme.table_name().into_owned());
                let m = match selected.get(&key) {
                    None => None,
                    Some(tb) => {
                        let js = json.get(&key).cloned().unwrap_or_default();
                        let (cols, pk) = cols_from_tme(&tme, &js)
                            .map_err(|e| anyhow!("TABLE_MAP of {}: {e:#}", tb.meta.label()))?;
                        let meta = if pk.is_empty() {
                            tb.meta.clone()
                        } else {
                            let names: Vec<String> = pk.iter().filter_map(|&i| cols.get(i).map(|c| c.name.clone())).collect();
                            if names == tb.meta.pk {
                                tb.meta.clone()
                            } else {
                                let mut m = (*tb.meta).clone();
                                m.pk = names;
                                Arc::new(m)
                            }
                        };
                        let names: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
                        let codecs = codecs(&tme).map_err(|e| anyhow!("TABLE_MAP of {}: {e:#}", meta.label()))?;
                        let enc = RowEncoder::new(&meta, &names)?;
                        if known_cols.get(&meta.label()) != Some(&names) {
                            migrate_columns(sink, &meta, &names).await?;
                            known_cols.insert(meta.label(), names);
                        }
                        Some(Arc::new(Mapped { meta, cols, codecs, enc }))
                    }
                };
                mapped.insert(tme.table_id(), m);
            }
            EventData::RowsEvent(re) => {
                let Some(Some(m)) = mapped.get(&re.table_id()).cloned() else { continue };
                // mysql_common's row parser can panic on some values (e.g. a negative TIME(1|2)
                // with a fraction, an overflow in its decoder): turn that into an error.
                let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Vec<_>> {
                    let mut changes = Vec::new();
                    let images = rows(&re, &m.codecs).map_err(|e| anyhow!("table {}: rows event: {e:#}", m.meta.label()))?;
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
                in_txn = false;
                if let Some((d, g)) = pending_gtid.take() {
                    gtids.insert(d, g);
                }
                sink.commit(checkpoint(server, fingerprint, "stream", &cur_file, end_pos, &gtid_pos_str(&gtids)), Some(ts));
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
        assert_eq!(mariadb_gtid_event(&body, 7), Some((3, "3-7-100".to_string(), true)));
        assert_eq!(mariadb_gtid_event(&body[..10], 7), None);
        let mut m = parse_gtid_pos("0-1-100, 2-5-7");
        assert_eq!(gtid_pos_str(&m), "0-1-100,2-5-7");
        m.insert(1, "1-9-3".into());
        assert_eq!(gtid_pos_str(&m), "0-1-100,1-9-3,2-5-7");
        assert!(parse_gtid_pos("").is_empty());
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
