//! PostgreSQL driver: publication, slot with exported snapshot, dump inside that snapshot,
//! then the pgoutput stream from the slot.

mod copy_text;
mod dump;
pub mod pgoutput;
pub mod scan;
pub mod snapshot;
mod spool;
mod stream;
pub mod version;
mod walsender;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};

use crate::config::Config;
use crate::metrics::METRICS;
use crate::retry::fatal;
use crate::shutdown::Stop;
use crate::sink::Sink;
use crate::source::snapshot::{selection, Snapshots};
use crate::source::{check_prefixes, selection_fingerprint, Filter, TableMeta};
use crate::value::Kind;
use version::Features;

/// Session settings that make text output match the type mapping (also on the walsender).
pub const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c extra_float_digits=3 -c bytea_output=hex";

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub async fn connect_sql(cfg: &Config) -> Result<Client> {
    let d = &cfg.database;
    let mut pc = tokio_postgres::Config::new();
    pc.host(&d.host)
        .port(d.port())
        .user(&d.user)
        .password(&d.password)
        .dbname(&d.name)
        .application_name("sync-tool")
        .options(SESSION_OPTIONS)
        .connect_timeout(std::time::Duration::from_secs(10));
    let (client, conn) = pc
        .connect(NoTls)
        .await
        .map_err(|e| classify_pg(e, "connect"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

fn classify_pg(e: tokio_postgres::Error, what: &str) -> anyhow::Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // 28xxx invalid authorization, 3D000 no such database, 42501 insufficient privilege
        if code.starts_with("28") || code == "3D000" || code == "42501" {
            return fatal(format!("postgres {what}: {} ({code})", db.message()));
        }
    }
    anyhow!(e).context(format!("postgres {what}"))
}

/// Column of a selected table.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub struct PgTable {
    pub meta: Arc<TableMeta>,
    pub columns: Vec<Column>,
    /// a partitioned table (relkind 'p'), published via its root
    pub partitioned: bool,
}

/// What the connected server's major supports.
pub async fn server_features(client: &Client) -> Result<Features> {
    let num: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| classify_pg(e, "version"))?
        .get(0);
    Features::new(num)
}

/// OID → mapping kind, resolved through the catalog (domains to their base type, arrays to
/// their element type) and cached.
#[derive(Default)]
pub struct TypeCache {
    map: HashMap<u32, Kind>,
}

impl TypeCache {
    pub async fn kind(&mut self, client: &Client, oid: u32) -> Result<Kind> {
        if let Some(k) = self.map.get(&oid) {
            return Ok(k.clone());
        }
        let k = resolve(client, oid, 0).await?;
        self.map.insert(oid, k.clone());
        Ok(k)
    }
}

fn builtin(oid: u32) -> Option<Kind> {
    Some(match oid {
        16 => Kind::Bool,
        20 | 21 | 23 | 26 | 28 | 5069 => Kind::Int,
        700 | 701 => Kind::Float,
        1700 | 790 => Kind::Decimal,
        17 => Kind::Bytes,
        114 | 3802 => Kind::Json,
        1114 => Kind::Timestamp,
        1184 => Kind::TimestampTz,
        25 | 1043 | 1042 | 18 | 19 | 1082 | 1083 | 1266 | 1186 | 2950 => Kind::Text,
        _ => return None,
    })
}

fn resolve<'a>(
    client: &'a Client,
    oid: u32,
    depth: u32,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Kind>> + Send + 'a>> {
    Box::pin(async move {
        if let Some(k) = builtin(oid) {
            return Ok(k);
        }
        if depth > 8 {
            return Ok(Kind::Text);
        }
        let row = client
            .query_opt(
                "SELECT typtype::text, typcategory::text, typelem, typdelim::text, typbasetype FROM pg_type WHERE oid = $1",
                &[&oid],
            )
            .await
            .map_err(|e| classify_pg(e, "type lookup"))?;
        let Some(row) = row else {
            return Ok(Kind::Text);
        };
        let typtype: String = row.get(0);
        let cat: String = row.get(1);
        let elem: u32 = row.get(2);
        let delim: String = row.get(3);
        let base: u32 = row.get(4);
        if typtype == "d" {
            return resolve(client, base, depth + 1).await;
        }
        if cat == "A" && elem != 0 {
            let ek = resolve(client, elem, depth + 1).await?;
            return Ok(Kind::Array(
                Box::new(ek),
                delim.bytes().next().unwrap_or(b','),
            ));
        }
        Ok(Kind::Text)
    })
}

/// Loads the selected tables with their columns and primary keys.
pub async fn load_tables(
    cfg: &Config,
    client: &Client,
    types: &mut TypeCache,
) -> Result<Vec<PgTable>> {
    let filter = Filter::new(&cfg.sync.tables);
    let tpl = cfg.key_template()?;
    let features = server_features(client).await?;
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.oid, c.relreplident::text, c.relkind::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| classify_pg(e, "list tables"))?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for r in rows {
        let (schema, name, oid, ident): (String, String, u32, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        if !filter.matches(&schema, &name) {
            continue;
        }
        let partitioned = r.get::<_, String>(4) == "p";
        if partitioned && !features.partition_root() {
            problems.push(format!(
                "{schema}.{name} is a partitioned table, which PostgreSQL {} cannot publish (13+ can; select its partitions instead)",
                features.major()
            ));
            continue;
        }
        let pk: Vec<String> = client
            .query(
                "SELECT a.attname::text FROM pg_index i \
                 JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                 WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
                &[&oid],
            )
            .await
            .map_err(|e| classify_pg(e, "primary key lookup"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if pk.is_empty() {
            problems.push(format!("{schema}.{name} has no primary key (add one, or exclude it with sync.tables.exclude)"));
            continue;
        }
        if ident != "d" && ident != "f" {
            problems.push(format!(
                "{schema}.{name} has REPLICA IDENTITY {} (use DEFAULT or FULL)",
                if ident == "n" {
                    "NOTHING"
                } else {
                    "USING INDEX"
                }
            ));
            continue;
        }
        // generated columns (12+) are not replicated
        let generated = if features.generated_columns() {
            "AND attgenerated = ''"
        } else {
            ""
        };
        let cols = client
            .query(
                &format!(
                    "SELECT attname::text, atttypid FROM pg_attribute \
                     WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped {generated} ORDER BY attnum"
                ),
                &[&oid],
            )
            .await
            .map_err(|e| classify_pg(e, "column lookup"))?;
        let mut columns = Vec::new();
        for c in cols {
            let (cname, typ): (String, u32) = (c.get(0), c.get(1));
            columns.push(Column {
                name: cname,
                kind: types.kind(client, typ).await?,
            });
        }
        out.push(PgTable {
            meta: Arc::new(TableMeta::new(&tpl, &schema, &name, pk)),
            columns,
            partitioned,
        });
    }
    if !problems.is_empty() {
        return Err(fatal(format!(
            "unsupported tables: {}",
            problems.join("; ")
        )));
    }
    if out.is_empty() {
        return Err(fatal("no table matches sync.tables (nothing to replicate)"));
    }
    let metas: Vec<TableMeta> = out.iter().map(|t| (*t.meta).clone()).collect();
    check_prefixes(&metas).map_err(|e| fatal(format!("{e:#}")))?;
    Ok(out)
}

/// Creates the publication for the selected tables, or makes an existing one match them.
/// `ALTER PUBLICATION <name> <change>`: a failure is fatal (the sync cannot follow the selection).
async fn alter_publication(client: &Client, pubname: &str, change: &str) -> Result<()> {
    client
        .batch_execute(&format!(
            "ALTER PUBLICATION {} {change}",
            quote_ident(pubname)
        ))
        .await
        .map_err(|e| fatal(format!("cannot alter publication {pubname}: {e}")))
}

async fn ensure_publication(cfg: &Config, client: &Client, tables: &[PgTable]) -> Result<()> {
    let pubname = &cfg.sync.publication;
    let list = tables
        .iter()
        .map(|t| {
            format!(
                "{}.{}",
                quote_ident(&t.meta.schema),
                quote_ident(&t.meta.name)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    // a partitioned table's changes under its own name (13+; refused before, in load_tables)
    let via_root = tables.iter().any(|t| t.partitioned);
    let existing = client
        .query_opt(
            if via_root {
                "SELECT puballtables, pubviaroot FROM pg_publication WHERE pubname = $1"
            } else {
                "SELECT puballtables, true FROM pg_publication WHERE pubname = $1"
            },
            &[pubname],
        )
        .await
        .map_err(|e| classify_pg(e, "publication lookup"))?;
    if let Some(r) = &existing {
        if !r.get::<_, bool>(1) {
            tracing::info!(publication = %pubname, "setting publish_via_partition_root (a selected table is partitioned)");
            alter_publication(client, pubname, "SET (publish_via_partition_root = true)").await?;
        }
    }
    let with = if via_root {
        " WITH (publish_via_partition_root = true)"
    } else {
        ""
    };
    match existing {
        None => {
            tracing::info!(publication = %pubname, tables = tables.len(), "creating publication");
            client
                .batch_execute(&format!("CREATE PUBLICATION {} FOR TABLE {list}{with}", quote_ident(pubname)))
                .await
                .map_err(|e| fatal(format!("cannot create publication {pubname}: {e} (create it as the tables' owner: CREATE PUBLICATION {pubname} FOR TABLE {list})")))?;
        }
        Some(r) if r.get::<_, bool>(0) => {
            tracing::info!(publication = %pubname, "publication is FOR ALL TABLES; unselected tables are ignored");
        }
        Some(_) => {
            let mut have: Vec<String> = client
                .query("SELECT schemaname::text || '.' || tablename::text FROM pg_publication_tables WHERE pubname = $1", &[pubname])
                .await
                .map_err(|e| classify_pg(e, "publication tables"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            have.sort();
            let mut want: Vec<String> = tables.iter().map(|t| t.meta.label()).collect();
            want.sort();
            if have != want {
                tracing::info!(publication = %pubname, "publication table list differs from the selection; altering it");
                alter_publication(client, pubname, &format!("SET TABLE {list}")).await?;
            }
        }
    }
    Ok(())
}

pub fn lsn_str(l: u64) -> String {
    format!("{:X}/{:X}", l >> 32, l & 0xffff_ffff)
}

pub fn parse_lsn(s: &str) -> Result<u64> {
    let (a, b) = s
        .split_once('/')
        .ok_or_else(|| anyhow!("invalid LSN {s:?}"))?;
    Ok(u64::from_str_radix(a, 16)? << 32 | u64::from_str_radix(b, 16)?)
}

pub fn checkpoint(
    cfg: &Config,
    system_id: &str,
    fingerprint: &str,
    phase: &str,
    lsn: u64,
) -> Value {
    json!({
        "source": "postgres",
        "phase": phase,
        "slot": cfg.sync.slot,
        "system_id": system_id,
        "tables": fingerprint,
        "lsn": lsn_str(lsn),
        "position_num": lsn,
    })
}

pub struct Session {
    pub cfg: Config,
    pub sql: Client,
    pub tables: Vec<PgTable>,
    pub types: TypeCache,
    pub fingerprint: String,
    pub features: Features,
    /// Incremental snapshots of tables added to the selection, between stream transactions.
    pub snapshots: Snapshots,
}

/// One run: connect, check, dump if needed, stream until an error.
pub async fn run(cfg: &Config, sink: &mut Sink, started: &mut bool, stop: Stop) -> Result<()> {
    let sql = connect_sql(cfg).await?;
    let in_recovery: bool = sql
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(|e| classify_pg(e, "recovery check"))?
        .get(0);
    if in_recovery {
        bail!(
            "postgres server {}:{} is in recovery (a standby); waiting for a primary",
            cfg.database.host,
            cfg.database.port()
        );
    }
    let features = server_features(&sql).await?;
    let version: String = sql
        .query_one("SHOW server_version", &[])
        .await
        .map_err(|e| classify_pg(e, "version"))?
        .get(0);
    features.log(&version);
    let wal_level: String = sql
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(|e| classify_pg(e, "wal_level"))?
        .get(0);
    if wal_level != "logical" {
        return Err(fatal(format!(
            "wal_level is {wal_level:?}; logical replication needs wal_level = logical"
        )));
    }
    let mut types = TypeCache::default();
    let tables = load_tables(cfg, &sql, &mut types).await?;
    let metas: Vec<TableMeta> = tables.iter().map(|t| (*t.meta).clone()).collect();
    let fingerprint = selection_fingerprint(&metas);
    ensure_publication(cfg, &sql, &tables).await?;
    *started = true;

    let mut repl = stream::open_gated(cfg).await?;
    let system_id = repl
        .simple_query("IDENTIFY_SYSTEM")
        .await
        .map_err(|e| anyhow!("IDENTIFY_SYSTEM: {e:#}"))?
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .ok_or_else(|| anyhow!("IDENTIFY_SYSTEM returned no system identifier"))?;

    let slot = &cfg.sync.slot;
    // wal_status is 13+ (before, a slot is never invalidated: it keeps its WAL)
    let wal_status = if features.slot_wal_status() {
        "coalesce(wal_status, '')::text"
    } else {
        "''::text"
    };
    let slot_row = sql
        .query_opt(
            &format!("SELECT plugin::text, database::text, active, {wal_status}, coalesce(confirmed_flush_lsn::text, '') FROM pg_replication_slots WHERE slot_name = $1"),
            &[slot],
        )
        .await
        .map_err(|e| classify_pg(e, "slot lookup"))?;
    if let Some(r) = &slot_row {
        let (plugin, db): (String, String) = (r.get(0), r.get(1));
        if plugin != "pgoutput" || db != cfg.database.name {
            return Err(fatal(format!(
                "replication slot {slot} exists for plugin {plugin} in database {db}; choose another sync.slot"
            )));
        }
        if r.get::<_, bool>(2) {
            bail!("replication slot {slot} is in use by another connection");
        }
    }
    let mut cp = sink.read_checkpoint().await?;
    selection::adopt(cfg, sink, &mut cp, &metas, &fingerprint, true).await?;
    let mut resume_lsn = None;
    if let (Some(cp), Some(r)) = (&cp, &slot_row) {
        let wal_status: String = r.get(3);
        let ok = cp.get("source") == Some(&json!("postgres"))
            && cp.get("phase") == Some(&json!("stream"))
            && cp.get("slot") == Some(&json!(slot))
            && cp.get("system_id") == Some(&json!(system_id))
            && cp.get("tables") == Some(&json!(fingerprint));
        if ok && wal_status != "lost" {
            resume_lsn = Some(parse_lsn(cp["lsn"].as_str().unwrap_or("0/0"))?);
        } else if ok {
            tracing::warn!(slot = %slot, "slot was invalidated (wal_status = lost); re-dumping");
        } else {
            tracing::warn!(checkpoint = %cp, system_id = %system_id, tables = %fingerprint, "checkpoint does not match this server/slot/table selection; re-dumping");
        }
    } else if cp.is_some() {
        tracing::warn!(slot = %slot, "slot is missing (new primary, or dropped); re-dumping and removing stale keys");
    }

    let mut session = Session {
        cfg: cfg.clone(),
        sql,
        tables,
        types,
        fingerprint,
        features,
        snapshots: Snapshots::none(),
    };
    let start_lsn = match resume_lsn {
        Some(l) => {
            tracing::info!(slot = %slot, lsn = %lsn_str(l), "resuming from checkpoint");
            let cp = cp.unwrap_or_default();
            session.snapshots = Snapshots::resume(cfg, sink, &cp, l).await?;
            l
        }
        None => {
            if slot_row.is_some() {
                tracing::info!(slot = %slot, "dropping old replication slot");
                session
                    .sql
                    .execute("SELECT pg_drop_replication_slot($1)", &[slot])
                    .await
                    .map_err(|e| classify_pg(e, "drop slot"))?;
            }
            sink.write_checkpoint(&checkpoint(
                cfg,
                &system_id,
                &session.fingerprint,
                "dump",
                0,
            ))
            .await?;
            let rows = repl
                .simple_query(&features.create_slot(slot, cfg.sync.dump))
                .await
                .map_err(|e| anyhow!("CREATE_REPLICATION_SLOT {slot}: {e:#}"))?;
            let row = rows
                .first()
                .ok_or_else(|| anyhow!("CREATE_REPLICATION_SLOT returned no row"))?;
            let text = |i: usize| row.get(i).cloned().flatten();
            let consistent = parse_lsn(&text(1).ok_or_else(|| anyhow!("no consistent point"))?)?;
            tracing::info!(slot = %slot, consistent_point = %lsn_str(consistent), "replication slot created");
            if cfg.sync.dump {
                let snapshot = text(2).ok_or_else(|| anyhow!("no exported snapshot"))?;
                METRICS.dumps.inc();
                dump::dump(&mut session, sink, Some(&snapshot)).await?;
            }
            sink.write_checkpoint(&checkpoint(
                cfg,
                &system_id,
                &session.fingerprint,
                "stream",
                consistent,
            ))
            .await?;
            consistent
        }
    };
    stream::stream(&mut session, sink, repl, &system_id, start_lsn, stop).await
}

/// `--dump-only`: copy the selected tables in one consistent snapshot (no slot), remove
/// stale keys, exit.
pub async fn dump_only(cfg: &Config, sink: &mut Sink) -> Result<()> {
    let sql = connect_sql(cfg).await?;
    let features = server_features(&sql).await?;
    let mut types = TypeCache::default();
    let tables = load_tables(cfg, &sql, &mut types).await?;
    let metas: Vec<TableMeta> = tables.iter().map(|t| (*t.meta).clone()).collect();
    let fingerprint = selection_fingerprint(&metas);
    let mut session = Session {
        cfg: cfg.clone(),
        sql,
        tables,
        types,
        fingerprint,
        features,
        snapshots: Snapshots::none(),
    };
    dump::dump(&mut session, sink, None).await
}
