//! MySQL/MariaDB driver: start-up checks of the binlog settings, a consistent dump aligned
//! with a binlog position (FLUSH TABLES WITH READ LOCK → START TRANSACTION WITH CONSISTENT
//! SNAPSHOT → SHOW MASTER STATUS → UNLOCK TABLES → SELECT …), then the ROW binlog from that
//! position. Sink, checkpointing, keys, HA, metrics and retry are the shared core.

mod dump;
mod rows;
pub mod scan;
pub mod snapshot;
mod stream;
pub mod types;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{anyhow, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use serde_json::{json, Value};

use crate::config::Config;
use crate::metrics::METRICS;
use crate::retry::fatal;
use crate::shutdown::Stop;
use crate::sink::Sink;
use crate::source::snapshot::{selection, Snapshots};
use crate::source::{check_prefixes, selection_fingerprint, Filter, TableMeta};
use types::{kind_from_schema, MyCol};

const SYSTEM_SCHEMAS: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

pub async fn connect(cfg: &Config) -> Result<Conn> {
    let d = &cfg.database;
    let opts = OptsBuilder::default()
        .ip_or_hostname(d.host.clone())
        .tcp_port(d.port())
        .user(Some(d.user.clone()))
        .pass(Some(d.password.clone()))
        .prefer_socket(false)
        .init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"]);
    let conn = tokio::time::timeout(std::time::Duration::from_secs(10), Conn::new(opts))
        .await
        .map_err(|_| anyhow!("mysql connect to {}:{}: timed out", d.host, d.port()))?
        .map_err(|e| classify(e, "connect"))?;
    Ok(conn)
}

/// Authentication / privilege / unknown-database errors are fatal, the rest retryable.
pub fn classify(e: mysql_async::Error, what: &str) -> anyhow::Error {
    if let mysql_async::Error::Server(s) = &e {
        // 1045 access denied (password), 1044 db access denied, 1049 unknown database,
        // 1227 / 1142 / 1227 missing privilege
        if matches!(s.code, 1044 | 1045 | 1049 | 1142 | 1227) {
            return fatal(format!("mysql {what}: {} ({})", s.message, s.code));
        }
    }
    anyhow!(e).context(format!("mysql {what}"))
}

/// The server variables the binlog path depends on; `None` = variable does not exist.
#[derive(Debug, Default, Clone)]
pub struct BinlogSettings {
    pub log_bin: Option<String>,
    pub binlog_format: Option<String>,
    pub binlog_row_image: Option<String>,
    pub binlog_row_metadata: Option<String>,
    pub server_id: Option<String>,
}

/// Every problem with the server's binlog settings, with what to set; empty = fine.
pub fn check_binlog_settings(s: &BinlogSettings) -> Vec<String> {
    let eq =
        |v: &Option<String>, want: &str| v.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(want));
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "<not set>".into());
    let mut p = Vec::new();
    if !(eq(&s.log_bin, "ON") || eq(&s.log_bin, "1")) {
        p.push(format!(
            "log_bin is {} (start the server with log_bin, e.g. log_bin=mysql-bin)",
            show(&s.log_bin)
        ));
    }
    if !eq(&s.binlog_format, "ROW") {
        p.push(format!(
            "binlog_format is {} (set binlog_format=ROW)",
            show(&s.binlog_format)
        ));
    }
    if !eq(&s.binlog_row_image, "FULL") {
        p.push(format!(
            "binlog_row_image is {} (set binlog_row_image=FULL)",
            show(&s.binlog_row_image)
        ));
    }
    match &s.binlog_row_metadata {
        None => p.push(
            "the server has no binlog_row_metadata variable (MariaDB >= 10.5 or MySQL >= 8.0.1 is required, with binlog_row_metadata=FULL)".into(),
        ),
        Some(v) if !v.eq_ignore_ascii_case("FULL") => {
            p.push(format!("binlog_row_metadata is {v} (set binlog_row_metadata=FULL: column names, ENUM/SET values and keys in every TABLE_MAP)"))
        }
        _ => {}
    }
    if s.server_id.as_deref().is_none_or(|v| v == "0") {
        p.push(format!(
            "server_id is {} (set a non-zero server_id)",
            show(&s.server_id)
        ));
    }
    p
}

async fn global_var(conn: &mut Conn, name: &str) -> Result<Option<String>> {
    let r: Option<(String, Option<String>)> = conn
        .query_first(format!("SHOW GLOBAL VARIABLES LIKE '{name}'"))
        .await
        .map_err(|e| classify(e, "read server variables"))?;
    Ok(r.map(|(_, v)| v.unwrap_or_default()))
}

/// Reads and checks the server's binlog settings; a fatal error says exactly what is wrong.
pub async fn check_server(conn: &mut Conn) -> Result<BinlogSettings> {
    let s = BinlogSettings {
        log_bin: global_var(conn, "log_bin").await?,
        binlog_format: global_var(conn, "binlog_format").await?,
        binlog_row_image: global_var(conn, "binlog_row_image").await?,
        binlog_row_metadata: global_var(conn, "binlog_row_metadata").await?,
        server_id: global_var(conn, "server_id").await?,
    };
    let problems = check_binlog_settings(&s);
    if !problems.is_empty() {
        return Err(fatal(format!(
            "the server's binlog settings do not allow replication: {}",
            problems.join("; ")
        )));
    }
    Ok(s)
}

/// A selected table with the columns the dump reads.
#[derive(Debug, Clone)]
pub struct MyTable {
    pub meta: Arc<TableMeta>,
    pub cols: Vec<MyCol>,
}

/// MariaDB's JSON is LONGTEXT with a `json_valid(col)` check: the names of such columns.
pub async fn json_columns(conn: &mut Conn, schema: &str, table: &str) -> Result<HashSet<String>> {
    let rows: Vec<String> = match conn
        .exec(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
            (schema, table),
        )
        .await
    {
        Ok(r) => r,
        Err(mysql_async::Error::Server(_)) => return Ok(HashSet::new()), // no such table (old server)
        Err(e) => return Err(classify(e, "check constraints")),
    };
    let mut out = HashSet::new();
    for c in rows {
        let c = c.trim();
        if let Some(rest) = c.strip_prefix("json_valid(`") {
            if let Some(name) = rest.strip_suffix("`)") {
                out.insert(name.replace("``", "`"));
            }
        }
    }
    Ok(out)
}

/// Signed MEDIUMINT columns (MariaDB's TABLE_MAP signedness marks them unsigned).
pub async fn signed_mediumints(
    conn: &mut Conn,
    schema: &str,
    table: &str,
) -> Result<HashSet<String>> {
    let rows: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             AND DATA_TYPE = 'mediumint' AND COLUMN_TYPE NOT LIKE '%unsigned%'",
            (schema, table),
        )
        .await
        .map_err(|e| classify(e, "column lookup"))?;
    Ok(rows.into_iter().collect())
}

pub async fn load_columns(conn: &mut Conn, schema: &str, table: &str) -> Result<Vec<MyCol>> {
    let json = json_columns(conn, schema, table).await?;
    let rows: Vec<(String, String, String, Option<u64>)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await
        .map_err(|e| classify(e, "column lookup"))?;
    let mut cols = Vec::new();
    for (name, dt, ct, prec) in rows {
        let kind = kind_from_schema(&dt, &ct, prec, json.contains(&name))
            .map_err(|e| fatal(format!("table {schema}.{table} column {name}: {e}")))?;
        cols.push(MyCol { name, kind });
    }
    Ok(cols)
}

/// Loads the selected tables. With no `sync.tables.include`, all tables of `database.name`
/// (or of every non-system database when the name is empty).
pub async fn load_tables(cfg: &Config, conn: &mut Conn) -> Result<Vec<MyTable>> {
    let filter = Filter::new(&cfg.sync.tables);
    let tpl = cfg.key_template()?;
    let all: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY 1, 2",
        )
        .await
        .map_err(|e| classify(e, "list tables"))?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (schema, name) in all {
        if SYSTEM_SCHEMAS.contains(&schema.to_ascii_lowercase().as_str()) {
            continue;
        }
        if cfg.sync.tables.include.is_empty()
            && !cfg.database.name.is_empty()
            && schema != cfg.database.name
        {
            continue;
        }
        if !filter.matches(&schema, &name) {
            continue;
        }
        let pk: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
                 AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
                (&schema, &name),
            )
            .await
            .map_err(|e| classify(e, "primary key lookup"))?;
        if pk.is_empty() {
            problems.push(format!("{schema}.{name} has no primary key (add one, or exclude it with sync.tables.exclude)"));
            continue;
        }
        let cols = match load_columns(conn, &schema, &name).await {
            Ok(c) => c,
            Err(e) if crate::retry::is_fatal(&e) => {
                problems.push(format!("{e:#}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        out.push(MyTable {
            meta: Arc::new(TableMeta::new(&tpl, &schema, &name, pk)),
            cols,
        });
    }
    if !problems.is_empty() {
        return Err(fatal(format!(
            "unsupported tables: {}",
            problems.join("; ")
        )));
    }
    if out.is_empty() {
        return Err(fatal(
            "no table matches sync.tables / database.name (nothing to replicate)",
        ));
    }
    let metas: Vec<TableMeta> = out.iter().map(|t| (*t.meta).clone()).collect();
    check_prefixes(&metas).map_err(|e| fatal(format!("{e:#}")))?;
    Ok(out)
}

/// `binlog.000042` + pos → one number for the position metric.
pub fn position_num(file: &str, pos: u64) -> u64 {
    let seq: u64 = file
        .rsplit('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    seq << 32 | (pos & 0xffff_ffff)
}

pub fn checkpoint(
    server: &str,
    fingerprint: &str,
    phase: &str,
    file: &str,
    pos: u64,
    gtid: &str,
) -> Value {
    json!({
        "source": "mysql",
        "phase": phase,
        "server": server,
        "tables": fingerprint,
        "file": file,
        "pos": pos,
        "gtid": gtid,
        "position_num": position_num(file, pos),
    })
}

/// MariaDB's `@@gtid_binlog_pos` (the last GTID of every replication domain in the binlog);
/// `None` on MySQL (no such variable).
pub async fn gtid_binlog_pos(conn: &mut Conn) -> Result<Option<String>> {
    global_var(conn, "gtid_binlog_pos").await
}

/// Where the stream starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// Binlog file and position of this server.
    FilePos(String, u64),
    /// MariaDB GTID position (another server than the checkpoint's: failover), through
    /// `@slave_connect_state` and a binlog dump request without file name.
    Gtid(String),
}

/// `SHOW MASTER STATUS` (MariaDB, MySQL < 8.4) or `SHOW BINARY LOG STATUS` (MySQL 8.4+).
pub async fn master_status(conn: &mut Conn) -> Result<(String, u64)> {
    let r: Result<Option<mysql_async::Row>, _> = conn.query_first("SHOW MASTER STATUS").await;
    let row = match r {
        Ok(r) => r,
        Err(_) => conn
            .query_first("SHOW BINARY LOG STATUS")
            .await
            .map_err(|e| classify(e, "binary log status"))?,
    };
    let row =
        row.ok_or_else(|| fatal("SHOW MASTER STATUS returned nothing: binary logging is off"))?;
    let file: String = row
        .get(0)
        .ok_or_else(|| anyhow!("SHOW MASTER STATUS: no file"))?;
    let pos: u64 = row
        .get(1)
        .ok_or_else(|| anyhow!("SHOW MASTER STATUS: no position"))?;
    Ok((file, pos))
}

/// What the server says about a checkpoint's binlog position.
#[derive(Debug, PartialEq)]
enum PositionState {
    Readable,
    /// The file is not (any longer) in `SHOW BINARY LOGS`, or the position is past its end.
    Gone,
    /// The file is there, but the server cannot read an event at the position (inside an
    /// event, or a corrupt one): its message.
    Refused(String),
}

/// Is `file`/`pos` still in the server's binlog (not purged), and an event boundary?
async fn check_position(conn: &mut Conn, file: &str, pos: u64) -> Result<PositionState> {
    let logs: Vec<mysql_async::Row> = conn
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| classify(e, "SHOW BINARY LOGS"))?;
    let listed = logs
        .iter()
        .find(|r| r.get::<String, _>(0).as_deref() == Some(file));
    match listed.map(|r| r.get::<u64, _>(1)) {
        None => return Ok(PositionState::Gone),
        Some(Some(size)) if pos > size => return Ok(PositionState::Gone),
        _ => {}
    }
    // the server reads the event there (the name is one SHOW BINARY LOGS gave)
    match conn
        .query_drop(format!(
            "SHOW BINLOG EVENTS IN '{}' FROM {pos} LIMIT 1",
            file.replace(['\\', '\''], "")
        ))
        .await
    {
        Ok(()) => Ok(PositionState::Readable),
        // ER_ERROR_WHEN_EXECUTING_COMMAND: "Wrong offset or I/O error"
        Err(mysql_async::Error::Server(e)) if e.code == 1220 => {
            Ok(PositionState::Refused(e.message))
        }
        Err(e) => {
            // e.g. no BINLOG MONITOR privilege: the binlog dump will tell
            tracing::debug!(error = %e, "SHOW BINLOG EVENTS failed; the checkpoint position is not checked");
            Ok(PositionState::Readable)
        }
    }
}

/// After the server refused the position the stream started from, the checkpoint is changed so
/// that the next start does something else: resume from the checkpoint's GTID (MariaDB) if the
/// refused start was a file/position, otherwise re-dump. Never the same position again.
async fn fall_back(
    sink: &mut Sink,
    refused: &stream::PositionRefused,
    mariadb_gtid: bool,
) -> Result<()> {
    // what is buffered was never acknowledged; the checkpoint in etcd is where the stream stands
    sink.discard();
    let mut cp = sink.read_checkpoint().await?.unwrap_or(Value::Null);
    let gtid = cp
        .get("gtid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !refused.by_gtid
        && mariadb_gtid
        && !gtid.is_empty()
        && cp.get("phase") == Some(&json!("stream"))
    {
        tracing::warn!(error = %refused, gtid = %gtid, "binlog position refused by the server; the next start resumes from the checkpoint's GTID position instead");
        cp["file"] = json!("");
        cp["pos"] = json!(0);
        sink.write_checkpoint(&cp).await?;
    } else {
        tracing::warn!(error = %refused, "binlog position refused by the server; the next start re-dumps");
        let (server, tables) = (
            cp.get("server").and_then(Value::as_str),
            cp.get("tables").and_then(Value::as_str),
        );
        sink.write_checkpoint(&checkpoint(
            server.unwrap_or_default(),
            tables.unwrap_or_default(),
            "dump",
            "",
            0,
            "",
        ))
        .await?;
    }
    Ok(())
}

/// Identity of the server for the checkpoint (a different server forces a re-dump).
async fn server_identity(conn: &mut Conn, s: &BinlogSettings) -> Result<String> {
    let uuid = global_var(conn, "server_uuid").await?;
    Ok(match uuid {
        Some(u) if !u.is_empty() => u,
        _ => format!("server_id:{}", s.server_id.clone().unwrap_or_default()),
    })
}

pub fn replica_server_id(cfg: &Config) -> u32 {
    cfg.database
        .server_id
        .unwrap_or_else(|| 4000 + rand::random::<u32>() % 1000)
}

/// One run: connect, check, dump if needed, stream until an error.
pub async fn run(cfg: &Config, sink: &mut Sink, started: &mut bool, stop: Stop) -> Result<()> {
    let mut conn = connect(cfg).await?;
    let settings = check_server(&mut conn).await?;
    let tables = load_tables(cfg, &mut conn).await?;
    let metas: Vec<TableMeta> = tables.iter().map(|t| (*t.meta).clone()).collect();
    let fingerprint = selection_fingerprint(&metas);
    let server = server_identity(&mut conn, &settings).await?;
    *started = true;

    let mut cp = sink.read_checkpoint().await?;
    let mariadb_gtid = gtid_binlog_pos(&mut conn).await?.is_some();
    selection::adopt(cfg, sink, &mut cp, &metas, &fingerprint, mariadb_gtid).await?;
    let mut resume = None;
    if let Some(cp) = &cp {
        let same_stream = cp.get("source") == Some(&json!("mysql"))
            && cp.get("phase") == Some(&json!("stream"))
            && cp.get("tables") == Some(&json!(fingerprint));
        let same_server = cp.get("server") == Some(&json!(server));
        let file = cp
            .get("file")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let pos = cp.get("pos").and_then(Value::as_u64).unwrap_or(0);
        let gtid = cp
            .get("gtid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let by_gtid = same_stream && mariadb_gtid && !gtid.is_empty();
        if by_gtid && !same_server {
            // failover: file/pos name the old server's binlog, the GTID is global
            tracing::warn!(checkpoint = %cp, server = %server, gtid = %gtid, "the server changed since the checkpoint; resuming from its GTID position");
            resume = Some(Start::Gtid(gtid));
        } else if cp.get("phase") == Some(&json!("dump")) {
            tracing::warn!(checkpoint = %cp, "the checkpoint says a dump is due (an earlier one did not finish, or the binlog position was lost); dumping");
        } else if !(same_stream && same_server) {
            tracing::warn!(checkpoint = %cp, server = %server, tables = %fingerprint, "checkpoint does not match this server/table selection; re-dumping");
        } else if by_gtid && file.is_empty() {
            tracing::warn!(gtid = %gtid, "the checkpoint has no binlog position (the server refused it); resuming from its GTID position");
            resume = Some(Start::Gtid(gtid));
        } else {
            match check_position(&mut conn, &file, pos).await? {
                PositionState::Readable => resume = Some(Start::FilePos(file, pos)),
                PositionState::Gone => {
                    tracing::warn!(file = %file, pos, "binlog position of the checkpoint is no longer on the server (purged); re-dumping and removing stale keys")
                }
                PositionState::Refused(m) if by_gtid => {
                    tracing::warn!(file = %file, pos, error = %m, gtid = %gtid, "the server cannot read its binlog at the checkpoint's position; resuming from the checkpoint's GTID position instead");
                    resume = Some(Start::Gtid(gtid));
                }
                PositionState::Refused(m) => {
                    tracing::warn!(file = %file, pos, error = %m, "the server cannot read its binlog at the checkpoint's position; re-dumping")
                }
            }
        }
    }
    let gtid = cp
        .as_ref()
        .and_then(|c| c.get("gtid"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let cp = cp.unwrap_or_default();
    let (start, gtid, snapshots) = match resume {
        Some(Start::FilePos(f, p)) => {
            tracing::info!(file = %f, pos = p, gtid = %gtid, "resuming from checkpoint");
            let snapshots = Snapshots::resume(cfg, sink, &cp, position_num(&f, p)).await?;
            (Start::FilePos(f, p), gtid, snapshots)
        }
        Some(Start::Gtid(g)) => {
            let snapshots = Snapshots::resume(cfg, sink, &cp, 0).await?;
            (Start::Gtid(g.clone()), g, snapshots)
        }
        None => {
            sink.write_checkpoint(&checkpoint(&server, &fingerprint, "dump", "", 0, ""))
                .await?;
            let (f, p, g) = if cfg.sync.dump {
                METRICS.dumps.inc();
                dump::dump(cfg, &mut conn, &tables, sink).await?
            } else {
                let (f, p) = master_status(&mut conn).await?;
                (f, p, gtid_binlog_pos(&mut conn).await?.unwrap_or_default())
            };
            sink.write_checkpoint(&checkpoint(&server, &fingerprint, "stream", &f, p, &g))
                .await?;
            (Start::FilePos(f, p), g, Snapshots::none())
        }
    };
    let r = stream::stream(
        cfg,
        conn,
        &tables,
        sink,
        &server,
        &fingerprint,
        start,
        &gtid,
        mariadb_gtid,
        snapshots,
        stop,
    )
    .await;
    if let Some(refused) = r
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<stream::PositionRefused>())
    {
        fall_back(sink, refused, mariadb_gtid).await?;
    }
    r
}

/// `--dump-only`: copy the selected tables in one consistent snapshot, remove stale keys, exit.
pub async fn dump_only(cfg: &Config, sink: &mut Sink) -> Result<()> {
    let mut conn = connect(cfg).await?;
    let tables = load_tables(cfg, &mut conn).await?;
    dump::dump(cfg, &mut conn, &tables, sink).await?;
    Ok(())
}

/// Selected tables by (schema, name).
pub fn by_name(tables: &[MyTable]) -> HashMap<(String, String), MyTable> {
    tables
        .iter()
        .map(|t| ((t.meta.schema.clone(), t.meta.name.clone()), t.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> BinlogSettings {
        BinlogSettings {
            log_bin: Some("ON".into()),
            binlog_format: Some("ROW".into()),
            binlog_row_image: Some("FULL".into()),
            binlog_row_metadata: Some("FULL".into()),
            server_id: Some("1".into()),
        }
    }

    #[test]
    fn binlog_settings_check() {
        assert!(check_binlog_settings(&good()).is_empty());
        let mut s = good();
        s.binlog_format = Some("MIXED".into());
        s.binlog_row_image = Some("MINIMAL".into());
        let p = check_binlog_settings(&s);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("binlog_format is MIXED (set binlog_format=ROW)"),
            "{p:?}"
        );
        assert!(p[1].contains("binlog_row_image is MINIMAL"), "{p:?}");
        let mut s = good();
        s.log_bin = Some("OFF".into());
        s.binlog_row_metadata = None;
        s.server_id = Some("0".into());
        let p = check_binlog_settings(&s);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("log_bin is OFF"));
        assert!(p[1].contains("MariaDB >= 10.5 or MySQL >= 8.0.1"));
        assert!(p[2].contains("server_id is 0"));
        let mut s = good();
        s.binlog_row_metadata = Some("MINIMAL".into());
        assert!(check_binlog_settings(&s)[0].contains("binlog_row_metadata is MINIMAL"));
        assert_eq!(position_num("binlog.000002", 7), (2u64 << 32) | 7);
    }
}
