//! Benchmarks (ignored by default; `make bench-sync-pg`, `make bench-sync-mysql`).
//!
//! `BENCH_ROUNDS` rounds (default 3); in each the tool starts on an empty prefix and
//! 1. dumps `BENCH_ROWS` rows (default 1_000_000; peak RSS sampled meanwhile),
//! 2. streams a backlog: stopped with SIGSTOP while `BENCH_BACKLOG_ROWS` rows (default
//!    200_000) are committed in the source, continued, timed until its own
//!    `sync_rows_applied_total` (counted after etcd's commit) shows them all — the tool's
//!    stream throughput,
//! 3. streams live while `BENCH_STREAM_ROWS` rows (default 50_000) are committed as fast as one
//!    connection can, seen by an etcd watcher (rows/s and lag p50/p99 = watch event time − the
//!    row's insert time).
//!
//! Around every phase, with the tool idle, the raw etcd write rate is measured with the tool's
//! transaction shape (`raw_etcd_rate`: same puts per transaction, transactions in flight, key
//! length and value size; for the live phase with the same watcher attached and the source
//! committing rows as fast into a table the tool does not follow). Each
//! phase's ratio is its rate over the mean of the raw rates just before and after it, because etcd's
//! own rate drifts between measurements; the medians over the rounds are printed with the
//! targets. `BENCH_RAW_ROWS` (default 200_000) rows per raw measurement;
//! `BENCH_TXNS_IN_FLIGHT` (default 4) sets `sync.txns_in_flight` and the baseline's depth;
//! `BENCH_KEEP=1` keeps the tool's logs.

mod common;
#[path = "bench/snapshot.rs"]
mod snapshot;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use etcd_client::{GetOptions, Txn, TxnOp, WatchOptions};
use futures_util::stream::{FuturesOrdered, StreamExt};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Data operations per etcd transaction: the tool's default `sync.max_txn_ops` (128) minus the
/// one it keeps for a checkpoint put.
const BATCH: usize = 127;
/// etcd transactions in flight at once, for the tool (`sync.txns_in_flight`) and the baseline
/// alike: `BENCH_TXNS_IN_FLIGHT`, by default the tool's default (4).
fn in_flight() -> usize {
    env_usize("BENCH_TXNS_IN_FLIGHT", 4)
}
/// Timestamp of the dumped rows; streamed rows carry their insert time instead.
const DUMP_TS: i64 = 1_700_000_000_000;

/// Raw etcd write rate: transactions of BATCH puts, `in_flight()` at a time, keys as long as the
/// tool's (`/<name>/<name>.r/<6-digit id>`; the tool writes `/<name>/<name>.b/<id>`, template
/// `/{path}/{schema}.{table}/{pk}`) and values of the benchmark rows' size, on a settled etcd;
/// its keys are removed afterwards. `watched`: the same watcher as the stream measurement's is
/// attached (etcd spends CPU on every event it sends), and the rate runs until it saw every row.
/// `load`: the live measurement's mirror image: as many rows as it streams are written, while
/// the source commits as many, as fast as it can, into a table the tool does not follow (the
/// tool runs and skips them), so that etcd gets the CPU the source leaves it.
async fn raw_etcd_rate(name: &str, watched: bool, load: Option<(&Insert, usize)>) -> f64 {
    let rows = load.map_or_else(
        || env_usize("BENCH_RAW_ROWS", 200_000),
        |(_, n)| n / PER_TXN * PER_TXN,
    );
    raw_etcd_rate_of(name, watched, load, rows).await
}

/// [`raw_etcd_rate`] for `rows` rows.
async fn raw_etcd_rate_of(
    name: &str,
    watched: bool,
    load: Option<(&Insert, usize)>,
    rows: usize,
) -> f64 {
    let e = etcd().await;
    let prefix = format!("/{name}/{name}.r/");
    let value =
        br#"{"id":123456,"v":123456,"t":"row-123456-xxxxxxxxxxxxxxxxxxxxxxxx","ts":1700000000000}"#
            .to_vec();
    settle_etcd().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = load.map(|(insert, _)| {
        let (insert, stop) = (insert.clone(), stop.clone());
        tokio::spawn(async move {
            // ids go on from the previous loaded measurement
            static NEXT_ID: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
            for _ in 0..rows / PER_TXN {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let id = NEXT_ID.fetch_add(PER_TXN as i64, std::sync::atomic::Ordering::Relaxed);
                insert(false, id, id + PER_TXN as i64 - 1).await;
            }
        })
    });
    let watcher = if watched {
        let mut ws = e
            .watch_client()
            .watch(prefix.clone(), Some(WatchOptions::new().with_prefix()))
            .await
            .unwrap();
        Some(tokio::spawn(async move {
            watch_rows(&mut ws, rows, DUMP_TS).await
        }))
    } else {
        None
    };
    let t0 = Instant::now();
    let mut inflight = FuturesOrdered::new();
    let mut i = 0;
    while i < rows || !inflight.is_empty() {
        while i < rows && inflight.len() < in_flight() {
            let n = BATCH.min(rows - i);
            let ops: Vec<TxnOp> = (i..i + n)
                .map(|k| TxnOp::put(format!("{prefix}{}", 100_000 + k), value.clone(), None))
                .collect();
            let mut c = e.clone();
            inflight.push_back(async move { c.txn(Txn::new().and_then(ops)).await.unwrap() });
            i += n;
        }
        inflight.next().await;
    }
    // watched: timed like the live measurement, from the first to the last row the watcher saw
    let secs = match watcher {
        Some(w) => {
            let seen = w.await.unwrap();
            seen.last.duration_since(seen.first)
        }
        None => t0.elapsed(),
    };
    let rate = rows as f64 / secs.as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(l) = loader {
        l.await.unwrap();
    }
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
        let resp = tokio::time::timeout(Duration::from_secs(60), ws.message())
            .await
            .expect("stream stalled")
            .unwrap()
            .unwrap();
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
    Seen {
        first: first.unwrap_or(last),
        last,
        lags,
        rows: seen.len(),
    }
}

/// Compacts etcd's history up to now and defragments its database, so that every
/// measurement starts from the same state. Deleted keys stay in etcd's history until a
/// compaction, and until then every write costs etcd about twice the CPU (measured on 3.4:
/// 50k deleted keys halve the write rate); a compaction that just freed many pages slows the
/// next writes too, until a defragmentation.
async fn settle_etcd() {
    let mut e = etcd().await;
    let rev = e
        .get("/", Some(GetOptions::new().with_count_only()))
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    if let Err(err) = e
        .compact(
            rev,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
    {
        // nothing written since the last compaction
        assert!(
            err.to_string().contains("compacted"),
            "etcd compaction: {err}"
        );
    }
    e.defragment().await.unwrap();
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
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

/// CPU seconds of the processes named `name` whose command line contains `arg` (the test
/// services: one etcd member, the MariaDB on 3301, PostgreSQL 15's backends). Backends that
/// exit meanwhile are not counted; the snapshot's and the stream's stay.
fn cpu_of(name: &str, arg: &str) -> f64 {
    let Ok(d) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    d.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            (comm.trim() == name && String::from_utf8_lossy(&cmd).contains(arg)).then_some(pid)
        })
        .map(cpu_secs)
        .sum()
}

/// CPU seconds so far of the tool (`pid`), etcd and the database server `db` (as [`cpu_of`]
/// finds it): sampled around a phase, where its time went.
fn cpu_split(pid: u32, db: (&str, &str)) -> [f64; 3] {
    [cpu_secs(pid), cpu_of("etcd", ""), cpu_of(db.0, db.1)]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// One round: the tool dumps the table into an empty prefix, streams a backlog, then live rows.
#[derive(Default)]
struct Round {
    /// Raw etcd write rate (unwatched) before the dump, between it and the backlog, after it.
    raw: [f64; 3],
    /// Raw etcd write rate with the live measurement's watcher, before and after it.
    raw_watched: [f64; 2],
    /// The same, as many rows as the live measurement, while the source commits as many rows
    /// at full speed into a table the tool skips.
    raw_loaded: [f64; 2],
    dump_rows: usize,
    dump_secs: f64,
    peak_kb: u64,
    backlog: Rate,
    /// The tool's etcd transactions during the backlog, and the CPU seconds of the tool, etcd
    /// and the database meanwhile: where a backlog's time goes.
    backlog_txns: u64,
    backlog_cpu: [f64; 3],
    live: Rate,
    /// Time the workload took to commit the live rows in the source.
    source_secs: f64,
    p50: f64,
    p99: f64,
    /// CPU seconds the tool used for the dump / for the live stream.
    dump_cpu: f64,
    stream_cpu: f64,
}

#[derive(Default)]
struct Rate {
    rows: usize,
    secs: f64,
}

impl Rate {
    fn per_s(&self) -> f64 {
        self.rows as f64 / self.secs.max(1e-3)
    }
}

/// The middle value; the mean of the two middle ones for an even count (not the higher one).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

impl Round {
    fn dump_rate(&self) -> f64 {
        self.dump_rows as f64 / self.dump_secs
    }
    /// Each measurement of the tool is divided by the mean of the raw rates measured just
    /// before and just after it (etcd's own rate drifts by ±20 % within minutes).
    fn ratios(&self) -> [f64; 3] {
        [
            self.dump_rate() / mean(&self.raw[..2]),
            self.live.per_s() / mean(&self.raw_loaded),
            self.backlog.per_s() / mean(&self.raw[1..]),
        ]
    }
}

/// Prints every round and the medians over the rounds.
fn print_report(title: &str, rounds: &[Round], load_start: &str) {
    println!(
        "=== {title}, {BATCH} rows per etcd txn, {} txns in flight, {} rounds ===",
        in_flight(),
        rounds.len()
    );
    for (i, r) in rounds.iter().enumerate() {
        let [d, l, b] = r.ratios();
        println!(
            "round {}: dump {} rows {:.0} rows/s (raw {:.0}/{:.0}: {d:.2}); backlog {:.0} rows/s (raw {:.0}/{:.0}: {b:.2}); live {:.0} rows/s, source {:.0} rows/s, lag p50 {:.0} ms p99 {:.0} ms (raw watched {:.0}/{:.0}, watched with source load {:.0}/{:.0}: {l:.2}); tool CPU dump {:.1} us/row, live {:.1} us/row; backlog {:.0} rows per etcd txn, CPU us/row tool {:.1} etcd {:.1} db {:.1}; peak RSS {:.1} MB",
            i + 1,
            r.dump_rows,
            r.dump_rate(),
            r.raw[0],
            r.raw[1],
            r.backlog.per_s(),
            r.raw[1],
            r.raw[2],
            r.live.per_s(),
            r.live.rows as f64 / r.source_secs,
            r.p50,
            r.p99,
            r.raw_watched[0],
            r.raw_watched[1],
            r.raw_loaded[0],
            r.raw_loaded[1],
            r.dump_cpu * 1e6 / r.dump_rows as f64,
            r.stream_cpu * 1e6 / r.live.rows.max(1) as f64,
            r.backlog.rows as f64 / r.backlog_txns.max(1) as f64,
            r.backlog_cpu[0] * 1e6 / r.backlog.rows.max(1) as f64,
            r.backlog_cpu[1] * 1e6 / r.backlog.rows.max(1) as f64,
            r.backlog_cpu[2] * 1e6 / r.backlog.rows.max(1) as f64,
            r.peak_kb as f64 / 1024.0
        );
    }
    let med = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    println!("--- medians over the rounds ---");
    println!(
        "raw etcd write rate        : {:>8.0} rows/s  (with the live measurement's watcher attached: {:.0}; and the source busy: {:.0})",
        med(&|r| mean(&r.raw)),
        med(&|r| mean(&r.raw_watched)),
        med(&|r| mean(&r.raw_loaded))
    );
    println!(
        "dump                       : {:>8.0} rows/s  ratio {:.2} (target >= 0.8)",
        med(&|r| r.dump_rate()),
        med(&|r| r.ratios()[0])
    );
    println!(
        "stream, backlog            : {:>8.0} rows/s  ratio {:.2} (target >= 0.8)",
        med(&|r| r.backlog.per_s()),
        med(&|r| r.ratios()[2])
    );
    println!(
        "stream, live               : {:>8.0} rows/s  ratio {:.2} (target >= 0.8) to the raw rate under the same watcher and source load (source committed {:.0} rows/s)",
        med(&|r| r.live.per_s()),
        med(&|r| r.ratios()[1]),
        med(&|r| r.live.rows as f64 / r.source_secs)
    );
    println!(
        "live lag                   : p50 {:.0} ms  p99 {:.0} ms",
        med(&|r| r.p50),
        med(&|r| r.p99)
    );
    println!(
        "peak RSS during dump       : {:.1} MB (target <= 100 MB, highest of the rounds)",
        rounds.iter().map(|r| r.peak_kb).max().unwrap_or(0) as f64 / 1024.0
    );
    println!(
        "load average               : start {load_start}, end {}",
        loadavg()
    );
}

/// Starts the tool and waits until its dump finished (checkpoint in phase `stream`) and all
/// `dump_rows` keys are in etcd: fills the dump part of `r`.
async fn measure_dump(tool: &mut Tool, name: &str, dump_rows: usize, r: &mut Round) {
    let mut e = etcd().await;
    let t0 = Instant::now();
    tool.start();
    let pid = tool.pid().unwrap();
    let state = format!("/sync-tool/{name}");
    loop {
        r.peak_kb = r.peak_kb.max(vm_hwm_kb(pid).unwrap_or(0));
        if let Ok(resp) = e.get(format!("{state}/checkpoint"), None).await {
            if resp.kvs().first().is_some_and(|kv| {
                kv.value_str()
                    .unwrap_or("")
                    .contains("\"phase\":\"stream\"")
            }) {
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
    let n = e
        .get(
            format!("/{name}/"),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count();
    assert_eq!(n as usize, dump_rows);
}

/// Rows inserted by the stream measurements, in source transactions of this many rows.
const PER_TXN: usize = 100;

/// Inserts `rows` rows from id `first` on in source transactions of `PER_TXN`, each row
/// stamped with its insert time (`ts`, ms); returns the seconds it took.
async fn insert_rows(insert: &Insert, first: i64, rows: usize) -> f64 {
    let t0 = Instant::now();
    let mut id = first;
    for _ in 0..rows / PER_TXN {
        insert(true, id, id + PER_TXN as i64 - 1).await;
        id += PER_TXN as i64;
    }
    t0.elapsed().as_secs_f64()
}

/// Live: the tool streams while `insert` commits `rows` rows as fast as one connection can;
/// rows/s from the first to the last row seen by an etcd watcher, lag = watch event − `ts`.
async fn measure_live(tool: &Tool, name: &str, rows: usize, insert: &Insert, r: &mut Round) {
    let e = etcd().await;
    let pid = tool.pid().unwrap();
    let cpu0 = cpu_secs(pid);
    let mut ws = e
        .watch_client()
        .watch(format!("/{name}/"), Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let target = rows / PER_TXN * PER_TXN;
    let insert = insert.clone();
    let writer = tokio::spawn(async move { insert_rows(&insert, 10_000_000, target).await });
    let mut seen = watch_rows(&mut ws, target, DUMP_TS + 1).await;
    r.source_secs = writer.await.unwrap();
    r.stream_cpu = cpu_secs(pid) - cpu0;
    r.live = Rate {
        rows: seen.rows,
        secs: seen.last.duration_since(seen.first).as_secs_f64(),
    };
    r.p50 = pct(&mut seen.lags, 0.5);
    r.p99 = pct(&mut seen.lags, 0.99);
}

/// Backlog: the tool is stopped (SIGSTOP) while `rows` rows are committed, then continued;
/// rows/s from the continue until the tool's `sync_rows_applied_total` (counted after etcd
/// committed) shows them all. This is the tool's own stream throughput: the source's inserts
/// are over, and no watcher takes CPU (the rows' presence is checked afterwards).
async fn measure_backlog(
    tool: &Tool,
    name: &str,
    metrics: &str,
    rows: usize,
    insert: &Insert,
    db: (&str, &str),
    r: &mut Round,
) {
    let target = rows / PER_TXN * PER_TXN;
    let first = 20_000_000i64;
    let before = rows_applied(metrics).await;
    let txns0 = tool_metric(metrics, "sync_etcd_txns_total").await;
    tool.signal("STOP");
    insert_rows(insert, first, target).await;
    let pid = tool.pid().unwrap();
    let cpu0 = cpu_split(pid, db);
    let t0 = Instant::now();
    tool.signal("CONT");
    while rows_applied(metrics).await < before + target as u64 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "backlog not applied"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    r.backlog = Rate {
        rows: target,
        secs: t0.elapsed().as_secs_f64(),
    };
    let cpu1 = cpu_split(pid, db);
    r.backlog_cpu = [0, 1, 2].map(|i| cpu1[i] - cpu0[i]);
    r.backlog_txns = tool_metric(metrics, "sync_etcd_txns_total").await - txns0;
    let mut e = etcd().await;
    let n = e
        .get(
            format!("/{name}/"),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count();
    assert_eq!(
        n as usize,
        r.dump_rows + target,
        "dumped and backlog rows in etcd"
    );
}

/// `sync_rows_applied_total` from the tool's metrics endpoint.
async fn rows_applied(addr: &str) -> u64 {
    tool_metric(addr, "sync_rows_applied_total").await
}

/// A counter from the tool's metrics endpoint.
async fn tool_metric(addr: &str, name: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr)
        .await
        .expect("tool metrics");
    c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut body = String::new();
    c.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in the tool's metrics"))
}

/// The tests' configuration, quieter, and with a lease that outlives the etcd defragmentation
/// between measurements (which blocks etcd for seconds: with the tests' 2 s lease the tool
/// stepped down and re-elected itself in the middle of measurements).
fn bench_config(yaml: &str) -> String {
    yaml.replace("log_level: info", "log_level: warn").replace(
        "lease_ttl: 2s",
        &format!("lease_ttl: 30s\n  txns_in_flight: {}", in_flight()),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Inserts rows `first..=last` in one source transaction, each stamped with its insert time:
/// `followed` into the benchmark table, else into a table the tool does not follow.
type Insert = std::sync::Arc<
    dyn Fn(bool, i64, i64) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync,
>;

/// What a benchmark needs of its source database.
struct Source<R> {
    insert: Insert,
    /// The database server's processes, as [`cpu_of`] finds them.
    db: (&'static str, &'static str),
    /// Between rounds, with the tool stopped: removes the streamed rows and whatever makes the
    /// next start resume (slot, binlog position), so the next round dumps again.
    reset: R,
}

/// `BENCH_ROUNDS` rounds (default 3), each a fresh start of the tool that dumps `BENCH_ROWS`
/// rows, streams `BENCH_BACKLOG_ROWS` rows as a backlog and `BENCH_STREAM_ROWS` rows live,
/// with the raw etcd rate measured between these phases (the tool idle), on the same etcd.
async fn run_rounds<R, RF>(name: &str, yaml: &str, src: Source<R>) -> Vec<Round>
where
    R: Fn() -> RF,
    RF: std::future::Future<Output = ()>,
{
    let dump_rows = env_usize("BENCH_ROWS", 1_000_000);
    let stream_rows = env_usize("BENCH_STREAM_ROWS", 50_000);
    // as many as a raw measurement: a backlog is applied in about a second otherwise, and one
    // etcd stall of a few hundred ms would decide the result
    let backlog_rows = env_usize("BENCH_BACKLOG_ROWS", 200_000);
    let insert = src.insert;
    let dir = tmpdir(name);
    let mut rounds = Vec::new();
    for i in 0..env_usize("BENCH_ROUNDS", 3) {
        let mut r = Round::default();
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut tool = Tool::new(
            &dir,
            &format!("tool{i}"),
            &format!("{yaml}metrics: {{address: \"{metrics}\"}}\n"),
        );
        r.raw[0] = raw_etcd_rate(name, false, None).await;
        measure_dump(&mut tool, name, dump_rows, &mut r).await;
        r.raw[1] = raw_etcd_rate(name, false, None).await;
        measure_backlog(&tool, name, &metrics, backlog_rows, &insert, src.db, &mut r).await;
        r.raw[2] = raw_etcd_rate(name, false, None).await;
        r.raw_watched[0] = raw_etcd_rate(name, true, None).await;
        r.raw_loaded[0] = raw_etcd_rate(name, true, Some((&insert, stream_rows))).await;
        measure_live(&tool, name, stream_rows, &insert, &mut r).await;
        r.raw_loaded[1] = raw_etcd_rate(name, true, Some((&insert, stream_rows))).await;
        r.raw_watched[1] = raw_etcd_rate(name, true, None).await;
        tool.term();
        (src.reset)().await;
        let mut e = etcd().await;
        etcd_clear(&mut e, &format!("/{name}/")).await;
        etcd_clear(&mut e, &format!("/sync-tool/{name}/")).await;
        rounds.push(r);
    }
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    rounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_pg() {
    let dump_rows = env_usize("BENCH_ROWS", 1_000_000);
    let name = unique("bench");
    let c = std::sync::Arc::new(pg("testdb").await);
    println!("preparing {dump_rows} rows ...");
    c.batch_execute(&format!(
        "CREATE SCHEMA {name}; CREATE TABLE {name}.b (id bigint PRIMARY KEY, v int, t text, ts bigint);
         CREATE SCHEMA {name}_x; CREATE TABLE {name}_x.b (id bigint PRIMARY KEY, v int, t text, ts bigint);
         INSERT INTO {name}.b SELECT i, i, 'row-' || i || '-xxxxxxxxxxxxxxxxxxxxxxxx', {DUMP_TS} FROM generate_series(1, {dump_rows}) i;"
    ))
    .await
    .unwrap();
    let load_start = loadavg();
    let (n, conn) = (name.clone(), c.clone());
    let insert: Insert = std::sync::Arc::new(move |followed: bool, first: i64, last: i64| {
        let (conn, table) = (
            conn.clone(),
            if followed {
                format!("{n}.b")
            } else {
                format!("{n}_x.b")
            },
        );
        Box::pin(async move {
            conn.batch_execute(&format!(
                "INSERT INTO {table} SELECT i, i, 'row-' || i || '-xxxxxxxxxxxxxxxxxxxxxxxx', (extract(epoch from clock_timestamp()) * 1000)::bigint FROM generate_series({first}, {last}) i"
            ))
            .await
            .unwrap();
        })
    });
    let reset = || async {
        c.batch_execute(&format!(
            "DELETE FROM {name}.b WHERE id > {dump_rows}; TRUNCATE {name}_x.b"
        ))
        .await
        .unwrap();
        drop_slot(&c, &name).await;
    };
    let yaml = bench_config(&pg_config(&name, &name, &[&format!("{name}.*")], ""));
    let rounds = run_rounds(
        &name,
        &yaml,
        Source {
            insert,
            db: ("postgres", ""),
            reset,
        },
    )
    .await;
    print_report(
        "bench-sync-pg (PostgreSQL 15 -> etcd 3.4)",
        &rounds,
        &load_start,
    );
    pg_cleanup(&name, &[&name, &format!("{name}_x")], &name).await;
}

/// Drops the replication slot once its walsender is gone.
async fn drop_slot(c: &tokio_postgres::Client, slot: &str) {
    for _ in 0..100 {
        let r = c.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", &[&slot]).await;
        let left = c
            .query(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .map(|r| r.len())
            .unwrap_or(1);
        if r.is_ok() && left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("replication slot {slot} still active");
}

/// MariaDB → etcd: the same rounds as [`bench_pg`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_mysql() {
    let dump_rows = env_usize("BENCH_ROWS", 1_000_000);
    let name = unique("mybench");
    let mut c = my().await;
    println!("preparing {dump_rows} rows ...");
    my_exec(
        &mut c,
        &format!(
            "CREATE DATABASE {name};
             CREATE TABLE {name}.b (id BIGINT PRIMARY KEY, v INT, t VARCHAR(64), ts BIGINT);
             CREATE TABLE {name}.x (id BIGINT PRIMARY KEY, v INT, t VARCHAR(64), ts BIGINT);
             INSERT INTO {name}.b SELECT seq, seq, CONCAT('row-', seq, '-xxxxxxxxxxxxxxxxxxxxxxxx'), {DUMP_TS} FROM {name}.seq_1_to_{dump_rows}"
        ),
    )
    .await;
    let load_start = loadavg();
    let conn = std::sync::Arc::new(tokio::sync::Mutex::new(c));
    let (n, cn) = (name.clone(), conn.clone());
    let insert: Insert = std::sync::Arc::new(move |followed: bool, first: i64, last: i64| {
        let (name, conn, table) = (n.clone(), cn.clone(), if followed { "b" } else { "x" });
        Box::pin(async move {
            my_exec(
                &mut *conn.lock().await,
                &format!(
                    "INSERT INTO {name}.{table} SELECT seq, seq, CONCAT('row-', seq, '-xxxxxxxxxxxxxxxxxxxxxxxx'), CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) FROM {name}.seq_{first}_to_{last}"
                ),
            )
            .await;
        })
    });
    // the next start finds no checkpoint (cleared with the state keys) and dumps again
    let reset = || async {
        my_exec(
            &mut *conn.lock().await,
            &format!("DELETE FROM {name}.b WHERE id > {dump_rows}; TRUNCATE {name}.x"),
        )
        .await
    };
    let include = format!("{name}.b");
    let yaml = bench_config(&my_config(&name, &[&include], ""));
    let rounds = run_rounds(
        &name,
        &yaml,
        Source {
            insert,
            db: ("mariadbd", "3301/"),
            reset,
        },
    )
    .await;
    print_report(
        "bench-sync-mysql (MariaDB 10.11 -> etcd 3.4)",
        &rounds,
        &load_start,
    );
    my_cleanup(&[&name], &name).await;
}
