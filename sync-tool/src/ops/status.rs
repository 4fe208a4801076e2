//! `sync-tool status`: who is the active instance and what it is doing, from etcd (the
//! election, the checkpoint, the status the active instance publishes, the keys per table)
//! and from the source (its current position, for the lag). Works while the tool runs and
//! after it died; the source being unreachable is reported, not an error.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};
use etcd_client::{Client, GetOptions, SortOrder, SortTarget};
use serde_json::{json, Value};

use crate::config::{Config, DbType};
use crate::metrics::now_unix;
use crate::sink;
use crate::source::{mysql, postgres};

async fn get_json(client: &mut Client, key: &str) -> Result<Option<Value>> {
    let r = client
        .get(key, None)
        .await
        .with_context(|| format!("etcd: read {key}"))?;
    Ok(r.kvs()
        .first()
        .and_then(|kv| serde_json::from_slice(kv.value()).ok()))
}

/// The election's candidates, oldest first: the first holds the leadership.
async fn candidates(client: &mut Client, cfg: &Config) -> Result<Vec<String>> {
    let opts = GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend);
    let r = client
        .get(format!("{}/election/", cfg.state_path()), Some(opts))
        .await
        .context("etcd: read the election")?;
    Ok(r.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .collect())
}

/// Keys in etcd per table the tool has written (`<state>/columns/<schema.table>` names them).
async fn table_counts(client: &mut Client, cfg: &Config) -> Result<Vec<(String, i64)>> {
    let tpl = cfg.key_template()?;
    let prefix = format!("{}/columns/", cfg.state_path());
    let r = client
        .get(
            prefix.as_str(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .context("etcd: read the table list")?;
    let mut out = Vec::new();
    for kv in r.kvs() {
        let label = String::from_utf8_lossy(&kv.key()[prefix.len()..]).into_owned();
        let Some((schema, name)) = label.split_once('.') else {
            continue;
        };
        let p = tpl.table_prefix(schema, name);
        let n = client
            .get(
                p.as_str(),
                Some(
                    GetOptions::new()
                        .with_range(sink::prefix_end(p.as_bytes()))
                        .with_count_only(),
                ),
            )
            .await
            .context("etcd: count keys")?
            .count();
        out.push((label, n));
    }
    Ok(out)
}

/// The source's current position and how far the checkpoint is behind it.
async fn source_position(cfg: &Config, cp: &Value) -> Result<Value> {
    match cfg.database.db_type {
        DbType::Postgres => {
            let sql = postgres::connect_sql(cfg).await?;
            let now: String = sql
                .query_one("SELECT pg_current_wal_lsn()::text", &[])
                .await
                .context("pg_current_wal_lsn")?
                .get(0);
            let slot = sql
                .query_opt("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", &[&cfg.sync.slot])
                .await
                .context("slot lookup")?
                .and_then(|r| r.get::<_, Option<String>>(0));
            // applied: the checkpoint, or the slot's confirmed position where the tool
            // acknowledged WAL without changes for it (other databases' traffic) beyond it
            let lsn = |s: Option<&str>| s.and_then(|l| postgres::parse_lsn(l).ok());
            let applied = lsn(cp["lsn"].as_str()).max(lsn(slot.as_deref()));
            let behind = applied.map(|a| lsn(Some(&now)).unwrap_or(a).saturating_sub(a));
            Ok(json!({ "lsn": now, "slot_confirmed_lsn": slot, "bytes_behind": behind }))
        }
        DbType::Mysql => {
            let mut conn = mysql::connect(cfg).await?;
            let (file, pos) = mysql::master_status(&mut conn).await?;
            let behind = match (cp["file"].as_str(), cp["pos"].as_u64()) {
                (Some(f), Some(p)) if f == file => json!({ "bytes": pos.saturating_sub(p) }),
                (Some(f), _) if !f.is_empty() => {
                    json!({ "files": file_seq(&file).saturating_sub(file_seq(f)) })
                }
                _ => Value::Null,
            };
            Ok(json!({ "file": file, "pos": pos, "behind": behind }))
        }
    }
}

fn file_seq(f: &str) -> u64 {
    f.rsplit('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Everything `status` knows, as one JSON object.
async fn collect(cfg: &Config) -> Result<Value> {
    let mut client = sink::connect(cfg).await?;
    let state = cfg.state_path();
    let candidates = candidates(&mut client, cfg).await?;
    let published = get_json(&mut client, &format!("{state}/status")).await?;
    let cp = get_json(&mut client, &format!("{state}/checkpoint")).await?;
    let tables = table_counts(&mut client, cfg).await?;
    let now_ms = (now_unix() * 1000.0) as u64;
    let age = |ms: Option<u64>| {
        ms.filter(|m| *m > 0)
            .map(|m| now_ms.saturating_sub(m) as f64 / 1000.0)
    };
    let source = match &cp {
        Some(cp) => match source_position(cfg, cp).await {
            Ok(v) => v,
            Err(e) => json!({ "error": format!("{e:#}") }),
        },
        None => Value::Null,
    };
    Ok(json!({
        "active_instance": candidates.first(),
        "standby_instances": candidates.iter().skip(1).collect::<Vec<_>>(),
        "phase": cp.as_ref().and_then(|c| c.get("phase")).cloned(),
        "checkpoint": cp,
        "checkpoint_age_s": age(cp.as_ref().and_then(|c| c["written_ms"].as_u64())),
        "source": source,
        "lag_s": published.as_ref().and_then(|p| p["lag_ms"].as_u64()).map(|ms| ms as f64 / 1000.0),
        "last_source_commit_age_s": age(published.as_ref().and_then(|p| p["last_source_commit_ms"].as_u64())),
        "instance_status": published,
        "instance_status_age_s": age(published.as_ref().and_then(|p| p["updated_ms"].as_u64())),
        "tables": tables.iter().map(|(t, n)| json!({ "table": t, "keys": n })).collect::<Vec<_>>(),
    }))
}

fn when(ms: Option<u64>) -> String {
    match ms {
        Some(ms) if ms > 0 => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        _ => "-".into(),
    }
}

fn ago(s: &Value) -> String {
    s.as_f64()
        .map_or_else(|| "-".into(), |s| format!("{s:.1} s ago"))
}

fn print(s: &Value) {
    match s["active_instance"].as_str() {
        Some(i) => println!("active instance: {i}"),
        None => println!("active instance: none (no sync-tool holds the election)"),
    }
    if let Some(sb) = s["standby_instances"].as_array().filter(|a| !a.is_empty()) {
        println!(
            "standby instances: {}",
            sb.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let cp = &s["checkpoint"];
    println!(
        "phase: {}",
        s["phase"].as_str().unwrap_or("none (no checkpoint yet)")
    );
    if cp.is_object() {
        let pos = match cp["source"].as_str() {
            Some("mysql") => format!(
                "{}:{} (gtid {})",
                cp["file"].as_str().unwrap_or(""),
                cp["pos"],
                cp["gtid"].as_str().unwrap_or("")
            ),
            _ => format!("lsn {}", cp["lsn"].as_str().unwrap_or("")),
        };
        println!(
            "checkpoint: {pos}, written {} ({})",
            when(cp["written_ms"].as_u64()),
            ago(&s["checkpoint_age_s"])
        );
    }
    let src = &s["source"];
    if let Some(e) = src["error"].as_str() {
        println!("source: unreachable ({e})");
    } else if let Some(l) = src["lsn"].as_str() {
        println!(
            "source: lsn {l}, slot confirmed {}, {} bytes not applied yet",
            src["slot_confirmed_lsn"].as_str().unwrap_or("-"),
            src["bytes_behind"]
        );
    } else if let Some(f) = src["file"].as_str() {
        let behind = &src["behind"];
        let b = if let Some(n) = behind["bytes"].as_u64() {
            format!("{n} bytes")
        } else {
            format!("{} files", behind["files"])
        };
        println!("source: {f}:{}, checkpoint {b} behind", src["pos"]);
    }
    let st = &s["instance_status"];
    if st.is_object() {
        println!(
            "lag: {} s (source commit to etcd commit, last transaction applied {})",
            s["lag_s"]
                .as_f64()
                .map_or("-".into(), |l| format!("{l:.3}")),
            ago(&s["last_source_commit_age_s"])
        );
        println!(
            "rows applied: {} (dumped {}, dumps {}), etcd transactions {}, errors {}, since {} (status {})",
            st["rows_applied"],
            st["dump_rows"],
            st["dumps"],
            st["etcd_txns"],
            st["errors"],
            when(st["leader_since_ms"].as_u64()),
            ago(&s["instance_status_age_s"])
        );
    }
    if let Some(ts) = s["tables"].as_array() {
        println!("keys in etcd per table:");
        for t in ts {
            println!("  {} {}", t["table"].as_str().unwrap_or(""), t["keys"]);
        }
    }
}

pub async fn run(cfg: &Config, as_json: bool) -> Result<()> {
    let s = collect(cfg).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print(&s);
    }
    Ok(())
}
