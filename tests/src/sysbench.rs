//! sysbench (1.0) as the load of the reliability suites: tables prepared on a server, runs
//! through a MaxScale listener in the background, and what a run printed, parsed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// sysbench's tables in one database: `tables` × `size` rows (oltp scripts).
#[derive(Clone)]
pub struct Tables {
    pub db: String,
    pub tables: u32,
    pub size: u32,
}

/// What a finished run printed.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Exit status 0 (a statement error sysbench does not ignore makes it fail).
    pub ok: bool,
    /// Killed because it ran far past its `--time` (a session that hung).
    pub hung: bool,
    pub transactions: u64,
    pub queries: u64,
    pub ignored_errors: u64,
    pub reconnects: u64,
    /// Transactions per second of the whole run.
    pub tps: f64,
    pub elapsed: Duration,
    pub output: String,
}

impl Outcome {
    /// The last lines of what it printed (for failure messages).
    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.output.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }
}

/// A run in the background.
pub struct Running {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
    started: Instant,
    limit: Duration,
}

impl Tables {
    pub fn new(db: &str, tables: u32, size: u32) -> Tables {
        Tables {
            db: db.to_string(),
            tables,
            size,
        }
    }

    fn command(&self, script: &str, port: u16) -> Command {
        let mut c = Command::new("sysbench");
        c.arg(script).args([
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={port}"),
            &format!("--mysql-user={}", crate::env::USER),
            &format!("--mysql-password={}", crate::env::PASSWORD),
            &format!("--mysql-db={}", self.db),
            &format!("--tables={}", self.tables),
            &format!("--table-size={}", self.size),
        ]);
        c
    }

    /// Creates the database and the tables directly on a server (`port`).
    pub fn prepare(&self, port: u16) {
        let mut c = crate::env::mariadb(port);
        mysql::prelude::Queryable::query_drop(
            &mut c,
            format!("DROP DATABASE IF EXISTS {0}; CREATE DATABASE {0}", self.db),
        )
        .unwrap();
        let out = self
            .command("oltp_read_write", port)
            .arg("prepare")
            .output()
            .expect("sysbench (apt install sysbench)");
        assert!(
            out.status.success(),
            "sysbench prepare on {port}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `script` (oltp_read_write, oltp_read_only, or a path) through `port` for
    /// `seconds` with `threads`; `extra` are more sysbench options.
    pub fn start(
        &self,
        script: &str,
        port: u16,
        threads: u32,
        seconds: u64,
        extra: &[&str],
    ) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let f = std::fs::File::create(&out).unwrap();
        let child = self
            .command(script, port)
            .args([
                &format!("--threads={threads}"),
                &format!("--time={seconds}"),
                "--report-interval=0",
                "--db-ps-mode=auto",
            ])
            .args(extra)
            .arg("run")
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .expect("sysbench (apt install sysbench)");
        Running {
            child,
            out,
            _dir: dir,
            started: Instant::now(),
            // Past its time, sysbench waits for the events in flight: far past, one hangs.
            limit: Duration::from_secs(seconds + 30),
        }
    }
}

impl Running {
    /// Waits for the end (killing it past its time limit: `hung`) and parses its output.
    pub fn wait(mut self) -> Outcome {
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break Some(s);
            }
            if self.started.elapsed() > self.limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let output = std::fs::read_to_string(&self.out).unwrap_or_default();
        parse(
            &output,
            status.is_some_and(|s| s.success()),
            status.is_none(),
            self.started.elapsed(),
        )
    }

    /// True while it runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The first number after `key:` on the line that starts with it.
fn number(output: &str, key: &str) -> Option<(u64, f64)> {
    let line = output.lines().map(str::trim).find(|l| l.starts_with(key))?;
    let rest = line[key.len()..].trim();
    let mut words = rest.split_whitespace();
    let n = words.next()?.parse().ok()?;
    let rate = words
        .next()
        .map(|w| w.trim_start_matches('('))
        .and_then(|w| w.parse().ok())
        .unwrap_or(0.0);
    Some((n, rate))
}

fn parse(output: &str, ok: bool, hung: bool, elapsed: Duration) -> Outcome {
    let get = |k| number(output, k).unwrap_or_default();
    let (transactions, tps) = get("transactions:");
    Outcome {
        ok,
        hung,
        transactions,
        queries: get("queries:").0,
        ignored_errors: get("ignored errors:").0,
        reconnects: get("reconnects:").0,
        tps,
        elapsed,
        output: output.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_sysbench_totals() {
        let out = "SQL statistics:\n    queries performed:\n        read:                            14\n    \
                   transactions:                        120    (11.97 per sec.)\n    \
                   queries:                             2400   (239.40 per sec.)\n    \
                   ignored errors:                      1      (0.10 per sec.)\n    \
                   reconnects:                          0      (0.00 per sec.)\n";
        let o = super::parse(out, true, false, std::time::Duration::ZERO);
        assert_eq!(
            (o.transactions, o.queries, o.ignored_errors, o.reconnects),
            (120, 2400, 1, 0)
        );
        assert!((o.tps - 11.97).abs() < 1e-9);
    }
}
