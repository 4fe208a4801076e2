//! `mirror`: a MaxScale router that sends every client statement to all targets, returns
//! only the `main` target's answer, and exports a report per statement comparing the answers.

mod config;
mod diff;
mod exporter;
mod history;
mod report;
#[cfg(test)]
mod report_proptests;
mod session;
mod stats;

use bridge::host::SessionHost;
use bridge::params::Params;
use bridge::router::{CommandSpec, ModuleInfo, Router, SessionInfo};
use config::{Config, ExporterConfig};
use exporter::Exporter;
use stats::Stats;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// RCAP_TYPE_REQUEST_TRACKING | RCAP_TYPE_RUNTIME_CONFIG, as the native router declares.
const CAPABILITIES: u64 = 0x2000D;

/// The configuration in force and the exporter built from it; replaced together.
#[derive(Clone)]
pub(crate) struct Active {
    pub config: Arc<Config>,
    pub exporter: Arc<dyn Exporter>,
}

/// What a router instance shares with its sessions.
pub(crate) struct Shared {
    pub service: String,
    pub targets: Vec<String>,
    pub active: RwLock<Option<Active>>,
    /// Bumped whenever `active` is replaced: sessions keep a copy and check this.
    pub generation: AtomicU64,
    pub stats: Arc<Stats>,
}

impl Shared {
    /// The configuration in force, with its generation.
    pub fn active(&self) -> Option<(u64, Active)> {
        let a = self.active.read().unwrap_or_else(|e| e.into_inner());
        a.clone().map(|a| (self.generation(), a))
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

pub struct Mirror {
    shared: Arc<Shared>,
}

impl Router for Mirror {
    type Session = session::MirrorSession;

    const INFO: ModuleInfo = ModuleInfo {
        name: "mirror",
        description: "Mirrors SQL statements to multiple targets",
        version: "V1.0.0",
        capabilities: CAPABILITIES,
        params: config::PARAMS,
        commands: &[] as &[CommandSpec],
    };

    fn validate(params: &Params) -> Result<(), String> {
        Config::from_params(params).map(|_| ())
    }

    fn new(service: &str, targets: &[String]) -> Result<Self, String> {
        Ok(Mirror {
            shared: Arc::new(Shared {
                service: service.to_string(),
                targets: targets.to_vec(),
                active: RwLock::new(None),
                generation: AtomicU64::new(0),
                stats: Arc::new(Stats::default()),
            }),
        })
    }

    fn configure(&self, params: &Params) -> Result<(), String> {
        let config = Config::from_params(params)?;
        let sh = &self.shared;
        if !sh.targets.is_empty() && !sh.targets.contains(&config.main) {
            bridge::log_warning!(
                "service '{}': main target '{}' is not listed in `targets` ({}): sessions will be refused",
                sh.service,
                config.main,
                sh.targets.join(", ")
            );
        }
        let old = sh.active().map(|(_, a)| a);
        let exporter = match &old {
            Some(a) if !exporter::needs_rebuild(&a.config.exporter, &config.exporter) => {
                a.exporter.clone()
            }
            _ => exporter::build(&config.exporter, sh.stats.clone())?,
        };
        let new = Active {
            config: Arc::new(config),
            exporter,
        };
        let replaced = {
            let mut a = sh.active.write().unwrap_or_else(|e| e.into_inner());
            sh.generation.fetch_add(1, Ordering::AcqRel);
            a.replace(new)
        };
        // The last reference to a replaced Kafka exporter flushes it (up to 10 s): let that
        // happen off the admin thread.
        if let Some(old) = replaced {
            if matches!(old.config.exporter, ExporterConfig::Kafka { .. }) {
                std::thread::spawn(move || drop(old));
            }
        }
        Ok(())
    }

    fn diagnostics(&self) -> Option<serde_json::Value> {
        Some(self.shared.stats.to_json())
    }

    fn new_session(&self, host: SessionHost, info: SessionInfo) -> Result<Self::Session, String> {
        session::MirrorSession::new(self.shared.clone(), host, info)
    }

    fn shutdown(&self) {
        // Dropping the exporter here flushes a Kafka queue before MaxScale exits.
        self.shared
            .active
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

bridge::export_router!(Mirror);
