//! One client session: every request goes to all targets, main's reply to the client.
//!
//! Requests are kept in client order (`log`) until every target has answered them or been
//! dropped from them, and each target works through them in that order.
//! - sync=true (native): a request starts on all targets once every earlier one has been
//!   answered by all, and main's last reply chunk is held until every target has answered
//!   and the report is written.
//! - sync=false: main's reply goes to the client as soon as main has it; the other targets
//!   get the same requests in the same order, pipelined (except after a prepare or a
//!   statement that may ask for a LOCAL INFILE), and are compared when they answer. A target
//!   that falls behind main by more than `max_backlog` is dropped from the session.
//!
//! Packets that belong to a request being received are not queued but passed on: the rest
//! of a request of 16 MiB or more, and the file data of LOAD DATA LOCAL INFILE (kept for a
//! target until it asks for it). A target that fails is dropped from every request it has
//! not been reported for; with `reconnect=true` it is connected again for a later request,
//! with the session's state replayed (`history`). An error a server sends on an idle
//! connection is logged, never counted as a reply.

mod entry;
mod exec_types;
mod flow;
mod replies;

use crate::config::Config;
use crate::history::History;
use crate::stats::TargetStats;
use crate::{Active, Shared};
use bridge::host::SessionHost;
use bridge::log_warning;
use bridge::protocol::ReplyTracker;
use bridge::router::{RouterSession, SessionInfo};
use entry::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// What a target's next reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A session command replayed on a reconnected target (its command byte).
    Replay(u8),
    /// A request of the log.
    Entry(u64),
}

struct Backend {
    endpoint: usize,
    name: String,
    in_use: bool,
    /// Failed; may be connected again (reconnect=true).
    lost: bool,
    /// Replies owed, in order; the front one is being received.
    expects: VecDeque<Expect>,
    tracker: ReplyTracker,
    crc: crc32fast::Hasher,
    /// Sequence number of the next request of the log to write to it.
    next_write: u64,
    /// Requests (and their bytes) main has answered and this target has not.
    lag_bytes: u64,
    lag_requests: u64,
    /// A failed reconnection attempt was logged (once per loss).
    reconnect_logged: bool,
    /// When it was last connected again (reconnect=true): at most one attempt a second.
    reconnected_at: Option<std::time::Instant>,
    /// Connected again: the statements whose parameter types this connection has had.
    typed: Option<std::collections::HashSet<u32>>,
    stats: Arc<TargetStats>,
}

/// Statement ids the client got, with their SQL (the `query` of COM_STMT_EXECUTE reports
/// with report_diff) and columns. Bounded: beyond it statements are not remembered.
const MAX_STATEMENTS: usize = 10_000;

#[derive(Default)]
struct Statement {
    sql: Vec<u8>,
    columns: Vec<crate::diff::ColumnType>,
    params: u16,
    /// The parameter types of its last execution that carried them (reconnect=true).
    types: Vec<u8>,
}

pub struct MirrorSession {
    shared: Arc<Shared>,
    /// The configuration this session uses, refreshed when the router's changes.
    active: Active,
    generation: u64,
    host: SessionHost,
    id: u64,
    backends: Vec<Backend>,
    main: usize,
    /// Reports written, as the native router counts `query_id`.
    reports: u64,
    log: VecDeque<Entry>,
    next_seq: u64,
    /// The request whose packets the client is still sending.
    receiving: Option<u64>,
    /// Main's last reply chunk to the first request of the log (sync=true).
    held: Option<Vec<u8>>,
    history: History,
    statements: HashMap<u32, Statement>,
    /// The statement main is answering a COM_STMT_PREPARE for.
    preparing: Option<u32>,
    /// Main's last answer left a transaction open.
    main_in_trx: bool,
    /// The report being written (kept to save an allocation per request).
    line: String,
}

impl MirrorSession {
    pub(crate) fn new(
        shared: Arc<Shared>,
        host: SessionHost,
        info: SessionInfo,
    ) -> Result<Self, String> {
        let (generation, active) = shared.active().ok_or("the router is not configured")?;
        let main_name = &active.config.main;
        let main = info
            .endpoints
            .iter()
            .position(|e| &e.name == main_name)
            .ok_or_else(|| format!("Main target '{main_name}' is not listed in `targets`"))?;
        let deprecate_eof = info.deprecate_eof();
        let backends: Vec<Backend> = info
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let in_use = e.can_connect && host.connect(i);
                Backend {
                    endpoint: i,
                    name: e.name.clone(),
                    in_use,
                    lost: !in_use,
                    expects: VecDeque::new(),
                    tracker: ReplyTracker::new(deprecate_eof),
                    crc: crc32fast::Hasher::new(),
                    next_write: 0,
                    lag_bytes: 0,
                    lag_requests: 0,
                    reconnect_logged: false,
                    reconnected_at: None,
                    typed: None,
                    stats: shared.stats.target(&e.name),
                }
            })
            .collect();
        if !backends[main].in_use {
            return Err(format!("cannot connect to main target '{main_name}'"));
        }
        for b in backends.iter().filter(|b| !b.in_use) {
            log_warning!(
                "session {}: target '{}' is not available, mirroring without it",
                info.id,
                b.name
            );
        }
        Ok(MirrorSession {
            shared,
            active,
            generation,
            host,
            id: info.id,
            backends,
            main,
            reports: 0,
            log: VecDeque::new(),
            next_seq: 0,
            receiving: None,
            held: None,
            history: History::default(),
            statements: HashMap::new(),
            preparing: None,
            main_in_trx: false,
            line: String::new(),
        })
    }

    fn config(&self) -> &Config {
        &self.active.config
    }

    /// Picks up a changed router configuration (one atomic load when nothing changed).
    fn refresh(&mut self) {
        if self.shared.generation() != self.generation {
            if let Some((g, a)) = self.shared.active() {
                self.generation = g;
                self.active = a;
            }
        }
    }

    fn index_of(&self, endpoint: usize) -> Option<usize> {
        self.backends.iter().position(|b| b.endpoint == endpoint)
    }

    fn entry(&self, seq: u64) -> Option<&Entry> {
        let front = self.log.front()?.seq;
        self.log.get(seq.checked_sub(front)? as usize)
    }

    fn entry_mut(&mut self, seq: u64) -> Option<&mut Entry> {
        let front = self.log.front()?.seq;
        self.log.get_mut(seq.checked_sub(front)? as usize)
    }
}

impl RouterSession for MirrorSession {
    fn route_query(&mut self, packet: &[u8]) -> Result<(), String> {
        let id = self.host.packet_id();
        if let Some(seq) = self.receiving {
            if self.continue_request(seq, packet, id)? {
                return Ok(());
            }
        }
        self.refresh();
        self.new_request(packet, id)
    }

    fn client_reply(&mut self, endpoint: usize, data: &[u8]) -> Result<(), String> {
        let Some(i) = self.index_of(endpoint) else {
            return Ok(());
        };
        self.on_reply(i, data)
    }

    fn handle_error(&mut self, endpoint: usize, message: &str) -> bool {
        let Some(i) = self.index_of(endpoint) else {
            return true;
        };
        if let Err(e) = self
            .fail(i, message, flow::Failure::Error)
            .and_then(|_| self.settle(None))
        {
            bridge::log_error!("session {}: {e}", self.id);
            return false;
        }
        true
    }
}

impl Drop for MirrorSession {
    /// Requests main answered but some target never did (sync=false: the session ended
    /// first) are still reported, with the targets that answered.
    fn drop(&mut self) {
        while let Some(e) = self.log.pop_front() {
            if !e.sync && e.expects_reply && e.part(self.main).outcome.is_some() {
                self.report(&e);
            }
        }
    }
}
