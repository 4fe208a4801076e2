//! Benchmarks (ignored by default; `make bench-sync-pg`). Prints rows/s of the tool next to the
//! raw etcd write rate measured in the same run with the same batch size, the ratio, the lag
//! p50/p99 of streamed rows, and the tool's peak RSS during the dump.
//! Environment: BENCH_ROWS (dump rows, default 1_000_000), BENCH_STREAM_ROWS (default 50_000).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use etcd_client::{GetOptions, Txn, TxnOp, WatchOptions};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

const BATCH: usize = 127; // data operations per etcd transaction (128 minus the checkpoint)

/// Raw etcd write rate: sequential transactions of BATCH puts with values like the tool's.
async fn raw_etcd_rate(rows: usize, prefix: &str) -> f64 {
    let mut e = etcd().await;
    let value = br#"{"id":123456,"v":123456,"t":"row-123456-xxxxxxxxxxxxxxxxxxxxxxxx","ts":1700000000000}"#.to_vec();
    let t0 = Instant::now();
    let mut i = 0;
    while i < rows {
        let n = BATCH.min(rows - i);
        let ops: Vec<TxnOp> = (i..i + n).map(|k| TxnOp::put(format!("{prefix}{k}"), value.clone(), None)).collect();
        e.txn(Txn::new().and_then(ops)).await.unwrap();
        i += n;
    }
    let rate = rows as f64 / t0.elapsed().as_secs_f64();
    etcd_clear(&mut e, prefix).await;
    rate
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_pg() {
    let dump_rows = env_usize("BENCH_ROWS", 1_000_000);
    let stream_rows = env_usize("BENCH_STREAM_ROWS", 50_000);
    let name = unique("bench");
    let c = pg("testdb").await;
    let mut e = etcd().await;
    println!("preparing {dump_rows} rows ...");
    c.batch_execute(&format!(
        "CREATE SCHEMA {name}; CREATE TABLE {name}.b (id bigint PRIMARY KEY, v int, t text, ts bigint);
         INSERT INTO {name}.b SELECT i, i, 'row-' || i || '-xxxxxxxxxxxxxxxxxxxxxxxx', 1700000000000 FROM generate_series(1, {dump_rows}) i;"
    ))
    .await
    .unwrap();

    let raw = raw_etcd_rate(50_000, &format!("/{name}raw/")).await;

    let dir = tmpdir(&name);
    let mut tool = Tool::new(&dir, "tool", &pg_config(&name, &name, &[&format!("{name}.*")], "").replace("log_level: info", "log_level: warn"));
    let t0 = Instant::now();
    tool.start();
    let pid = tool.pid().unwrap();
    let state = format!("/sync-tool/{name}");
    let mut peak_kb = 0;
    loop {
        peak_kb = peak_kb.max(vm_hwm_kb(pid).unwrap_or(0));
        if let Ok(r) = e.get(format!("{state}/checkpoint"), None).await {
            if r.kvs().first().is_some_and(|kv| kv.value_str().unwrap_or("").contains("\"phase\":\"stream\"")) {
                break;
            }
        }
        assert!(tool.exited().is_none(), "{}", tool.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dump_secs = t0.elapsed().as_secs_f64();
    peak_kb = peak_kb.max(vm_hwm_kb(pid).unwrap_or(0));
    let dump_rate = dump_rows as f64 / dump_secs;
    let n = e.get(format!("/{name}/"), Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count();
    assert_eq!(n as usize, dump_rows);

    // stream: watch the prefix, insert rows stamped with their commit-side time
    let mut ws = e.watch(format!("/{name}/"), Some(WatchOptions::new().with_prefix())).await.unwrap();
    let writer = {
        let name = name.clone();
        tokio::spawn(async move {
            let c = pg("testdb").await;
            let per_txn = 100;
            let mut id = 10_000_000i64;
            for _ in 0..stream_rows / per_txn {
                c.batch_execute(&format!(
                    "INSERT INTO {name}.b SELECT i, i, 'row-' || i || '-xxxxxxxxxxxxxxxxxxxxxxxx', (extract(epoch from clock_timestamp()) * 1000)::bigint FROM generate_series({}, {}) i",
                    id,
                    id + per_txn as i64 - 1
                ))
                .await
                .unwrap();
                id += per_txn as i64;
            }
        })
    };
    let mut lags = Vec::with_capacity(stream_rows);
    let mut first = None;
    let mut last = Instant::now();
    let mut seen: HashMap<Vec<u8>, ()> = HashMap::new();
    while seen.len() < stream_rows / 100 * 100 {
        let resp = tokio::time::timeout(Duration::from_secs(60), ws.message()).await.expect("stream stalled").unwrap().unwrap();
        let now_ms = common_now_ms();
        for ev in resp.events() {
            if let Some(kv) = ev.kv() {
                let v: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_default();
                if let Some(ts) = v["ts"].as_i64() {
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                    lags.push((now_ms - ts as f64).max(0.0));
                    seen.insert(kv.key().to_vec(), ());
                }
            }
        }
    }
    writer.await.unwrap();
    let stream_secs = last.duration_since(first.unwrap()).as_secs_f64().max(1e-3);
    let stream_rate = seen.len() as f64 / stream_secs;
    let p50 = pct(&mut lags, 0.5);
    let p99 = pct(&mut lags, 0.99);
    tool.term();

    println!("=== bench-sync-pg (PostgreSQL 15 -> etcd 3.4, {BATCH} ops per etcd txn) ===");
    println!("raw etcd write rate      : {raw:>10.0} rows/s");
    println!("dump ({dump_rows} rows)   : {dump_rate:>10.0} rows/s  ratio {:.2} (target >= 0.8)  {dump_secs:.1}s", dump_rate / raw);
    println!("stream ({} rows)     : {stream_rate:>10.0} rows/s  ratio {:.2} (target >= 0.8)", seen.len(), stream_rate / raw);
    println!("stream lag               : p50 {p50:.0} ms  p99 {p99:.0} ms");
    println!("peak RSS during dump     : {:.1} MB (target <= 100 MB)", peak_kb as f64 / 1024.0);
    pg_cleanup(&name, &[&name], &name).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn common_now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

/// MariaDB → etcd: dump and stream rows/s next to the raw etcd write rate of the same run,
/// stream lag p50/p99 (row's commit-side time → etcd watch event), peak RSS during the dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_mysql() {
    let dump_rows = env_usize("BENCH_ROWS", 1_000_000);
    let stream_rows = env_usize("BENCH_STREAM_ROWS", 50_000);
    let name = unique("mybench");
    let mut c = my().await;
    let mut e = etcd().await;
    println!("preparing {dump_rows} rows ...");
    my_exec(
        &mut c,
        &format!(
            "CREATE DATABASE {name};
             CREATE TABLE {name}.b (id BIGINT PRIMARY KEY, v INT, t VARCHAR(64), ts BIGINT);
             INSERT INTO {name}.b SELECT seq, seq, CONCAT('row-', seq, '-xxxxxxxxxxxxxxxxxxxxxxxx'), 1700000000000 FROM {name}.seq_1_to_{dump_rows}"
        ),
    )
    .await;
    let raw = raw_etcd_rate(50_000, &format!("/{name}raw/")).await;
    let dir = tmpdir(&name);
    let include = format!("{name}.*");
    let mut tool = Tool::new(&dir, "tool", &my_config(&name, &[&include], "").replace("log_level: info", "log_level: warn"));
    let t0 = Instant::now();
    tool.start();
    let pid = tool.pid().unwrap();
    let state = format!("/sync-tool/{name}");
    let mut peak_kb = 0;
    loop {
        peak_kb = peak_kb.max(vm_hwm_kb(pid).unwrap_or(0));
        if let Ok(r) = e.get(format!("{state}/checkpoint"), None).await {
            if r.kvs().first().is_some_and(|kv| kv.value_str().unwrap_or("").contains("\"phase\":\"stream\"")) {
                break;
            }
        }
        assert!(tool.exited().is_none(), "{}", tool.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dump_secs = t0.elapsed().as_secs_f64();
    peak_kb = peak_kb.max(vm_hwm_kb(pid).unwrap_or(0));
    let dump_rate = dump_rows as f64 / dump_secs;
    let n = e.get(format!("/{name}/"), Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count();
    assert_eq!(n as usize, dump_rows);

    let mut ws = e.watch(format!("/{name}/"), Some(WatchOptions::new().with_prefix())).await.unwrap();
    let writer = {
        let name = name.clone();
        tokio::spawn(async move {
            let mut c = my().await;
            let per_txn = 100;
            let mut id = 10_000_000i64;
            for _ in 0..stream_rows / per_txn {
                my_exec(
                    &mut c,
                    &format!(
                        "INSERT INTO {name}.b SELECT seq, seq, CONCAT('row-', seq, '-xxxxxxxxxxxxxxxxxxxxxxxx'), CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) FROM {name}.seq_{}_to_{}",
                        id,
                        id + per_txn as i64 - 1
                    ),
                )
                .await;
                id += per_txn as i64;
            }
        })
    };
    let mut lags = Vec::with_capacity(stream_rows);
    let mut first = None;
    let mut last = Instant::now();
    let mut seen: HashMap<Vec<u8>, ()> = HashMap::new();
    while seen.len() < stream_rows / 100 * 100 {
        let resp = tokio::time::timeout(Duration::from_secs(60), ws.message()).await.expect("stream stalled").unwrap().unwrap();
        let now_ms = common_now_ms();
        for ev in resp.events() {
            if let Some(kv) = ev.kv() {
                let v: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_default();
                if let Some(ts) = v["ts"].as_i64() {
                    if ts > 1700000000000 {
                        first.get_or_insert_with(Instant::now);
                        last = Instant::now();
                        lags.push((now_ms - ts as f64).max(0.0));
                        seen.insert(kv.key().to_vec(), ());
                    }
                }
            }
        }
    }
    writer.await.unwrap();
    let stream_secs = last.duration_since(first.unwrap()).as_secs_f64().max(1e-3);
    let stream_rate = seen.len() as f64 / stream_secs;
    let p50 = pct(&mut lags, 0.5);
    let p99 = pct(&mut lags, 0.99);
    tool.term();
    println!("=== bench-sync-mysql (MariaDB 10.11 -> etcd 3.4, {BATCH} ops per etcd txn) ===");
    println!("raw etcd write rate      : {raw:>10.0} rows/s");
    println!("dump ({dump_rows} rows)   : {dump_rate:>10.0} rows/s  ratio {:.2} (target >= 0.8)  {dump_secs:.1}s", dump_rate / raw);
    println!("stream ({} rows)     : {stream_rate:>10.0} rows/s  ratio {:.2} (target >= 0.8)", seen.len(), stream_rate / raw);
    println!("stream lag               : p50 {p50:.0} ms  p99 {p99:.0} ms");
    println!("peak RSS during dump     : {:.1} MB (target <= 100 MB)", peak_kb as f64 / 1024.0);
    my_cleanup(&[&name], &name).await;
    let _ = std::fs::remove_dir_all(&dir);
}
