//! Faults under load, in a real MaxScale: sysbench oltp_read_write through each router while a
//! server it does not need (mirror: the non-main target; schemarouter: a shard without the
//! sysbench tables) is, in a loop, SIGKILLed and restarted, paused (SIGSTOP/SIGCONT), has its
//! connections KILLed from the server side, and is put into maintenance through the REST API.
//! sysbench must see no error at all (it stops at the first one it does not ignore, and
//! ignores only deadlocks and lock waits, its defaults); MaxScale stays up. Then the server a
//! session needs has its connections KILLed: the session ends with an error instead of
//! hanging. After the faults new sessions run at no less than half the rate measured before
//! them, and no session or backend connection is left. The servers are private ones.
//!
//! Runs when MAXSCALE_BIN and MAXSCALE_LIBDIR are set (modules built with the `maxscale`
//! feature); FAULT_SECONDS (default 30) is how long the faults go on.

use mysql::prelude::Queryable;
use router_tests::maxscale::{self, Installation, MaxScale};
use router_tests::private_server::PrivateServer;
use router_tests::reliability::{assert_clean, mirror_loads, run, servers, service, start, Load};
use router_tests::sysbench::{Outcome, Tables};
use std::path::Path;
use std::time::{Duration, Instant};

const RATE_SECONDS: u64 = 8;

fn installation(what: &str) -> Option<Installation> {
    let inst = maxscale::installation();
    if inst.is_none() {
        eprintln!("skipped: MAXSCALE_BIN and MAXSCALE_LIBDIR are not set, so {what} was not run under faults in MaxScale");
    }
    inst
}

fn fault_seconds() -> u64 {
    std::env::var("FAULT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// How many faults of each kind were injected.
#[derive(Default, Debug)]
struct Faults {
    sigkill_restart: u32,
    sigstop_sigcont: u32,
    kill_rounds: u32,
    killed_connections: usize,
    maintenance: u32,
}

impl Faults {
    fn total(&self) -> u32 {
        self.sigkill_restart + self.sigstop_sigcont + self.kill_rounds + self.maintenance
    }
}

/// Injects faults into `srv` (MaxScale's `s2`) in a loop for `seconds`; MaxScale must stay up.
fn fault_loop(ms: &MaxScale, srv: &mut PrivateServer, seconds: u64) -> Faults {
    let mut f = Faults::default();
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut step = 0u32;
    while Instant::now() < end {
        match step % 4 {
            0 => {
                f.killed_connections += srv.kill_connections(None);
                f.kill_rounds += 1;
            }
            1 => {
                srv.pause();
                std::thread::sleep(Duration::from_secs(2));
                srv.resume();
                f.sigstop_sigcont += 1;
            }
            2 => {
                // Every other time with force: MaxScale closes the server's connections too.
                let force = f.maintenance % 2 == 1;
                ms.server_state("s2", "maintenance", false, force)
                    .unwrap_or_else(|e| ms.fail("set maintenance", &e));
                std::thread::sleep(Duration::from_secs(2));
                ms.server_state("s2", "maintenance", true, false)
                    .unwrap_or_else(|e| ms.fail("clear maintenance", &e));
                ms.wait_running("s2");
                f.maintenance += 1;
            }
            _ => {
                srv.stop();
                std::thread::sleep(Duration::from_secs(1));
                srv.start_again();
                ms.wait_running("s2");
                f.sigkill_restart += 1;
            }
        }
        step += 1;
        std::thread::sleep(Duration::from_secs(1));
        if !ms.alive() {
            ms.fail(&format!("after {f:?}"), "MaxScale is not running");
        }
    }
    f
}

/// The server a session needs (`main`) has its connections KILLed: a client in a long
/// statement gets an error at once, and sysbench's sessions end with an error, neither hangs.
/// Returns how long the client waited and how long sysbench ran after the KILL.
fn kill_needed(
    ms: &MaxScale,
    main: &PrivateServer,
    port: u16,
    t: &Tables,
    threads: u32,
) -> (Duration, Duration) {
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some(router_tests::env::USER))
        .pass(Some(router_tests::env::PASSWORD))
        .db_name(Some(&t.db))
        .prefer_socket(false)
        .read_timeout(Some(Duration::from_secs(30)));
    let mut c = mysql::Conn::new(opts).unwrap();
    let waited = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_secs(1));
            main.kill_connections(Some(&t.db))
        });
        let start = Instant::now();
        let r = c.query_drop("SELECT SLEEP(20) FROM sbtest1 LIMIT 1");
        let waited = start.elapsed();
        if r.is_ok() || waited > Duration::from_secs(10) {
            ms.fail(
                "KILL of the needed server's connection",
                &format!("the client got {r:?} after {waited:?}"),
            );
        }
        waited
    });
    drop(c);
    let run = t.start("oltp_read_write", port, threads, 60, &[]);
    std::thread::sleep(Duration::from_secs(3));
    main.kill_connections(Some(&t.db));
    let killed = Instant::now();
    let o = run.wait();
    let ended = killed.elapsed();
    if o.ok || o.hung || o.elapsed > Duration::from_secs(30) {
        ms.fail(
            "sysbench after a KILL of the needed server's connections",
            &format!(
                "ok={} hung={} after {:?} (it must end with an error)\n{}",
                o.ok,
                o.hung,
                o.elapsed,
                o.tail()
            ),
        );
    }
    (waited, ended)
}

fn assert_recovered(ms: &MaxScale, router: &str, pre: &[Outcome], post: &[Outcome]) {
    for (i, (a, b)) in pre.iter().zip(post).enumerate() {
        assert_clean(ms, &format!("{router} service {i} after the faults"), b);
        if b.tps < 0.5 * a.tps {
            ms.fail(
                &format!("{router} service {i} after the faults"),
                &format!("{:.1} tps, before them {:.1}", b.tps, a.tps),
            );
        }
    }
}

fn finish(ms: &MaxScale, ports: &[u16]) {
    ms.wait_running("s1");
    ms.wait_running("s2");
    ms.healthy(ports)
        .unwrap_or_else(|e| ms.fail("after the faults", &e));
    let log = ms.log();
    if log.contains("alert") {
        ms.fail("the log", "MaxScale logged an alert");
    }
}

/// The last report of `query` in a mirror export (read from the end: the file is long).
fn last_report(file: &Path, query: &str) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(file).ok()?;
    let key = format!("{{\"query\":{},", serde_json::Value::from(query));
    let line = text.lines().rev().find(|l| l.starts_with(&key))?;
    serde_json::from_str(line).ok()
}

fn targets(r: &serde_json::Value) -> Vec<String> {
    r["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["target"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn tps(o: &[Outcome]) -> String {
    o.iter()
        .map(|o| format!("{:.1}", o.tps))
        .collect::<Vec<_>>()
        .join("/")
}

fn report(
    router: &str,
    f: &Faults,
    pre: &[Outcome],
    during: &[Outcome],
    post: &[Outcome],
    killed: (Duration, Duration),
) {
    let tx: u64 = during.iter().map(|o| o.transactions).sum();
    let ignored: u64 = during.iter().map(|o| o.ignored_errors).sum();
    println!(
        "faults {router}: {} injected ({} SIGKILL+restart, {} SIGSTOP/SIGCONT, {} KILL rounds ({} connections), {} maintenance), \
         {tx} transactions meanwhile, 0 errors ({ignored} deadlocks ignored); needed server's connections KILLed: client error after {:.1} s, \
         sysbench ended with an error {:.1} s after the KILL; tps before {} after {}",
        f.total(),
        f.sigkill_restart,
        f.sigstop_sigcont,
        f.kill_rounds,
        f.killed_connections,
        f.maintenance,
        killed.0.as_secs_f64(),
        killed.1.as_secs_f64(),
        tps(pre),
        tps(post)
    );
}

/// mirror on two private servers, s1 main: `Mirror` (reconnect=false) and `MirrorRe`
/// (reconnect=true), each under sysbench (`mirror_loads`) while s2 suffers.
#[test]
fn mirror_survives_faults_under_load() {
    let Some(inst) = installation("mirror") else {
        return;
    };
    let ours = inst.our_module("mirror");
    let a = PrivateServer::start();
    let mut b = PrivateServer::start();
    let dbs = [
        Tables::new("sbfaults", 2, 5000),
        Tables::new("sbfaults_re", 2, 5000),
    ];
    for t in &dbs {
        t.prepare(a.port);
        t.prepare(b.port);
    }
    let dir = tempfile::tempdir().unwrap();
    let (file, file_re) = (dir.path().join("mirror.jsonl"), dir.path().join("re.jsonl"));
    let (admin, p1) = maxscale::ports();
    let (_, p2) = maxscale::ports();
    let base = |f: &Path| {
        format!(
            "router=mirror\nmain=s1\nexporter=file\nfile={}",
            f.display()
        )
    };
    let cnf = servers(a.port, b.port)
        + &service("Mirror", p1, &base(&file))
        + &service(
            "MirrorRe",
            p2,
            &format!("{}\nreconnect=true", base(&file_re)),
        );
    let ms = MaxScale::start(&inst, admin, &cnf, &[("mirror", &ours)]);
    ms.wait_running("s1");
    ms.wait_running("s2");
    let ports = [p1, p2];
    let loads = mirror_loads(&ports, &dbs);

    // Warm (buffer pool, prepared statements, shard map), then the rate before the faults.
    run(&loads, 3);
    let pre = run(&loads, RATE_SECONDS);
    for (i, o) in pre.iter().enumerate() {
        assert_clean(&ms, &format!("mirror load {i} before the faults"), o);
    }
    // A session that lives through the faults: reconnect must bring s2 back into it.
    let mut kept = maxscale::client(p2, Some(&dbs[1].db));
    kept.query_drop("SET @kept = 1").unwrap();

    let secs = fault_seconds();
    let runs = start(&loads, secs + 4);
    std::thread::sleep(Duration::from_secs(2));
    let faults = fault_loop(&ms, &mut b, secs);
    let during: Vec<Outcome> = runs.into_iter().map(|r| r.wait()).collect();
    for (i, o) in during.iter().enumerate() {
        assert_clean(&ms, &format!("mirror load {i} during {faults:?}"), o);
    }

    // reconnect=true does not connect a server in maintenance (MaxScale closed the session's
    // connection to it: force).
    ms.wait_running("s2");
    ms.server_state("s2", "maintenance", false, true).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    kept.query_drop("SELECT 'in maintenance'").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = last_report(&file_re, "SELECT 'in maintenance'").expect("report");
    assert_eq!(targets(&r), ["s1"], "s2 is in maintenance: {r}");
    ms.server_state("s2", "maintenance", true, false).unwrap();

    // reconnect=true: the restarted s2 is back in the kept session's reports, with @kept.
    ms.wait_running("s2");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Option<i64> = kept.query_first("SELECT @kept").unwrap();
        assert_eq!(v, Some(1));
        std::thread::sleep(Duration::from_millis(200));
        let r = last_report(&file_re, "SELECT @kept");
        if r.as_ref().is_some_and(|r| {
            targets(r) == ["s1", "s2"] && r["results"][0]["checksum"] == r["results"][1]["checksum"]
        }) {
            break;
        }
        if Instant::now() > end {
            ms.fail(
                "reconnect=true",
                &format!("s2 is not back in the kept session: {r:?}"),
            );
        }
    }
    drop(kept);
    let diag =
        &ms.get("/v1/services/MirrorRe").unwrap()["data"]["attributes"]["router_diagnostics"];
    let reconnects = diag["targets"]["s2"]["reconnects"].as_u64().unwrap_or(0);
    // At most one attempt a second per session (three: two sysbench ones and the kept one);
    // without the pause every request reconnected to the dying server (over 800 times).
    let most = 3 * (secs + 15);
    assert!(
        (1..=most).contains(&reconnects),
        "{reconnects} reconnects (at most {most}): {diag}"
    );
    // reconnect=false: a session started after the faults has s2 again.
    let mut fresh = maxscale::client(p1, Some(&dbs[0].db));
    fresh.query_drop("SELECT 'fresh'").unwrap();
    drop(fresh);
    std::thread::sleep(Duration::from_millis(300));
    let r = last_report(&file, "SELECT 'fresh'").expect("report of a new session");
    assert_eq!(targets(&r), ["s1", "s2"], "{r}");

    let killed = kill_needed(&ms, &a, p1, &dbs[0], 2);
    let post = run(&loads, RATE_SECONDS);
    assert_recovered(&ms, "mirror", &pre, &post);
    finish(&ms, &ports);
    report("mirror", &faults, &pre, &during, &post, killed);
    // Every execution on a reconnected target carried its parameter types: MaxScale warns
    // of one that does not (sysbench sends them with a statement's first execution only).
    if ms.log().contains("Malformed COM_STMT_EXECUTE") {
        ms.fail(
            "reconnect=true",
            "an execution without its parameter types reached s2",
        );
    }
    println!("faults mirror: reconnect=true brought s2 back {reconnects} times");
}

/// schemarouter on two private shards: s1 holds the sysbench tables, s2 another database the
/// sysbench sessions never need.
#[test]
fn schemarouter_survives_faults_under_load() {
    let Some(inst) = installation("schemarouter") else {
        return;
    };
    let ours = inst.our_module("schemarouter");
    let a = PrivateServer::start();
    let mut b = PrivateServer::start();
    let t = Tables::new("sbfaults", 2, 5000);
    t.prepare(a.port);
    b.root_sql("CREATE DATABASE other; CREATE TABLE other.t (id INT PRIMARY KEY); INSERT INTO other.t VALUES (1)")
        .unwrap();
    let (admin, p1) = maxscale::ports();
    // auth_all_servers: 23.08 loads the accounts (and databases) of every shard only with it.
    let cnf = servers(a.port, b.port)
        + &service("Sharding", p1, "router=schemarouter\nauth_all_servers=true");
    let ms = MaxScale::start(&inst, admin, &cnf, &[("schemarouter", &ours)]);
    ms.wait_running("s1");
    ms.wait_running("s2");
    let ports = [p1];
    // The other shard is mapped and reachable.
    let mut c = maxscale::client(p1, None);
    let v: Option<u32> = c.query_first("SELECT id FROM other.t").unwrap();
    assert_eq!(v, Some(1));
    drop(c);

    let loads = [Load::new(&t, "oltp_read_write", p1, 2)];
    // Warm (buffer pool, prepared statements, shard map), then the rate before the faults.
    run(&loads, 3);
    let pre = run(&loads, RATE_SECONDS);
    assert_clean(&ms, "schemarouter before the faults", &pre[0]);
    let secs = fault_seconds();
    let runs = start(&loads, secs + 4);
    std::thread::sleep(Duration::from_secs(2));
    let faults = fault_loop(&ms, &mut b, secs);
    let during: Vec<Outcome> = runs.into_iter().map(|r| r.wait()).collect();
    assert_clean(&ms, &format!("schemarouter during {faults:?}"), &during[0]);

    ms.wait_running("s2");
    let mut c = maxscale::client(p1, None);
    let v: Option<u32> = c.query_first("SELECT id FROM other.t").unwrap();
    assert_eq!(v, Some(1), "a new session reaches the other shard again");
    drop(c);

    let killed = kill_needed(&ms, &a, p1, &t, 2);
    let post = run(&loads, RATE_SECONDS);
    assert_recovered(&ms, "schemarouter", &pre, &post);
    finish(&ms, &ports);
    report("schemarouter", &faults, &pre, &during, &post, killed);
}
