//! The sync itself: campaign for leadership, then run the source (dump if needed, stream)
//! and start it again after an error, with backoff, for as long as this instance is the
//! leader. SIGTERM/SIGINT stop it at a transaction boundary ([`shutdown`](crate::shutdown)).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::config::{Config, DbType};
use crate::ha;
use crate::metrics::METRICS;
use crate::progress;
use crate::retry::{is_fatal, Backoff};
use crate::shutdown::{self, Stop, GRACE};
use crate::sink::{self, LostLeadership, Sink};
use crate::source;

async fn run_source(cfg: &Config, sink: &mut Sink, started: &mut bool, stop: Stop) -> Result<()> {
    match cfg.database.db_type {
        DbType::Postgres => source::postgres::run(cfg, sink, started, stop).await,
        DbType::Mysql => source::mysql::run(cfg, sink, started, stop).await,
    }
}

/// `--dump-only`: one consistent copy, no election, no position kept.
pub async fn dump_only(cfg: &Config) -> Result<()> {
    let client = sink::connect(cfg).await?;
    let mut sink = Sink::new(client, cfg, None);
    match cfg.database.db_type {
        DbType::Postgres => source::postgres::dump_only(cfg, &mut sink).await?,
        DbType::Mysql => source::mysql::dump_only(cfg, &mut sink).await?,
    }
    sink.flush().await?;
    sink.drain().await?;
    tracing::info!("dump finished");
    Ok(())
}

/// What ended a run of the source.
enum Ended {
    Run(Result<()>),
    LostLeadership,
    Signal,
}

pub async fn run(cfg: &Config) -> Result<()> {
    let signal = shutdown::signal();
    tokio::pin!(signal);
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
            r = sink::connect(cfg) => r,
            _ = &mut signal => return Ok(()),
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                failures += 1;
                give_up(ever_started, failures, cfg, &e)?;
                let d = backoff.next_delay();
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?d, "etcd unavailable");
                tokio::select! { _ = tokio::time::sleep(d) => continue, _ = &mut signal => return Ok(()) }
            }
        };
        tracing::info!(instance = %instance, election = %election, "campaigning for leadership");
        let leader = tokio::select! {
            r = ha::campaign(&client, &election, &instance, cfg.sync.lease_ttl) => r,
            _ = &mut signal => return Ok(()),
        };
        let mut leader = match leader {
            Ok(l) => l,
            Err(e) => {
                let d = backoff.next_delay();
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?d, "election failed");
                tokio::select! { _ = tokio::time::sleep(d) => continue, _ = &mut signal => return Ok(()) }
            }
        };
        METRICS.is_leader.set(1);
        tracing::info!(instance = %instance, "elected: this instance is active");
        let publisher = tokio::spawn(progress::publish(
            client.clone(),
            format!("{}/status", cfg.state_path()),
            leader.lease,
            instance.clone(),
        ));
        let _stop_publishing = AbortOnDrop(publisher);
        loop {
            let mut sink = Sink::new(client.clone(), cfg, Some(leader.fence.clone()));
            let mut started = false;
            let t0 = Instant::now();
            let (stop_tx, stop) = Stop::new();
            let ended = {
                let run = run_source(cfg, &mut sink, &mut started, stop);
                tokio::pin!(run);
                let ended = tokio::select! {
                    r = &mut run => Ended::Run(r),
                    _ = leader.lost() => Ended::LostLeadership,
                    _ = &mut signal => Ended::Signal,
                };
                if let Ended::Signal = ended {
                    tracing::info!("stopping: the stream ends after the transaction it is in, once its checkpoint is written");
                    let _ = stop_tx.send(true);
                    match tokio::time::timeout(GRACE, &mut run).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %format!("{e:#}"), "the stream failed while stopping; the next start resumes from the last checkpoint")
                        }
                        Err(_) => {
                            tracing::warn!(grace = ?GRACE, "the stream did not reach a transaction boundary in time; stopped where it was (the next start resumes from the last checkpoint)")
                        }
                    }
                }
                ended
            };
            // no write of this run may reach etcd after the next run read the checkpoint
            sink.shutdown().await;
            let r = match ended {
                Ended::Signal => {
                    tracing::info!("shutting down; resigning leadership");
                    leader.resign(&client).await;
                    return Ok(());
                }
                Ended::LostLeadership => Err(anyhow!(LostLeadership)),
                Ended::Run(r) => r,
            };
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
            give_up(ever_started, failures, cfg, &e)?;
            let d = backoff.next_delay();
            tracing::warn!(error = %format!("{e:#}"), retry_in = ?d, "sync failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(d) => {},
                _ = leader.lost() => { METRICS.is_leader.set(0); break; }
                _ = &mut signal => { leader.resign(&client).await; return Ok(()); }
            }
        }
    }
}

/// Stops a background task when its owner goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
