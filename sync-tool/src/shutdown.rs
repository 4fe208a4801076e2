//! Graceful stop. SIGTERM or SIGINT asks the stream to end at the next transaction boundary,
//! once everything it read is in etcd and the checkpoint of the last transaction is written
//! (the daemon gives it [`GRACE`], then stops it where it is, as a crash would).

use std::time::Duration;

use tokio::sync::watch;

/// How long the stream may take to reach a transaction boundary and write it out.
pub const GRACE: Duration = Duration::from_secs(20);

/// The request to stop, as the stream sees it.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    pub fn new() -> (watch::Sender<bool>, Stop) {
        let (tx, rx) = watch::channel(false);
        (tx, Stop(rx))
    }

    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once a stop is requested (never, if the requester is gone).
    pub async fn wait(&mut self) {
        if self.0.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// SIGTERM or SIGINT.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
