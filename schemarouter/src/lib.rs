//! `schemarouter`: a MaxScale router that shards by database and table. Each session maps
//! which server holds which database and table (with the client's own credentials, cached per
//! service and user), then sends every statement to the server holding what it names.

pub mod config;
pub mod merge;
pub mod route;
pub mod session;
pub mod shard;
pub mod sql;

use bridge::host::SessionHost;
use bridge::params::Params;
use bridge::router::{CommandSpec, ModuleInfo, Router, SessionInfo};
use config::Config;
use shard::Cache;
use std::sync::{Arc, RwLock};

/// STMT_INPUT | REQUEST_TRACKING | QUERY_CLASSIFICATION | SESCMD_HISTORY | OLD_PROTOCOL |
/// AUTH_ALL_SERVERS | RUNTIME_CONFIG, as the native router declares (0x2138D).
pub const CAPABILITIES: u64 = 0x2138D;

/// What a router instance shares with its sessions.
pub struct Shared {
    pub service: String,
    pub targets: Vec<String>,
    pub config: RwLock<Arc<Config>>,
    pub cache: Cache,
}

impl Shared {
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub struct SchemaRouter {
    shared: Arc<Shared>,
}

impl Router for SchemaRouter {
    type Session = session::Session;

    const INFO: ModuleInfo = ModuleInfo {
        name: "schemarouter",
        description: "A database sharding router for simple sharding",
        version: "V1.0.0",
        capabilities: CAPABILITIES,
        params: config::PARAMS,
        commands: &[
            CommandSpec {
                name: "invalidate",
                description: "Invalidate the schemarouter database map cache",
            },
            CommandSpec {
                name: "clear",
                description: "Clear the schemarouter database map cache",
            },
        ],
    };

    fn validate(params: &Params) -> Result<(), String> {
        Config::from_params(params).map(|_| ())
    }

    fn new(service: &str, targets: &[String]) -> Result<Self, String> {
        Ok(SchemaRouter {
            shared: Arc::new(Shared {
                service: service.to_string(),
                targets: targets.to_vec(),
                config: RwLock::new(Arc::new(Config::default())),
                cache: Cache::default(),
            }),
        })
    }

    fn configure(&self, params: &Params) -> Result<(), String> {
        let config = Config::from_params(params)?;
        let sh = &self.shared;
        if let Some(p) = &config.preferred_server {
            if !sh.targets.is_empty() && !sh.targets.iter().any(|t| t.eq_ignore_ascii_case(p)) {
                return Err(format!(
                    "'preferred_server' is '{p}', which is not a target of service '{}' ({})",
                    sh.service,
                    sh.targets.join(", ")
                ));
            }
        }
        *sh.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(())
    }

    fn diagnostics(&self) -> Option<serde_json::Value> {
        Some(self.shared.cache.to_json())
    }

    fn command(&self, name: &str) -> Result<Option<serde_json::Value>, String> {
        match name {
            "clear" => self.shared.cache.clear(),
            "invalidate" => self.shared.cache.invalidate(),
            _ => return Err(format!("unknown command '{name}'")),
        }
        Ok(None)
    }

    fn new_session(&self, host: SessionHost, info: SessionInfo) -> Result<Self::Session, String> {
        session::Session::new(self.shared.clone(), host, info)
    }
}

bridge::export_router!(SchemaRouter);
