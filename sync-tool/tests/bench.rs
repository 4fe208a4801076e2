//! Benchmarks (ignored by default; `make bench-sync-pg`, `make bench-sync-mysql`). Print rows/s
//! of the tool (dump and stream) next to the raw etcd write rate measured in the same run with
//! the same transaction shape (same number of puts per transaction, same key and value sizes,
//! same number of transactions in flight; for the stream, with the same etcd watcher attached),
//! the ratio, the lag p50/p99 of streamed rows, and the tool's peak RSS during the dump.
//! Environment: BENCH_ROWS (dump rows, default 1_000_000), BENCH_STREAM_ROWS (default 50_000),
//! BENCH_RAW_ROWS (rows of each baseline run, default 200_000).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use etcd_client::{GetOptions, Txn, TxnOp, WatchOptions};
use futures_util::stream::{FuturesOrdered, StreamExt};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// Data operations per etcd transaction: the tool's default `sync.max_txn_ops` (128) minus the
/// one it keeps for a checkpoint put.
const BATCH: usize = 127;
/// etcd transactions in flight at once: the tool's default `sync.txns_in_flight`, so the
/// baseline does the same.
const IN_FLIGHT: usize = 4;
/// Timestamp of the dumped rows; streamed rows carry their insert time instead.
const DUMP_TS: i64 = 1_700_000_000_000;

/// Raw etcd write rate: transactions of BATCH puts, IN_FLIGHT at a time, keys as long as the
/// tool's (`/<name>/<name>.r/<6-digit id>`; the tool writes `/<name>/<name>.b/<id>`, template
/// `/{path}/{schema}.{table}/{pk}`) and values of the benchmark rows' size, on a settled etcd;
/// its keys are removed afterwards. `watched`: the same watcher as the stream measurement's is
/// attached (etcd spends CPU on every event it sends), and the rate runs until it saw every row.
async fn raw_etcd_rate(name: &str, watched: bool) -> f64 {
    let rows = env_usize("BENCH_RAW_ROWS", 200_000);
    let e = etcd().await;
    let prefix = format!("/{name}/{name}.r/");
    let value = br#"{"id":123456,"v":123456,"t":"row-123456-xxxxxxxxxxxxxxxxxxxxxxxx","ts":1700000000000}"#.to_vec();
    settle_etcd().await;
    let watcher = if watched {
        let mut ws = e.watch_client().watch(prefix.clone(), Some(WatchOptions::new().with_prefix())).await.unwrap();
        Some(tokio::spawn(async move { watch_rows(&mut ws, rows, DUMP_TS).await }))
    } else {
        None
    };
    let t0 = Instant::now();
    let mut inflight = FuturesOrdered::new();
    let mut i = 0;
    while i < rows || !inflight.is_empty() {
        while i < rows && inflight.len() < IN_FLIGHT {
            let n = BATCH.min(rows - i);
            let ops: Vec<TxnOp> =
                (i..i + n).map(|k| TxnOp::put(format!("{prefix}{}", 100_000 + k), value.clone(), None)).collect();
            let mut c = e.clone();
            inflight.push_back(async move { c.txn(Txn::new().and_then(ops)).await.unwrap() });
            i += n;
        }
        inflight.next().await;
    }
    let end = match watcher {
        Some(w) => w.await.unwrap().last,
        None => Instant::now(),
    };
    let rate = rows as f64 / end.duration_since(t0).as_secs_f64();
    etcd_clear(&mut e.clone(), &prefix).await;
    settle_etcd().await;
    rate
}

/// What a watcher saw of the benchmark rows.
struct Seen {
    first: Instant,
    last: Instant,
    /// Per row: watch event time − the row's `ts` (ms).
    lags: Vec<f64>,
    rows: usize,
}

/// Consumes watch events until `target` distinct keys whose value has `ts >= min_ts` were
/// seen, parsing every value as JSON (as a consumer of the data would).
async fn watch_rows(ws: &mut etcd_client::WatchStream, target: usize, min_ts: i64) -> Seen {
    let mut seen: HashSet<Vec<u8>> = HashSet::with_capacity(target);
    let mut lags = Vec::with_capacity(target);
    let (mut first, mut last) = (None, Instant::now());
    while seen.len() < target {
        let resp = tokio::time::timeout(Duration::from_secs(60), ws.message()).await.expect("stream stalled").unwrap().unwrap();
        let now = now_ms();
        for ev in resp.events() {
            if let Some(kv) = ev.kv() {
                let v: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_default();
                if let Some(ts) = v["ts"].as_i64().filter(|&ts| ts >= min_ts) {
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                    lags.push((now - ts as f64).max(0.0));
                    seen.insert(kv.key().to_vec());
                }
            }
        }
    }
    Seen { first: first.unwrap_or(last), last, lags, rows: seen.len() }
}

/// Compacts etcd's history up to now and defragments its database, so that every
/// measurement starts from the same state. Deleted keys stay in etcd's history until a
/// compaction, and until then every write costs etcd about twice the CPU (measured on 3.4:
/// 50k deleted keys halve the write rate); a compaction that just freed many pages slows the
/// next writes too, until a defragmentation.
async fn settle_etcd() {
    let mut e = etcd().await;
    let rev = e.get("/", Some(GetOptions::new().with_count_only())).await.unwrap().header().unwrap().revision();
    if let Err(err) = e.compact(rev, Some(etcd_client::CompactionOptions::new().with_physical())).await {
        // nothing written since the last compaction
        assert!(err.to_string().contains("compacted"), "etcd compaction: {err}");
    }
    e.defragment().await.unwrap();
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (user + system) used by process `pid` so far.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // fields after the command name (which is in parentheses): utime is the 12th, stime the 13th
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn now_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

#[derive(Default)]
struct Report {
    /// Raw etcd write rate before the tool ran and after it stopped; ratios use the higher.
    raw_before: f64,
    raw_after: f64,
    /// The same with the stream measurement's watcher attached (the stream's baseline).
    raw_watched_before: f64,
    raw_watched_after: f64,
    dump_rows: usize,
    dump_secs: f64,
    peak_kb: u64,
    stream_rows: usize,
    stream_secs: f64,
    /// Time the workload took to commit the streamed rows in the source.
    source_secs: f64,
    p50: f64,
    p99: f64,
    /// CPU seconds the tool used for the dump / for the stream.
    dump_cpu: f64,
    stream_cpu: f64,
    /// Load average when the bench started and when it ended (other work on the machine).
    load_start: String,
}

impl Report {
    fn print(&self, title: &str) {
        let (dump_rate, stream_rate) =
            (self.dump_rows as f64 / self.dump_secs, self.stream_rows as f64 / self.stream_secs);
        let raw = self.raw_before.max(self.raw_after);
        let raw_watched = self.raw_watched_before.max(self.raw_watched_after);
        println!("=== {title}, {BATCH} puts per etcd txn, {IN_FLIGHT} txn in flight ===");
        println!(
            "raw etcd write rate      : {raw:>10.0} rows/s  (before the tool {:.0}, after {:.0}; ratios use the higher)",
            self.raw_before, self.raw_after
        );
        println!(
            "  same, watched          : {raw_watched:>10.0} rows/s  (before {:.0}, after {:.0}; the stream's baseline)",
            self.raw_watched_before, self.raw_watched_after
        );
        println!(
            "dump ({} rows)   : {dump_rate:>10.0} rows/s  ratio {:.2} (target >= 0.8)  {:.1}s",
            self.dump_rows,
            dump_rate / raw,
            self.dump_secs
        );
        println!(
            "stream ({} rows)     : {stream_rate:>10.0} rows/s  ratio {:.2} to the watched baseline (target >= 0.8)",
            self.stream_rows,
            stream_rate / raw_watched
        );
        println!("source commit rate       : {:>10.0} rows/s (the stream cannot be faster)", self.stream_rows as f64 / self.source_secs);
        println!("stream lag               : p50 {:.0} ms  p99 {:.0} ms", self.p50, self.p99);
        println!("peak RSS during dump     : {:.1} MB (target <= 100 MB)", self.peak_kb as f64 / 1024.0);
        println!(
            "tool CPU                 : dump {:.1} us/row, stream {:.1} us/row",
            self.dump_cpu * 1e6 / self.dump_rows as f64,
            self.stream_cpu * 1e6 / self.stream_rows.max(1) as f64
        );
        println!("load average             : start {}, end {}", self.load_start, loadavg());
    }
}

/// Starts the tool and waits until its dump finished (checkpoint in phase `stream`) and all
/// `dump_rows` keys are in etcd: fills the dump part of `r`.
async fn measure_dump(tool: &mut Tool, name: &str, dump_rows: usize, r: &mut Report) {
    let mut e = etcd().await;
    let t0 = Instant::now();
    tool.start();
    let pid = tool.pid().unwrap();
    let state = format!("/sync-tool/{name}");
    loop {
        r.peak_kb = r.peak_kb.max(vm_hwm_kb(pid).unwrap_or(0));
        if let Ok(resp) = e.get(format!("{state}/checkpoint"), None).await {
            if resp.kvs().first().is_some_and(|kv| kv.value_str().unwrap_or("").contains("\"phase\":\"stream\"")) {
                break;
            }
        }
        assert!(tool.exited().is_none(), "{}", tool.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    r.dump_secs = t0.elapsed().as_secs_f64();
    r.dump_cpu = cpu_secs(pid);
    r.peak_kb = r.peak_kb.max(vm_hwm_kb(pid).unwrap_or(0));
    r.dump_rows = dump_rows;
    let n = e.get(format!("/{name}/"), Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap().count();
    assert_eq!(n as usize, dump_rows);
}

/// Watches the table's keys while `insert(first_id, last_id)` inserts `stream_rows` rows in
/// transactions of 100, each row stamped with its insert time (`ts`, ms): fills the stream
/// part of `r` (rows/s from the first to the last row seen, lag = watch event − `ts`).
async fn measure_stream<F, Fut>(tool: &Tool, name: &str, stream_rows: usize, insert: F, r: &mut Report)
where
    F: Fn(i64, i64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let e = etcd().await;
    let pid = tool.pid().unwrap();
    let cpu0 = cpu_secs(pid);
    let mut ws = e.watch_client().watch(format!("/{name}/"), Some(WatchOptions::new().with_prefix())).await.unwrap();
    let per_txn = 100;
    let target = stream_rows / per_txn * per_txn;
    let writer = tokio::spawn(async move {
        let t0 = Instant::now();
        let mut id = 10_000_000i64;
        for _ in 0..stream_rows / per_txn {
            insert(id, id + per_txn as i64 - 1).await;
            id += per_txn as i64;
        }
        t0.elapsed().as_secs_f64()
    });
    let mut seen = watch_rows(&mut ws, target, DUMP_TS + 1).await;
    r.source_secs = writer.await.unwrap();
    r.stream_cpu = cpu_secs(pid) - cpu0;
    r.stream_secs = seen.last.duration_since(seen.first).as_secs_f64().max(1e-3);
    r.stream_rows = seen.rows;
    r.p50 = pct(&mut seen.lags, 0.5);
    r.p99 = pct(&mut seen.lags, 0.99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_pg() {
    let dump_rows = env_usize("BENCH_ROWS", 1_000_000);
    let stream_rows = env_usize("BENCH_STREAM_ROWS", 50_000);
    let name = unique("bench");
    let c = pg("testdb").await;
    println!("preparing {dump_rows} rows ...");
    c.batch_execute(&format!(
        "CREATE SCHEMA {name}; CREATE TABLE {name}.b (id bigint PRIMARY KEY, v int, t text, ts bigint);
         INSERT INTO {name}.b SELECT i, i, 'row-' || i || '-xxxxxxxxxxxxxxxxxxxxxxxx', {DUMP_TS} FROM generate_series(1, {dump_rows}) i;"
    ))
    .await
    .unwrap();
    let mut r = Report { load_start: loadavg(), ..Default::default() };
    (r.raw_before, r.raw_watched_before) = (raw_etcd_rate(&name, false).await, raw_etcd_rate(&name, true).await);

    let dir = tmpdir(&name);
    let mut tool = Tool::new(&dir, "tool", &pg_config(&name, &name, &[&format!("{name}.*")], "").replace("log_level: info", "log_level: warn"));
    measure_dump(&mut tool, &name, dump_rows, &mut r).await;
    let n = name.clone();
    let conn = std::sync::Arc::new(pg("testdb").await);
    let insert = move |first: i64, last: i64| {
        let (name, conn) = (n.clone(), conn.clone());
        async move {
            conn.batch_execute(&format!(
                    "INSERT INTO {name}.b SELECT i, i, 'row-' || i || '-xxxxxxxxxxxxxxxxxxxxxxxx', (extract(epoch from clock_timestamp()) * 1000)::bigint FROM generate_series({first}, {last}) i"
                ))
                .await
                .unwrap();
        }
    };
    measure_stream(&tool, &name, stream_rows, insert, &mut r).await;
    tool.term();
    (r.raw_after, r.raw_watched_after) = (raw_etcd_rate(&name, false).await, raw_etcd_rate(&name, true).await);
    r.print("bench-sync-pg (PostgreSQL 15 -> etcd 3.4)");
    pg_cleanup(&name, &[&name], &name).await;
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
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
    println!("preparing {dump_rows} rows ...");
    my_exec(
        &mut c,
        &format!(
            "CREATE DATABASE {name};
             CREATE TABLE {name}.b (id BIGINT PRIMARY KEY, v INT, t VARCHAR(64), ts BIGINT);
             INSERT INTO {name}.b SELECT seq, seq, CONCAT('row-', seq, '-xxxxxxxxxxxxxxxxxxxxxxxx'), {DUMP_TS} FROM {name}.seq_1_to_{dump_rows}"
        ),
    )
    .await;
    let mut r = Report { load_start: loadavg(), ..Default::default() };
    (r.raw_before, r.raw_watched_before) = (raw_etcd_rate(&name, false).await, raw_etcd_rate(&name, true).await);
    let dir = tmpdir(&name);
    let include = format!("{name}.*");
    let mut tool = Tool::new(&dir, "tool", &my_config(&name, &[&include], "").replace("log_level: info", "log_level: warn"));
    measure_dump(&mut tool, &name, dump_rows, &mut r).await;
    let n = name.clone();
    let conn = std::sync::Arc::new(tokio::sync::Mutex::new(my().await));
    let insert = move |first: i64, last: i64| {
        let (name, conn) = (n.clone(), conn.clone());
        async move {
            my_exec(
                &mut *conn.lock().await,
                &format!(
                    "INSERT INTO {name}.b SELECT seq, seq, CONCAT('row-', seq, '-xxxxxxxxxxxxxxxxxxxxxxxx'), CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) FROM {name}.seq_{first}_to_{last}"
                ),
            )
            .await;
        }
    };
    measure_stream(&tool, &name, stream_rows, insert, &mut r).await;
    tool.term();
    (r.raw_after, r.raw_watched_after) = (raw_etcd_rate(&name, false).await, raw_etcd_rate(&name, true).await);
    r.print("bench-sync-mysql (MariaDB 10.11 -> etcd 3.4)");
    my_cleanup(&[&name], &name).await;
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}


