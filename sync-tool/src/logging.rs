//! Logging to stderr (text or JSON) with a level filter that SIGHUP reloads from the
//! configuration file's `log_level` (nothing else is reloaded).

use std::path::PathBuf;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use crate::config::Config;

pub type Reload = reload::Handle<EnvFilter, Registry>;

/// `SYNC_LOG` (tracing filter syntax) overrides the file's level.
fn filter(log_level: &str) -> EnvFilter {
    let level = match log_level.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_string(),
        "fatal" | "panic" => "error".to_string(),
        l => l.to_string(),
    };
    EnvFilter::try_from_env("SYNC_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,sync_tool={level}")))
}

pub fn init(cfg: &Config) -> Reload {
    let (layer, handle) = reload::Layer::new(filter(&cfg.log_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let out = fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(layer);
    if cfg.log_format == "json" {
        registry.with(out.json()).init();
    } else {
        registry.with(out).init();
    }
    handle
}

/// On every SIGHUP: reads the file again and applies its `log_level`.
pub async fn reload_on_hangup(path: PathBuf, handle: Reload) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; the log level cannot be reloaded");
            return;
        }
    };
    while hup.recv().await.is_some() {
        match Config::load(&path) {
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "SIGHUP: the configuration cannot be read; log level unchanged")
            }
            Ok(cfg) => {
                if std::env::var_os("SYNC_LOG").is_some() {
                    tracing::warn!(
                        "SIGHUP: SYNC_LOG is set and overrides log_level; log level unchanged"
                    );
                } else if let Err(e) = handle.reload(filter(&cfg.log_level)) {
                    tracing::warn!(error = %e, "SIGHUP: cannot change the log level");
                } else {
                    tracing::warn!(log_level = %cfg.log_level, "SIGHUP: log level reloaded (other settings take effect at the next start)");
                }
            }
        }
    }
}
