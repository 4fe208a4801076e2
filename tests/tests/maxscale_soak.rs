//! Soak: sysbench through each router in a real MaxScale of its own for SOAK_SECONDS (default
//! 120; `make soak` runs 1800), the mirror exporting to a file and to Kafka, with a stream of
//! short sessions beside the long ones. MaxScale's RSS is sampled every few seconds; after a
//! warm-up its least-squares slope must stay below what a leak of 16 bytes per statement would
//! give. sysbench sees no error, the mirror drops no report, and every session ends.
//!
//! Runs when MAXSCALE_BIN and MAXSCALE_LIBDIR are set (modules built with the `maxscale`
//! feature). The servers are private ones; the Kafka broker is the shared one.

use router_tests::env::{self, unique};
use router_tests::maxscale::{self, Installation, MaxScale};
use router_tests::private_server::PrivateServer;
use router_tests::reliability::{assert_clean, mirror_loads, servers, service, start, Load};
use router_tests::sysbench::{Outcome, Tables};
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes per statement a leak would need to fail the test.
const LEAK_BYTES_PER_STATEMENT: f64 = 16.0;
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

fn soak_seconds() -> u64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120)
}

/// Still in the [maxscale] section: a small parser cache, so that MaxScale's own cache of
/// statement classifications (15 % of the memory by default) is full after the warm-up and
/// does not look like a leak.
const MAXSCALE_SECTION: &str = "query_classifier_cache_size=1Mi\n\n";

/// One short session per event (connect, one point select, disconnect), at `rate` per second.
fn short_sessions(t: &Tables, port: u16, rate: u32) -> Load {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/short_sessions.lua");
    let mut l = Load::new(t, &script.display().to_string(), port, 1);
    l.extra.push(format!("--rate={rate}"));
    l
}

/// Least-squares slope of (seconds, kB) in MB per hour.
fn slope_mb_per_hour(samples: &[(f64, u64)]) -> f64 {
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let sxy: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 as f64 - my)).sum();
    let sxx: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    // kB per second -> MB per hour
    sxy / sxx * 3600.0 / 1024.0
}

struct Soaked {
    line: String,
}

/// Runs `loads` through `ms` for `seconds`, sampling its RSS and sessions; checks and
/// describes the run.
fn soak(router: &str, ms: &MaxScale, loads: &[Load], ports: &[u16], seconds: u64) -> Soaked {
    let started = Instant::now();
    let runs = start(loads, seconds);
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut max_sessions = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(SAMPLE_EVERY);
        if !ms.alive() {
            ms.fail(&format!("soak {router}"), "MaxScale is not running");
        }
        if let Some(kb) = ms.rss_kb() {
            samples.push((started.elapsed().as_secs_f64(), kb));
        }
        max_sessions = max_sessions.max(ms.sessions().unwrap_or(0));
    }
    let outcomes: Vec<Outcome> = runs.into_iter().map(|r| r.wait()).collect();
    for (i, o) in outcomes.iter().enumerate() {
        assert_clean(ms, &format!("soak {router}, load {i}"), o);
    }
    ms.healthy(ports)
        .unwrap_or_else(|e| ms.fail(&format!("soak {router}, at the end"), &e));
    if ms.log().contains("alert") {
        ms.fail(&format!("soak {router}"), "MaxScale logged an alert");
    }

    let warm_up = (seconds as f64 / 5.0).max(30.0);
    let kept: Vec<(f64, u64)> = samples.iter().copied().filter(|s| s.0 >= warm_up).collect();
    assert!(
        kept.len() >= 10,
        "{} RSS samples after the warm-up",
        kept.len()
    );
    let slope = slope_mb_per_hour(&kept);
    let statements: u64 = outcomes.iter().map(|o| o.queries).sum();
    let sessions: u64 = outcomes
        .iter()
        .zip(loads)
        .filter(|(_, l)| l.script.ends_with(".lua"))
        .map(|(o, _)| o.transactions)
        .sum();
    let per_hour = statements as f64 / seconds as f64 * 3600.0;
    let bound = per_hour * LEAK_BYTES_PER_STATEMENT / (1024.0 * 1024.0);
    let deadlocks: u64 = outcomes.iter().map(|o| o.ignored_errors).sum();
    let mb = |kb: u64| kb as f64 / 1024.0;
    let line = format!(
        "soak {router}: {seconds} s, {}k statements ({sessions} short sessions), RSS {:.1}→{:.1} MB \
         (after {warm_up:.0} s warm-up: {:.1}→{:.1} MB, {:.1}–{:.1} MB), slope {slope:.1} MB/h (bound {bound:.0} MB/h = {LEAK_BYTES_PER_STATEMENT} B per statement), \
         0 errors ({deadlocks} deadlocks ignored), up to {max_sessions} sessions, 0 at the end",
        statements / 1000,
        mb(samples[0].1),
        mb(samples[samples.len() - 1].1),
        mb(kept[0].1),
        mb(kept[kept.len() - 1].1),
        mb(kept.iter().map(|s| s.1).min().unwrap()),
        mb(kept.iter().map(|s| s.1).max().unwrap()),
    );
    if slope > bound {
        ms.fail(&format!("soak {router}"), &format!("RSS grows: {line}"));
    }
    Soaked { line }
}

fn soak_mirror(inst: &Installation, seconds: u64) -> Soaked {
    let ours = inst.our_module("mirror");
    let (a, b) = (PrivateServer::start(), PrivateServer::start());
    let dbs = [
        Tables::new("sbsoak", 2, 5000),
        Tables::new("sbsoak_k", 2, 5000),
    ];
    for t in &dbs {
        t.prepare(a.port);
        t.prepare(b.port);
    }
    let topic = unique("soak_mirror");
    router_tests::kafka::create_topic(&topic);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mirror.jsonl");
    let (admin, p1) = maxscale::ports();
    let (_, p2) = maxscale::ports();
    let cnf = String::from(MAXSCALE_SECTION)
        + &servers(a.port, b.port)
        + &service(
            "MirrorFile",
            p1,
            &format!(
                "router=mirror\nmain=s1\nexporter=file\nfile={}",
                file.display()
            ),
        )
        + &service(
            "MirrorKafka",
            p2,
            &format!(
                "router=mirror\nmain=s1\nexporter=kafka\nkafka_broker={}\nkafka_topic={topic}",
                env::kafka_broker()
            ),
        );
    let ms = MaxScale::start(inst, admin, &cnf, &[("mirror", &ours)]);
    ms.wait_running("s1");
    ms.wait_running("s2");
    let ports = [p1, p2];
    let mut loads = mirror_loads(&ports, &dbs);
    loads.push(short_sessions(&dbs[0], p1, 10));
    loads.push(short_sessions(&dbs[1], p2, 10));
    let s = soak("mirror", &ms, &loads, &ports, seconds);
    for svc in ["MirrorFile", "MirrorKafka"] {
        let d = &ms.get(&format!("/v1/services/{svc}")).unwrap()["data"]["attributes"]
            ["router_diagnostics"];
        assert_eq!(d["reports_dropped"], 0, "{svc}: {d}");
        assert!(
            d["reports_exported"].as_u64().unwrap_or(0) > 1000,
            "{svc}: {d}"
        );
    }
    assert_eq!(
        router_tests::kafka::consume(&topic, 1).len(),
        1,
        "reports reached Kafka"
    );
    s
}

fn soak_schemarouter(inst: &Installation, seconds: u64) -> Soaked {
    let ours = inst.our_module("schemarouter");
    let (a, b) = (PrivateServer::start(), PrivateServer::start());
    let t = Tables::new("sbsoak", 2, 5000);
    t.prepare(a.port);
    b.root_sql("CREATE DATABASE other; CREATE TABLE other.t (id INT PRIMARY KEY)")
        .unwrap();
    let (admin, p1) = maxscale::ports();
    let cnf = String::from(MAXSCALE_SECTION)
        + &servers(a.port, b.port)
        + &service("Sharding", p1, "router=schemarouter\nauth_all_servers=true");
    let ms = MaxScale::start(inst, admin, &cnf, &[("schemarouter", &ours)]);
    ms.wait_running("s1");
    ms.wait_running("s2");
    let loads = [
        Load::new(&t, "oltp_read_write", p1, 2),
        short_sessions(&t, p1, 10),
    ];
    soak("schemarouter", &ms, &loads, &[p1], seconds)
}

/// Both routers at once, each in its own MaxScale (so each RSS is one router's).
#[test]
fn soak_both_routers() {
    let Some(inst) = maxscale::installation() else {
        eprintln!("skipped: MAXSCALE_BIN and MAXSCALE_LIBDIR are not set, so the routers were not soaked in MaxScale");
        return;
    };
    let seconds = soak_seconds();
    let inst = &inst;
    let lines = std::thread::scope(|s| {
        let m = s.spawn(move || soak_mirror(inst, seconds));
        let r = s.spawn(move || soak_schemarouter(inst, seconds));
        [m.join(), r.join()]
    });
    let mut failed = false;
    for l in lines {
        match l {
            Ok(s) => println!("{}", s.line),
            Err(_) => failed = true,
        }
    }
    assert!(!failed, "a soak failed (its panic is above)");
}

#[test]
fn slope_of_a_line() {
    let s: Vec<(f64, u64)> = (0..10).map(|i| (i as f64, 1000 + 2 * i as u64)).collect();
    // 2 kB per second
    assert!((slope_mb_per_hour(&s) - 2.0 * 3600.0 / 1024.0).abs() < 1e-9);
}
