//! `make bench-sync-snapshot`: the incremental snapshot of a `BENCH_ROWS`-row table (default
//! 1M) added to the selection of a running sync, while the stream of the table already selected
//! is fed at `BENCH_FEED_RATE` rows/s (default 1000: transactions of 10 rows every 10 ms, each
//! row stamped with its insert time). Printed: the snapshot's rows/s (the tool's own
//! `incremental snapshot: table done` line) over the raw etcd write rate measured just before and
//! after it (`raw_etcd_rate_of` as many rows as the snapshot, the tool idle), and the stream's lag p50/p99 (etcd watch event −
//! insert time) for the rows inserted while the snapshot ran. Targets: ratio ≥ 0.8, p99 ≤ 100 ms.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;

/// PostgreSQL: the added table `b`, the streamed table `s`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_snapshot_pg() {
    let rows = env_usize("BENCH_ROWS", 1_000_000);
    let name = unique("snapb");
    let c = Arc::new(pg("testdb").await);
    println!("preparing {rows} rows ...");
    c.batch_execute(&format!(
        "CREATE SCHEMA {name}; CREATE TABLE {name}.s (id bigint PRIMARY KEY, v int, t text, ts bigint);
         CREATE TABLE {name}.b (id bigint PRIMARY KEY, v int, t text, ts bigint);
         INSERT INTO {name}.b SELECT i, i, 'row-' || i || '-xxxxxxxxxxxxxxxxxxxxxxxx', {DUMP_TS} FROM generate_series(1, {rows}) i;"
    ))
    .await
    .unwrap();
    let (n, conn) = (name.clone(), c.clone());
    let feed: Insert = Arc::new(move |_, first: i64, last: i64| {
        let (conn, n) = (conn.clone(), n.clone());
        Box::pin(async move {
            conn.batch_execute(&format!(
                "INSERT INTO {n}.s SELECT i, i, 'row-' || i || '-xxxxxxxxxxxxxxxxxxxxxxxx', (extract(epoch from clock_timestamp()) * 1000)::bigint FROM generate_series({first}, {last}) i"
            ))
            .await
            .unwrap();
        })
    });
    let cfg = |tables: &[String]| {
        let t: Vec<&str> = tables.iter().map(String::as_str).collect();
        snapshot_config(bench_config(&pg_config(&name, &name, &t, "")))
    };
    let (s, b) = (format!("{name}.s"), format!("{name}.b"));
    let r = snapshot_round(
        ("postgres", ""),
        &name,
        &cfg(std::slice::from_ref(&s)),
        &cfg(&[s, b]),
        rows,
        feed,
    )
    .await;
    r.print("bench-sync-snapshot PostgreSQL 15 -> etcd 3.4");
    pg_cleanup(&name, &[&name], &name).await;
}

/// MariaDB: the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_snapshot_mysql() {
    use mysql_async::prelude::Queryable;
    let rows = env_usize("BENCH_ROWS", 1_000_000);
    let name = unique("snapb");
    let mut c = my().await;
    println!("preparing {rows} rows ...");
    my_exec(
        &mut c,
        &format!(
            "CREATE DATABASE {name};
             CREATE TABLE {name}.s (id BIGINT PRIMARY KEY, v INT, t TEXT, ts BIGINT);
             CREATE TABLE {name}.b (id BIGINT PRIMARY KEY, v INT, t TEXT, ts BIGINT);
             INSERT INTO {name}.b SELECT seq, seq, CONCAT('row-', seq, '-xxxxxxxxxxxxxxxxxxxxxxxx'), {DUMP_TS} FROM {name}.seq_1_to_{rows}"
        ),
    )
    .await;
    let n = name.clone();
    let pool = mysql_async::Pool::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(MY_PORT)
            .user(Some("app"))
            .pass(Some("apppass"))
            .prefer_socket(false),
    );
    let feed: Insert = Arc::new(move |_, first: i64, last: i64| {
        let (pool, n) = (pool.clone(), n.clone());
        Box::pin(async move {
            let mut c = pool.get_conn().await.unwrap();
            c.query_drop(format!(
                "INSERT INTO {n}.s SELECT seq, seq, CONCAT('row-', seq, '-xxxxxxxxxxxxxxxxxxxxxxxx'), CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) FROM {n}.seq_{first}_to_{last}"
            ))
            .await
            .unwrap();
        })
    });
    let cfg = |tables: &[String]| {
        let t: Vec<&str> = tables.iter().map(String::as_str).collect();
        snapshot_config(bench_config(&my_config(&name, &t, "")))
    };
    let (s, b) = (format!("{name}.s"), format!("{name}.b"));
    let r = snapshot_round(
        ("mariadbd", "3301/"),
        &name,
        &cfg(std::slice::from_ref(&s)),
        &cfg(&[s, b]),
        rows,
        feed,
    )
    .await;
    r.print("bench-sync-snapshot MariaDB 10.11 -> etcd 3.4");
    my_cleanup(&[&name], &name).await;
}

/// Logs at info (the bench reads the tool's `table done` line); `BENCH_SNAPSHOT_CHUNK` sets
/// `sync.snapshot_chunk` (default: the tool's).
fn snapshot_config(yaml: String) -> String {
    let yaml = yaml.replace("log_level: warn", "log_level: info");
    match std::env::var("BENCH_SNAPSHOT_CHUNK") {
        Ok(n) => yaml.replace(
            "  txns_in_flight:",
            &format!("  snapshot_chunk: {n}\n  txns_in_flight:"),
        ),
        Err(_) => yaml,
    }
}

/// Rows of each raw measurement: as many as the snapshot writes (etcd's rate falls as its
/// key count grows: on this machine ≈ 185k rows/s for 200k rows, ≈ 155k for 1M), unless
/// `BENCH_RAW_ROWS` says otherwise.
fn raw_rows(snapshot_rows: usize) -> usize {
    env_usize("BENCH_RAW_ROWS", snapshot_rows)
}

struct SnapshotResult {
    rows: usize,
    secs: f64,
    raw: [f64; 2],
    lags: Vec<f64>,
    fed: usize,
    /// CPU seconds of the tool, etcd and the source database while the snapshot ran.
    cpu: [f64; 3],
    /// The tool's account of the snapshot's time.
    timing: String,
}

impl SnapshotResult {
    fn print(mut self, title: &str) {
        let rate = self.rows as f64 / self.secs;
        let raw = mean(&self.raw);
        let ratio = rate / raw;
        let (p50, p99) = (pct(&mut self.lags, 0.5), pct(&mut self.lags, 0.99));
        println!("\n== {title} ==");
        println!(
            "raw etcd rate before/after : {:.0} / {:.0} rows/s",
            self.raw[0], self.raw[1]
        );
        println!(
            "incremental snapshot       : {} rows in {:.2} s = {rate:.0} rows/s, ratio {ratio:.2} (target >= 0.80) {}",
            self.rows,
            self.secs,
            if ratio >= 0.8 { "MET" } else { "MISSED" }
        );
        println!(
            "stream during the snapshot : {} rows, lag p50 {p50:.0} ms, p99 {p99:.0} ms (target p99 <= 100 ms) {}",
            self.fed,
            if p99 <= 100.0 { "MET" } else { "MISSED" }
        );
        let us = |s: f64| s * 1e6 / self.rows as f64;
        println!(
            "CPU during the snapshot    : tool {:.1} s ({:.1} µs/row), etcd {:.1} s ({:.1} µs/row), database {:.1} s ({:.1} µs/row), over {:.1} s",
            self.cpu[0],
            us(self.cpu[0]),
            self.cpu[1],
            us(self.cpu[1]),
            self.cpu[2],
            us(self.cpu[2]),
            self.secs
        );
        println!("the tool's timing          : {}", self.timing);
        println!("load average               : {}", loadavg());
    }
}

/// The tool syncs `before`'s selection, stops, and starts again with `after`'s, which adds the
/// `rows`-row table `b`, while `feed` inserts into the streamed table `s`.
async fn snapshot_round(
    db: (&str, &str),
    name: &str,
    before: &str,
    after: &str,
    rows: usize,
    feed: Insert,
) -> SnapshotResult {
    let dir = tmpdir(name);
    let state = format!("/sync-tool/{name}");
    let mut tool = Tool::new(&dir, "tool", before);
    tool.start();
    wait_streaming(&state, Duration::from_secs(60), &mut tool).await;
    tool.term();
    let raw0 = raw_etcd_rate_of(name, false, None, raw_rows(rows)).await;

    let e = etcd().await;
    let mut ws = e
        .watch_client()
        .watch(
            format!("/{name}/{name}.s/"),
            Some(WatchOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // (arrival ms, lag ms) of every streamed row
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok(Some(Ok(Some(resp)))) =
                    tokio::time::timeout(Duration::from_millis(200), ws.message())
                        .await
                        .map(Some)
                        .map_err(|_| ())
                        .map(|r| r.map(|x| x.map_err(|_| ())))
                else {
                    continue;
                };
                let now = now_ms();
                for ev in resp.events() {
                    if let Some(kv) = ev.kv() {
                        let v: serde_json::Value =
                            serde_json::from_slice(kv.value()).unwrap_or_default();
                        if let Some(ts) = v["ts"].as_i64() {
                            seen.push((ts as f64, (now - ts as f64).max(0.0)));
                        }
                    }
                }
            }
            seen
        })
    };
    let per_s = env_usize("BENCH_FEED_RATE", 1000);
    let feeder = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let per_tick = (per_s / 100).max(1) as i64;
            let mut id = 1i64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                feed(true, id, id + per_tick - 1).await;
                id += per_tick;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(&tool.cfg, after).unwrap();
    tool.start();
    let pid = tool.pid().unwrap();
    let (mut t0, t1);
    t0 = None;
    let mut cpu0 = [0.0; 3];
    loop {
        let cp = read_checkpoint(&state).await;
        if t0.is_none() && cp["snapshot"]["started"] == true {
            t0 = Some(now_ms());
            cpu0 = cpu_split(pid, db);
        }
        let all_selected = cp["selection"]
            .as_object()
            .is_some_and(|m| m.contains_key(&format!("{name}.b")));
        if all_selected && cp.get("snapshot").is_none() && t0.is_some() {
            t1 = now_ms();
            break;
        }
        assert!(tool.exited().is_none(), "{}", last_lines(&tool.log(), 30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu1 = cpu_split(pid, db);
    let cpu = [0, 1, 2].map(|i| cpu1[i] - cpu0[i]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    feeder.await.unwrap();
    let seen = watcher.await.unwrap();
    let t0 = t0.unwrap();
    let lags: Vec<f64> = seen
        .iter()
        .filter(|(ts, _)| *ts >= t0 && *ts <= t1)
        .map(|(_, l)| *l)
        .collect();
    // the tool's own timing of the table
    let log = tool.log();
    let done = log
        .lines()
        .find(|l| l.contains("incremental snapshot: table done"))
        .expect("snapshot done line")
        .to_string();
    let secs: f64 = done
        .split("secs=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .expect("secs in the done line");
    let timing = done
        .split("timing=")
        .nth(1)
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_default();
    tool.term();
    let mut e = etcd().await;
    let n = e
        .get(
            format!("/{name}/{name}.b/"),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count();
    assert_eq!(n as usize, rows, "keys of the added table");
    let raw1 = raw_etcd_rate_of(name, false, None, raw_rows(rows)).await;
    SnapshotResult {
        rows,
        secs,
        raw: [raw0, raw1],
        fed: lags.len(),
        lags,
        cpu,
        timing,
    }
}
