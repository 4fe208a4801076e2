//! sync-tool: copies a PostgreSQL or MySQL/MariaDB database into etcd v3 and keeps it in sync.

#![forbid(unsafe_code)]

mod config;
mod ha;
mod keys;
mod metrics;
mod retry;
mod sink;
mod source;
mod value;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::Parser;

use config::{Config, DbType};
use metrics::METRICS;
use retry::{is_fatal, Backoff};
use sink::{LostLeadership, Sink};

/// Copies a database (PostgreSQL via pgoutput, MySQL/MariaDB via ROW binlog) into etcd v3
/// and keeps it in sync. Several instances may run; one is active (etcd election).
#[derive(Parser, Debug)]
#[command(name = "sync-tool", version)]
struct Cli {
    /// YAML configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Copy the selected tables once (consistent snapshot, stale keys removed) and exit;
    /// no slot/binlog position is kept and no election is held.
    #[arg(long)]
    dump_only: bool,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sync-tool: {e:#}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        for n in &cfg.notices {
            println!("{n}");
        }
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    init_logging(&cfg);
    for n in &cfg.notices {
        tracing::info!("{n}");
    }
    // One thread: the tool needs a fraction of a core, and etcd, which shares the machine,
    // gets the rest. A multi-threaded runtime spent a quarter more CPU per row on waking
    // threads across cores (measured with bench-sync-pg: 5.6 against 4.3 us/row in the dump).
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sync-tool: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cfg, cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exiting");
            eprintln!("sync-tool: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(cfg: &Config) {
    let level = match cfg.log_level.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_string(),
        "fatal" | "panic" => "error".to_string(),
        l => l.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,sync_tool={level}")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run_source(cfg: &Config, sink: &mut Sink, started: &mut bool) -> Result<()> {
    match cfg.database.db_type {
        DbType::Postgres => source::postgres::run(cfg, sink, started).await,
        DbType::Mysql => source::mysql::run(cfg, sink, started).await,
    }
}

async fn run(cfg: Config, cli: Cli) -> Result<()> {
    if let Some(addr) = &cfg.metrics.address {
        metrics::serve(addr).await?;
    }
    tracing::info!(database = ?cfg.database, etcd = ?cfg.etcd, log_level = %cfg.log_level, "starting");
    if cli.dump_only {
        let client = sink::connect(&cfg).await?;
        let mut sink = Sink::new(client, &cfg, None);
        match cfg.database.db_type {
            DbType::Postgres => source::postgres::dump_only(&cfg, &mut sink).await?,
            DbType::Mysql => source::mysql::dump_only(&cfg, &mut sink).await?,
        }
        sink.flush().await?;
        sink.drain().await?;
        tracing::info!("dump finished");
        return Ok(());
    }
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let instance = format!(
        "{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "sync-tool".into()),
        std::process::id()
    );
    let election = format!("{}/election", cfg.state_path());
    let mut backoff = Backoff::new(cfg.database.retry_period, cfg.sync.max_backoff);
    let mut ever_started = false;
    let mut failures = 0u32;
    loop {
        let client = tokio::select! {
            r = sink::connect(&cfg) => r,
            _ = &mut shutdown => return Ok(()),
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                failures += 1;
                give_up(ever_started, failures, &cfg, &e)?;
                let d = backoff.next_delay();
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?d, "etcd unavailable");
                tokio::select! { _ = tokio::time::sleep(d) => continue, _ = &mut shutdown => return Ok(()) }
            }
        };
        tracing::info!(instance = %instance, election = %election, "campaigning for leadership");
        let leader = tokio::select! {
            r = ha::campaign(&client, &election, &instance, cfg.sync.lease_ttl) => r,
            _ = &mut shutdown => return Ok(()),
        };
        let mut leader = match leader {
            Ok(l) => l,
            Err(e) => {
                let d = backoff.next_delay();
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?d, "election failed");
                tokio::select! { _ = tokio::time::sleep(d) => continue, _ = &mut shutdown => return Ok(()) }
            }
        };
        METRICS.is_leader.set(1);
        tracing::info!(instance = %instance, "elected: this instance is active");
        loop {
            let mut sink = Sink::new(client.clone(), &cfg, Some(leader.fence.clone()));
            let mut started = false;
            let t0 = Instant::now();
            let r = tokio::select! {
                r = run_source(&cfg, &mut sink, &mut started) => r,
                _ = leader.lost() => Err(anyhow!(LostLeadership)),
                _ = &mut shutdown => {
                    tracing::info!("shutting down; resigning leadership");
                    sink.shutdown().await;
                    leader.resign(&client).await;
                    return Ok(());
                }
            };
            // no write of this run may reach etcd after the next run read the checkpoint
            sink.shutdown().await;
            let e = match r {
                Ok(()) => anyhow!("source ended"),
                Err(e) => e,
            };
            if is_fatal(&e) {
                leader.resign(&client).await;
                return Err(e);
            }
            METRICS.errors.inc();
            if started {
                ever_started = true;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                backoff.reset();
            }
            if e.chain().any(|c| c.is::<LostLeadership>()) {
                METRICS.is_leader.set(0);
                tracing::warn!(error = %format!("{e:#}"), "stepping down");
                break;
            }
            failures += 1;
            give_up(ever_started, failures, &cfg, &e)?;
            let d = backoff.next_delay();
            tracing::warn!(error = %format!("{e:#}"), retry_in = ?d, "sync failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(d) => {},
                _ = leader.lost() => { METRICS.is_leader.set(0); break; }
                _ = &mut shutdown => { leader.resign(&client).await; return Ok(()); }
            }
        }
    }
}

/// Before the first successful start, give up after `database.connection_retries` failures.
fn give_up(ever_started: bool, failures: u32, cfg: &Config, e: &anyhow::Error) -> Result<()> {
    if !ever_started && failures > cfg.database.connection_retries {
        return Err(anyhow!(
            "giving up after {failures} failed attempts (database.connection_retries = {}): {e:#}",
            cfg.database.connection_retries
        ));
    }
    Ok(())
}
