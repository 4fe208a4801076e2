//! High availability: every instance campaigns in an etcd election (`<state_path>/election`)
//! with a lease of `sync.lease_ttl`; only the elected one syncs. The leader key's create
//! revision is the fence compared in every data transaction, so an instance that lost its lease
//! cannot write any more. When the active instance dies its lease expires and a standby's
//! campaign returns.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use etcd_client::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::sink::Fence;

pub struct Leader {
    pub fence: Fence,
    pub lease: i64,
    lost: watch::Receiver<bool>,
    keeper: JoinHandle<()>,
}

impl Leader {
    /// Resolves when the lease could not be kept alive (leadership is gone).
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|l| *l).await;
    }

    /// Gives leadership up at once (graceful shutdown), so a standby takes over without
    /// waiting for the lease to expire.
    pub async fn resign(self, client: &Client) {
        self.keeper.abort();
        let mut lc = client.lease_client();
        let _ = tokio::time::timeout(Duration::from_secs(2), lc.revoke(self.lease)).await;
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

pub async fn campaign(client: &Client, name: &str, value: &str, ttl: Duration) -> Result<Leader> {
    let ttl_s = ttl.as_secs().max(1) as i64;
    let mut lc = client.lease_client();
    let lease = lc
        .grant(ttl_s, None)
        .await
        .context("etcd: grant lease")?
        .id();
    let (lost_tx, mut lost_rx) = watch::channel(false);
    let keeper = tokio::spawn(keep_alive(client.clone(), lease, ttl, lost_tx));
    let mut ec = client.election_client();
    let campaign = ec.campaign(name, value, lease);
    let resp = tokio::select! {
        r = campaign => r.context("etcd: campaign")?,
        _ = lost_rx.wait_for(|l| *l) => {
            keeper.abort();
            anyhow::bail!("etcd: lease lost while campaigning");
        }
    };
    let Some(lk) = resp.leader() else {
        keeper.abort();
        anyhow::bail!("etcd: campaign returned no leader key");
    };
    Ok(Leader {
        fence: Fence {
            key: lk.key().to_vec(),
            rev: lk.rev(),
        },
        lease,
        lost: lost_rx,
        keeper,
    })
}

async fn keep_alive(client: Client, lease: i64, ttl: Duration, lost: watch::Sender<bool>) {
    let period = (ttl / 3).max(Duration::from_millis(300));
    let mut last_ok = Instant::now();
    let mut session = None;
    loop {
        if session.is_none() {
            let mut lc = client.lease_client();
            if let Ok(Ok(s)) = tokio::time::timeout(period, lc.keep_alive(lease)).await {
                session = Some(s);
            }
        }
        if let Some((keeper, stream)) = session.as_mut() {
            let r = tokio::time::timeout(period, async {
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await;
            match r {
                Ok(Ok(Some(resp))) if resp.ttl() > 0 => last_ok = Instant::now(),
                Ok(Ok(Some(_))) => {
                    tracing::warn!(lease, "election lease expired");
                    let _ = lost.send(true);
                    return;
                }
                _ => session = None,
            }
        }
        if last_ok.elapsed() >= ttl {
            tracing::warn!(lease, "could not renew the election lease within its TTL");
            let _ = lost.send(true);
            return;
        }
        tokio::time::sleep(period).await;
    }
}
