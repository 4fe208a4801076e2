//! sync-tool: copies a PostgreSQL or MySQL/MariaDB database into etcd v3 and keeps it in sync.

#![forbid(unsafe_code)]

mod config;
mod daemon;
mod ha;
mod keys;
mod logging;
mod metrics;
mod ops;
mod progress;
mod retry;
mod shutdown;
mod sink;
mod source;
mod value;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};

use config::Config;

/// Copies a database (PostgreSQL via pgoutput, MySQL/MariaDB via ROW binlog) into etcd v3
/// and keeps it in sync. Several instances may run; one is active (etcd election).
#[derive(Parser, Debug)]
#[command(name = "sync-tool", version)]
struct Cli {
    /// YAML configuration file.
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Copy the selected tables once (consistent snapshot, stale keys removed) and exit;
    /// no slot/binlog position is kept and no election is held.
    #[arg(long)]
    dump_only: bool,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sync: campaign for leadership, dump if needed, stream (what runs without a command).
    Run,
    /// Compare the source tables with etcd (row counts and every row's value, in chunks, while
    /// the sync runs) and list missing, extra and stale keys. Exit code 0: equal, 3: different.
    Verify {
        /// How long differences are re-checked while the tool keeps applying changes.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        settle: Duration,
        /// Source rows read per statement.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..))]
        chunk: u16,
        /// Keys listed per table.
        #[arg(long, default_value_t = 20)]
        show: usize,
    },
    /// Show the active instance, the phase, the last checkpoint and its age, the lag, the rows
    /// applied and the keys per table in etcd.
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    config::parse_duration(s).map_err(|e| format!("{e:#}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(path) = cli.config.clone() else {
        eprintln!("sync-tool: a configuration file is required (-c FILE); see --help");
        return ExitCode::from(2);
    };
    let cfg = match Config::load(&path) {
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
    let log_reload = logging::init(&cfg);
    for n in &cfg.notices {
        tracing::info!("{n}");
    }
    if let Some(Command::Status { json }) = cli.command {
        return match runtime().map(|rt| rt.block_on(ops::status::run(&cfg, json))) {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) | Err(e) => {
                eprintln!("sync-tool: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(Command::Verify {
        settle,
        chunk,
        show,
    }) = cli.command
    {
        let opts = ops::verify::Options {
            settle,
            chunk: chunk as usize,
            show,
        };
        return match runtime().map(|rt| rt.block_on(ops::verify::run(&cfg, &opts))) {
            Ok(Ok(true)) => ExitCode::SUCCESS,
            Ok(Ok(false)) => ExitCode::from(3),
            Ok(Err(e)) | Err(e) => {
                eprintln!("sync-tool: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    // One thread: the tool needs a fraction of a core, and etcd, which shares the machine,
    // gets the rest. A multi-threaded runtime spent a quarter more CPU per row on waking
    // threads across cores (measured with bench-sync-pg: 5.6 against 4.3 us/row in the dump).
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sync-tool: {e:#}");
            return ExitCode::from(1);
        }
    };
    let r = rt.block_on(async {
        if let Some(addr) = &cfg.metrics.address {
            metrics::serve(addr).await?;
        }
        tracing::info!(database = ?cfg.database, etcd = ?cfg.etcd, log_level = %cfg.log_level, "starting");
        if cli.dump_only {
            return daemon::dump_only(&cfg).await;
        }
        tokio::spawn(logging::reload_on_hangup(path, log_reload));
        daemon::run(&cfg).await
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "exiting");
            eprintln!("sync-tool: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start runtime: {e}"))
}
