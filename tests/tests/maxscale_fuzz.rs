//! Protocol fuzzing of a real MaxScale listener, for both routers (schemarouter on s1-s3,
//! mirror on s1+s2): after a valid login, random and mutated client packets (see
//! `router_tests::fuzz`). After each round MaxScale must still run, answer `SELECT 1` on a fresh
//! connection through each listener, and close every session of the round.
//!
//! Runs when MAXSCALE_BIN and MAXSCALE_LIBDIR are set (modules built with the `maxscale`
//! feature); FUZZ_SECONDS (default 30) bounds the random part, FUZZ_SEED replays a run.
//! `make fuzz` runs a long one.

use mysql::prelude::Queryable;
use router_tests::env;
use router_tests::fuzz::{self, Gen, Step};
use router_tests::maxscale::{self, MaxScale};
use std::time::{Duration, Instant};

/// Inputs that once broke something, replayed first on every run.
/// - `SHOW DATABASES LIKE` with a pattern of many `%`: the schemarouter's LIKE matcher
///   backtracked exponentially and held a worker thread (fixed in schemarouter/src/sql/mod.rs).
/// - Any session that ends (MaxScale 24.08.0): its backend connections stayed open, and the
///   next error on one (the server resetting it after a malformed packet, a server going down)
///   reached the freed router session: SIGSEGV in ServiceEndpoint::handleError (seed 989891210
///   crashed within two rounds; fixed in src/export.rs, session_free closes them).
const REGRESSION_SEEDS: &[u64] = &[];

fn regression_cases() -> Vec<Vec<Step>> {
    let query = |sql: &str| {
        let mut p = vec![0x03];
        p.extend_from_slice(sql.as_bytes());
        let mut b = (p.len() as u32).to_le_bytes()[..3].to_vec();
        b.push(0);
        b.extend_from_slice(&p);
        b
    };
    vec![
        vec![
            Step::Write(query(&format!(
                "SHOW DATABASES LIKE '{}b'",
                "%a".repeat(40)
            ))),
            Step::Wait(2000),
            Step::Close,
        ],
        // A session that ends after its backends connected: they must be closed with it.
        vec![
            Step::Write(query("SELECT 1")),
            Step::Wait(500),
            Step::Write(vec![1, 0, 0, 0, 0x01]),
            Step::Wait(200),
        ],
    ]
}

/// MaxScale with both routers (s2 on port `s2`): it, the listeners (schemarouter, mirror), and
/// the directory of mirror's export.
fn start(inst: &maxscale::Installation, s2: u16) -> (MaxScale, [u16; 2], tempfile::TempDir) {
    let (sr, mirror) = (inst.our_module("schemarouter"), inst.our_module("mirror"));
    let dir = tempfile::tempdir().unwrap();
    let (admin, sharding) = maxscale::ports();
    let (_, mirror_port) = maxscale::ports();
    let cnf = config(sharding, mirror_port, &dir.path().join("mirror.json"), s2);
    let ms = MaxScale::start(
        inst,
        admin,
        &cnf,
        &[("schemarouter", &sr), ("mirror", &mirror)],
    );
    ms.wait_running("s1");
    (ms, [sharding, mirror_port], dir)
}

fn config(sharding: u16, mirror: u16, file: &std::path::Path, s2: u16) -> String {
    let mut p = env::mariadb_ports();
    p[1] = s2;
    // Still in the [maxscale] section: COM_CHANGE_USER with wrong passwords must not get the
    // fuzzer's host blocked.
    let mut cnf = String::from("max_auth_errors_until_block=0\n\n");
    for (i, port) in p.iter().take(3).enumerate() {
        cnf.push_str(&format!(
            "[s{}]\ntype=server\naddress=127.0.0.1\nport={port}\n\n",
            i + 1
        ));
    }
    cnf.push_str(&format!(
        "[Monitor]\ntype=monitor\nmodule=mariadbmon\nservers=s1,s2,s3\nuser=app\npassword=apppass\nmonitor_interval=1s\n\n\
         [Sharding]\ntype=service\nrouter=schemarouter\ntargets=s1,s2,s3\nuser=app\npassword=apppass\nauth_all_servers=true\n\
         ignore_tables_regex=/.*/\n\n\
         [Sharding-Listener]\ntype=listener\nservice=Sharding\nprotocol=mariadbprotocol\naddress=127.0.0.1\nport={sharding}\n\n\
         [Mirror]\ntype=service\nrouter=mirror\ntargets=s1,s2\nuser=app\npassword=apppass\nmain=s1\nexporter=file\nfile={}\n\n\
         [Mirror-Listener]\ntype=listener\nservice=Mirror\nprotocol=mariadbprotocol\naddress=127.0.0.1\nport={mirror}\n",
        file.display()
    ));
    cnf
}

#[test]
fn fuzz_both_routers() {
    let Some(inst) = maxscale::installation() else {
        eprintln!(
            "skipped: MAXSCALE_BIN and MAXSCALE_LIBDIR are not set, so MaxScale was not fuzzed"
        );
        return;
    };
    let (ms, ports, _dir) = start(&inst, env::mariadb_ports()[1]);
    let sharding = ports[0];
    drop(maxscale::client(sharding, None));
    if let Err(e) = ms.healthy(&ports) {
        ms.fail("before fuzzing", &e);
    }

    for (i, case) in regression_cases().iter().enumerate() {
        for &port in &ports {
            let _ = fuzz::run(port, fuzz::caps(i as u64), case);
        }
        if let Err(e) = ms.healthy(&ports) {
            ms.fail(&format!("regression case {i}"), &e);
        }
    }

    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_007
        });
    println!("fuzz seed {seed} (FUZZ_SEED={seed} replays this run), {seconds} s");
    let end = Instant::now() + Duration::from_secs(seconds);
    let (mut cases, mut steps, mut replies, mut rounds) = (0u64, 0u64, 0u64, 0u64);
    let seeds = REGRESSION_SEEDS
        .iter()
        .copied()
        .map(|s| (s, true))
        .chain((0..).map(|i| (seed.wrapping_mul(1_000_003).wrapping_add(i), false)));
    let mut batch = Vec::new();
    for (case_seed, regression) in seeds {
        if !regression && Instant::now() > end {
            break;
        }
        batch.push(case_seed);
        if batch.len() < 8 {
            continue;
        }
        // A round: eight cases on each listener, four connections at a time.
        let round: Vec<(u64, u16)> = batch
            .drain(..)
            .flat_map(|s| ports.map(|p| (s, p)))
            .collect();
        for chunk in round.chunks(4) {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&(s, port)| {
                    std::thread::spawn(move || {
                        let case = Gen::new(s).case();
                        let n = case.len() as u64;
                        (
                            n,
                            fuzz::run(port, fuzz::caps(s), &case)
                                .map(|(r, _)| r as u64)
                                .unwrap_or(0),
                        )
                    })
                })
                .collect();
            for h in handles {
                let (n, r) = h.join().unwrap();
                steps += n;
                replies += r;
                cases += 1;
            }
        }
        rounds += 1;
        if let Err(e) = ms.healthy(&ports) {
            let seeds: Vec<String> = round.iter().map(|(s, p)| format!("{s}@{p}")).collect();
            ms.fail(
                &format!(
                    "after round {rounds} (case seeds at ports: {})",
                    seeds.join(" ")
                ),
                &e,
            );
        }
    }
    println!("fuzz: {rounds} rounds, {cases} cases, {steps} steps, {replies} reply packets; MaxScale healthy after each round");
    assert!(cases > 0);
    let log = ms.log();
    assert!(!log.contains("alert"), "MaxScale logged an alert:\n{log}");
}

/// The crash seen under sysbench when the monitor marked a shard down (both workers at once):
/// sessions that had ended still had open connections to it, and the errors MaxScale delivers
/// on them reached the freed router sessions. Now the sessions close them as they end.
#[test]
fn server_down_after_sessions_ended() {
    let Some(inst) = maxscale::installation() else {
        eprintln!("skipped: MAXSCALE_BIN and MAXSCALE_LIBDIR are not set, so MaxScale was not run");
        return;
    };
    let mut srv = router_tests::private_server::PrivateServer::start();
    let (ms, ports, _dir) = start(&inst, srv.port);
    ms.wait_running("s2");
    let [sharding, mirror_port] = ports;
    for port in [sharding, mirror_port] {
        for _ in 0..4 {
            let mut c = maxscale::client(port, None);
            let _: Option<u32> = c.query_first("SELECT 1").unwrap();
            // Prepared statements too, as sysbench used them when it crashed.
            let _: Option<u32> = c.exec_first("SELECT ?", (1,)).unwrap();
        }
    }
    if let Err(e) = ms.healthy(&[sharding, mirror_port]) {
        ms.fail("after the sessions ended", &e);
    }
    srv.stop();
    let down = || {
        ms.get("/v1/servers/s2").is_ok_and(|v| {
            v["data"]["attributes"]["state"]
                .as_str()
                .is_some_and(|s| s.contains("Down"))
        })
    };
    let end = Instant::now() + Duration::from_secs(30);
    while !down() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(down(), "the monitor never marked s2 down");
    std::thread::sleep(Duration::from_secs(2));
    if !ms.alive() {
        ms.fail("after s2 went down", "MaxScale is not running");
    }
}
