//! What a router module implements. The bridge turns these traits into the C ABI.

use crate::host::SessionHost;
use crate::params::{ParamSpec, Params};

/// Static facts about a module.
pub struct ModuleInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub version: &'static str,
    /// RCAP_TYPE_* bits of MaxScale's router API.
    pub capabilities: u64,
    pub params: &'static [ParamSpec],
    pub commands: &'static [CommandSpec],
}

pub struct CommandSpec {
    pub name: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Clone)]
pub struct EndpointInfo {
    pub name: String,
    /// Running, not in maintenance or draining.
    pub can_connect: bool,
}

#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: u64,
    pub user: String,
    pub client_host: String,
    pub default_db: String,
    /// Basic capabilities | extended (MariaDB) capabilities << 32.
    pub client_caps: u64,
    pub endpoints: Vec<EndpointInfo>,
}

impl SessionInfo {
    pub fn deprecate_eof(&self) -> bool {
        self.client_caps & crate::protocol::caps::DEPRECATE_EOF != 0
    }
}

/// A router instance: one per service. Shared by the sessions of every worker thread.
pub trait Router: Send + Sync + Sized + 'static {
    type Session: RouterSession;
    const INFO: ModuleInfo;

    /// Checks a complete parameter set (relations between parameters; the host has already
    /// checked each value against its type).
    fn validate(params: &Params) -> Result<(), String>;
    /// `targets` are the service's targets in configuration order.
    fn new(service: &str, targets: &[String]) -> Result<Self, String>;
    /// Applies a complete parameter set; on error the previous configuration stays in force.
    fn configure(&self, params: &Params) -> Result<(), String>;
    fn diagnostics(&self) -> Option<serde_json::Value> {
        None
    }
    fn command(&self, name: &str) -> Result<Option<serde_json::Value>, String> {
        Err(format!("unknown command '{name}'"))
    }
    fn new_session(&self, host: SessionHost, info: SessionInfo) -> Result<Self::Session, String>;
    /// Called once before the router is dropped (flush what must not be lost).
    fn shutdown(&self) {}
}

/// A client session. Each call comes from the session's own thread.
pub trait RouterSession {
    /// One complete client packet. An error closes the session (it is logged).
    fn route_query(&mut self, packet: &[u8]) -> Result<(), String>;
    /// Reply packets from an endpoint. An error closes the session.
    fn client_reply(&mut self, endpoint: usize, data: &[u8]) -> Result<(), String>;
    /// An endpoint's connection failed. True: the session goes on without it.
    fn handle_error(&mut self, endpoint: usize, message: &str) -> bool;
    /// The host honoured `SessionHost::schedule_resume`.
    fn resume(&mut self) -> Result<(), String> {
        Ok(())
    }
}
