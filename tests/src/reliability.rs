//! What the faults and soak suites share: a MaxScale config of two servers behind a router,
//! sysbench loads through its listeners, and the check that a run saw no error.

use crate::maxscale::MaxScale;
use crate::sysbench::{Outcome, Running, Tables};

/// Servers `s1` (port `a`) and `s2` (port `b`) and their monitor.
pub fn servers(a: u16, b: u16) -> String {
    format!(
        "[s1]\ntype=server\naddress=127.0.0.1\nport={a}\n\n[s2]\ntype=server\naddress=127.0.0.1\nport={b}\n\n\
         [Monitor]\ntype=monitor\nmodule=mariadbmon\nservers=s1,s2\nuser=app\npassword=apppass\nmonitor_interval=1s\n\n"
    )
}

/// A service on s1 and s2 (`params` names the router) and its listener on `port`.
pub fn service(name: &str, port: u16, params: &str) -> String {
    format!(
        "[{name}]\ntype=service\nuser=app\npassword=apppass\ntargets=s1,s2\n{params}\n\n\
         [{name}-Listener]\ntype=listener\nservice={name}\nprotocol=mariadbprotocol\naddress=127.0.0.1\nport={port}\n\n"
    )
}

/// One sysbench run's shape: `script` on `tables` through `port` with `threads`.
#[derive(Clone)]
pub struct Load {
    pub tables: Tables,
    pub script: String,
    pub port: u16,
    pub threads: u32,
    pub extra: Vec<String>,
}

impl Load {
    pub fn new(tables: &Tables, script: &str, port: u16, threads: u32) -> Load {
        Load {
            tables: tables.clone(),
            script: script.to_string(),
            port,
            threads,
            extra: Vec::new(),
        }
    }
}

/// Through a synchronous mirror, writers of the same rows lock each other across the two
/// servers (session A holds a row on s1 and waits for it on s2, where B holds it and waits on
/// s1): a deadlock neither server sees, which only innodb_lock_wait_timeout ends (the native
/// module waits for every target too). So each mirror service gets a database of its own with one writer,
/// and a reader beside it.
pub fn mirror_loads(ports: &[u16], dbs: &[Tables]) -> Vec<Load> {
    ports
        .iter()
        .zip(dbs)
        .flat_map(|(&port, t)| {
            ["oltp_read_write", "oltp_read_only"].map(|script| Load::new(t, script, port, 1))
        })
        .collect()
}

/// Starts every load at once for `seconds`.
pub fn start(loads: &[Load], seconds: u64) -> Vec<Running> {
    loads
        .iter()
        .map(|l| {
            let extra: Vec<&str> = l.extra.iter().map(String::as_str).collect();
            l.tables
                .start(&l.script, l.port, l.threads, seconds, &extra)
        })
        .collect()
}

/// Runs every load at once for `seconds`.
pub fn run(loads: &[Load], seconds: u64) -> Vec<Outcome> {
    start(loads, seconds)
        .into_iter()
        .map(Running::wait)
        .collect()
}

/// sysbench ended by itself, without an error it does not ignore (only deadlocks and lock
/// waits, its defaults) and without reconnecting; else the test fails with MaxScale's log.
pub fn assert_clean(ms: &MaxScale, what: &str, o: &Outcome) {
    if !o.ok || o.hung || o.reconnects > 0 || o.transactions == 0 {
        ms.fail(
            what,
            &format!(
                "sysbench: ok={} hung={} transactions={} reconnects={}\n{}",
                o.ok,
                o.hung,
                o.transactions,
                o.reconnects,
                o.tail()
            ),
        );
    }
}
