//! One client session.
//!
//! Client requests are handled one at a time: a request that expects a reply is "in flight"
//! until its reply has fully reached the client, and later packets wait in a queue (so replies
//! from different shards never interleave, unlike the native router with pipelining clients).
//! Packets that belong to the request in flight pass at once: the rest of a 16 MiB+ request
//! and LOAD DATA LOCAL INFILE data.
//!
//! Every write to a backend pushes what its reply is for onto that backend's FIFO: the client,
//! nobody (replicas of a session command), the shard mapping, the connect-time COM_INIT_DB, or
//! a merged result (SHOW TABLES over several shards). A backend that fails settles whatever it
//! owed: mapping and COM_INIT_DB count it as answered, so nothing ever waits for it.

use crate::config::Config;
use crate::route::{NoTarget, View};
use crate::shard::{cache_key, Lookup, ShardMap, MAPPING_QUERY};
use crate::sql::{analyze, like_match, Analysis, Kind};
use crate::Shared;
use bridge::host::SessionHost;
use bridge::protocol::command::*;
use bridge::protocol::packet::{self, write_packet, Packets, MAX_PAYLOAD};
use bridge::protocol::reply::{ReplyError, ReplyState};
use bridge::protocol::resultset::{err_packet, text_resultset};
use bridge::protocol::rows::{is_row, resultset_from_payloads, text_row};
use bridge::protocol::{will_respond, ReplyTracker};
use bridge::router::{RouterSession, SessionInfo};
use bridge::{log_error, log_info, log_warning};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Client,
    Ignore,
    Mapping,
    InitDb,
    Gather,
}

#[derive(Default)]
struct Gathered {
    count: Vec<u8>,
    defs: Vec<Vec<u8>>,
    rows: Vec<Vec<u8>>,
    error: Option<Vec<u8>>,
    status: u16,
}

struct Backend {
    endpoint: usize,
    name: String,
    in_use: bool,
    tracker: ReplyTracker,
    pending: VecDeque<(u8, Expect)>,
    gathered: Gathered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No map yet: built at the first client packet.
    Fresh,
    Mapping,
    /// The connect-time database is being applied.
    InitDb,
    Ready,
    /// Killed (duplicates, unknown database, no map).
    Failed,
}

struct Queued {
    packet: Vec<u8>,
    id: u32,
    hint: Option<String>,
}

pub struct Session {
    shared: Arc<Shared>,
    host: SessionHost,
    id: u64,
    user: String,
    client_host: String,
    cfg: Arc<Config>,
    key: String,
    deprecate_eof: bool,
    backends: Vec<Backend>,
    /// Server names in the service's order: location lists (and the duplicate message) follow
    /// it, so they do not depend on which server answered the mapping query first.
    server_order: Vec<String>,
    state: State,
    map: Arc<ShardMap>,
    /// When the map in use was built (started).
    map_time: Instant,
    building: ShardMap,
    mapping_started: Instant,
    mapping_left: usize,
    /// This session holds the cache's update slot.
    claimed: bool,
    connect_db: Option<String>,
    init_db_left: usize,
    current_db: String,
    queue: VecDeque<Queued>,
    /// Sequence number of the client request being answered, until the first byte of its
    /// answer went out: an error that ends the session then answers it in sequence, so every
    /// client can read it (the native router sends it with sequence 0, which most connectors
    /// report as "packets out of sync" instead of the message).
    answering: Option<u8>,
    /// A client request's reply is awaited.
    busy: bool,
    previous: Option<usize>,
    /// `USE db` in flight: becomes the current database if the replier says OK.
    pending_use: Option<String>,
    /// COM_CHANGE_USER in flight: (user, database). On success the session maps again with
    /// the new user's view (the native router keeps the old user's map).
    pending_user: Option<(String, String)>,
    /// A statement that creates, drops or renames databases or tables is in flight: once it
    /// completed, every cached map is invalidated and this session maps again.
    pending_schema_change: bool,
    /// A USE of an unknown database triggered a remap (refresh_databases): once only.
    remapped_for_use: bool,
    ps_text: HashMap<String, usize>,
    ps_bin: HashMap<u32, usize>,
    last_prepare: Option<usize>,
    load_target: Option<usize>,
    continuation: Option<Vec<usize>>,
    gather_left: usize,
}

/// User and database of a COM_CHANGE_USER payload (after the command byte): user NUL,
/// length-prefixed auth data (every client MaxScale accepts has SECURE_CONNECTION), database
/// NUL. A packet that does not parse leaves the map as it is.
fn change_user_target(p: &[u8]) -> Option<(String, String)> {
    let nul = p.iter().position(|&b| b == 0)?;
    let user = String::from_utf8_lossy(&p[..nul]).into_owned();
    let rest = &p[nul + 1..];
    let auth_len = *rest.first()? as usize;
    let rest = rest.get(1 + auth_len..)?;
    let db_end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    Some((user, String::from_utf8_lossy(&rest[..db_end]).into_owned()))
}

/// The cache key of a session: its user and the servers it is connected to.
fn session_key(user: &str, backends: &[Backend]) -> String {
    let names: Vec<String> = backends.iter().filter(|b| b.in_use).map(|b| b.name.clone()).collect();
    cache_key(user, &names)
}

/// A COM_INIT_DB the router sends on its own (not a client packet).
fn init_db_packet(db: &str) -> Vec<u8> {
    let mut payload = vec![COM_INIT_DB];
    payload.extend_from_slice(db.as_bytes());
    let mut pkt = Vec::new();
    write_packet(&mut pkt, 0, &payload);
    pkt
}

fn payload_str(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, host: SessionHost, info: SessionInfo) -> Result<Self, String> {
        let cfg = shared.config();
        let connect_db = (!info.default_db.is_empty()).then(|| info.default_db.clone());
        if connect_db.is_some() {
            // Backends must not get the database: it may exist on one shard only.
            host.clear_connect_db();
        }
        let deprecate_eof = info.deprecate_eof();
        let mut backends = Vec::new();
        for (i, e) in info.endpoints.iter().enumerate() {
            let in_use = e.can_connect && host.connect(i);
            if !in_use {
                log_info!("session {}: '{}' is not available", info.id, e.name);
            }
            backends.push(Backend {
                endpoint: i,
                name: e.name.clone(),
                in_use,
                tracker: ReplyTracker::new(deprecate_eof),
                pending: VecDeque::new(),
                gathered: Gathered::default(),
            });
        }
        if !backends.iter().any(|b| b.in_use) {
            log_error!("Failed to connect to any of the backend servers");
            return Err("Failed to connect to any of the backend servers".into());
        }
        let key = session_key(&info.user, &backends);
        Ok(Session {
            shared,
            host,
            id: info.id,
            user: info.user,
            client_host: info.client_host,
            cfg,
            key,
            deprecate_eof,
            server_order: backends.iter().map(|b: &Backend| b.name.clone()).collect(),
            backends,
            state: State::Fresh,
            map: Arc::new(ShardMap::default()),
            map_time: Instant::now(),
            building: ShardMap::default(),
            mapping_started: Instant::now(),
            mapping_left: 0,
            claimed: false,
            connect_db,
            init_db_left: 0,
            current_db: String::new(),
            queue: VecDeque::new(),
            answering: None,
            busy: false,
            previous: None,
            pending_use: None,
            pending_user: None,
            pending_schema_change: false,
            remapped_for_use: false,
            ps_text: HashMap::new(),
            ps_bin: HashMap::new(),
            last_prepare: None,
            load_target: None,
            continuation: None,
            gather_left: 0,
        })
    }

    /// After a successful COM_CHANGE_USER: the shard map is the new user's (built or taken
    /// from the cache at the next request), the current database the one the client named.
    fn changed_user(&mut self, user: String, db: String) {
        self.release_claim();
        log_info!("session {}: user changed from '{}' to '{user}': mapping with the new user's view", self.id, self.user);
        self.key = session_key(&user, &self.backends);
        self.user = user;
        self.map = Arc::new(ShardMap::default());
        self.current_db = db;
        self.previous = None;
        self.state = State::Fresh;
    }

    /// After DDL through this router: the databases and tables it created or removed must be
    /// routable at once, here and in new sessions (the native router waits for
    /// `refresh_interval`).
    fn schema_changed(&mut self) {
        log_info!("session {}: databases or tables changed: the shard maps are invalidated", self.id);
        self.shared.cache.invalidate();
        self.release_claim();
        self.state = State::Fresh;
    }

    /// Gives up the cache's update slot if this session holds it.
    fn release_claim(&mut self) {
        if self.claimed {
            self.shared.cache.release(&self.key);
            self.claimed = false;
        }
    }

    fn servers(&self) -> Vec<(String, bool)> {
        self.backends.iter().map(|b| (b.name.clone(), b.in_use)).collect()
    }

    /// Writes a packet to backend `i`, expecting a reply of kind `kind` (if the command has one).
    fn write(&mut self, i: usize, pkt: &[u8], id: u32, kind: Expect) -> bool {
        let b = &mut self.backends[i];
        if !b.in_use || !self.host.write_with_id(b.endpoint, pkt, id) {
            return false;
        }
        let cmd = pkt.get(4).copied().unwrap_or(0);
        if will_respond(cmd) {
            b.pending.push_back((cmd, kind));
            if b.pending.len() == 1 {
                b.tracker.start(cmd);
            }
        }
        true
    }

    fn reply_client(&mut self, data: &[u8]) -> Result<(), String> {
        self.answering = None;
        if self.host.reply(None, data, true) {
            Ok(())
        } else {
            Err("cannot write to the client".into())
        }
    }

    fn kill(&mut self, msg: &str) {
        let request = match self.answering.take() {
            Some(seq) => Some(seq),
            None if !self.busy => self.queue.front().and_then(|q| q.packet.get(3).copied()),
            None => None,
        };
        self.state = State::Failed;
        self.queue.clear();
        self.busy = false;
        self.release_claim();
        match request {
            Some(seq) if !msg.is_empty() => {
                self.host.reply(None, &err_packet(seq.wrapping_add(1), 1927, "70100", msg), true);
                self.host.kill("");
            }
            _ => self.host.kill(msg),
        }
    }

    // ---- shard map -------------------------------------------------------------------------

    fn obtain_map(&mut self) {
        let cfg = self.cfg.clone();
        match self.shared.cache.lookup(&self.key, cfg.refresh_interval, cfg.max_staleness) {
            Lookup::Hit(map, t) | Lookup::Stale(map, t) => {
                self.map = map;
                self.map_time = t;
                self.after_map();
            }
            Lookup::Build => self.start_mapping(true),
            Lookup::BuildUnclaimed => self.start_mapping(false),
        }
    }

    fn start_mapping(&mut self, claimed: bool) {
        self.claimed = claimed;
        self.state = State::Mapping;
        self.building = ShardMap::default();
        self.mapping_started = Instant::now();
        let mut q = Vec::new();
        let mut payload = vec![COM_QUERY];
        payload.extend_from_slice(MAPPING_QUERY.as_bytes());
        write_packet(&mut q, 0, &payload);
        let mut sent = 0;
        for i in 0..self.backends.len() {
            if self.write(i, &q, 0, Expect::Mapping) {
                sent += 1;
            }
        }
        self.mapping_left = sent;
        if sent == 0 {
            // MXS-5152: with nothing sent, waiting would be forever.
            log_error!("session {}: the mapping query could not be sent to any server", self.id);
            self.kill("Failed to map any of the databases");
        }
    }

    fn mapping_done(&mut self, i: usize, error: Option<String>) {
        if let Some(e) = error {
            log_warning!("session {}: mapping query returned an error on '{}'; ignoring server: {e}", self.id, self.backends[i].name);
        }
        self.mapping_left = self.mapping_left.saturating_sub(1);
        if self.mapping_left > 0 || self.state != State::Mapping {
            return;
        }
        let map = std::mem::take(&mut self.building);
        let dups = map.duplicates(&self.cfg);
        if !dups.is_empty() {
            for d in &dups {
                let servers: Vec<String> = d.servers.iter().map(|s| format!("'{s}'")).collect();
                log_error!("'{}' found on servers {} for user '{}'@'{}'.", d.name, servers.join(","), self.user, self.client_host);
            }
            log_error!("Duplicate tables found, closing session.");
            self.kill("Error: duplicate tables found on two different shards.");
            return;
        }
        if map.is_empty() {
            // MXS-5158: an empty map is never cached, and the session does not loop.
            log_error!("session {}: no server answered the mapping query", self.id);
            self.kill("Failed to map any of the databases");
            return;
        }
        let map = Arc::new(map);
        self.shared.cache.publish(&self.key, map.clone(), self.mapping_started, self.claimed);
        self.claimed = false;
        self.map = map;
        self.map_time = self.mapping_started;
        self.after_map();
    }

    fn after_map(&mut self) {
        let Some(db) = self.connect_db.take() else {
            self.state = State::Ready;
            return;
        };
        let holders = self.map.db_servers(&db);
        let pkt = init_db_packet(&db);
        let mut sent = 0;
        for i in 0..self.backends.len() {
            if holders.contains(&self.backends[i].name) && self.write(i, &pkt, 0, Expect::InitDb) {
                sent += 1;
            }
        }
        if sent == 0 {
            let mut msg = format!("Unknown database '{db}'");
            if self.cfg.debug {
                msg.push_str(&format!(" ([{}]: DB not found on connect)", self.id));
            }
            log_info!("session {}: connecting to a non-existent database '{db}'", self.id);
            self.kill(&msg);
            return;
        }
        self.current_db = db;
        self.init_db_left = sent;
        self.state = State::InitDb;
    }

    fn init_db_done(&mut self) {
        self.init_db_left = self.init_db_left.saturating_sub(1);
        if self.init_db_left == 0 && self.state == State::InitDb {
            self.state = State::Ready;
        }
    }

    // ---- routing ---------------------------------------------------------------------------

    /// Routes queued packets while nothing is awaited.
    fn drain(&mut self) -> Result<(), String> {
        loop {
            if self.queue.is_empty() {
                return Ok(());
            }
            match self.state {
                State::Fresh => {
                    self.obtain_map();
                    continue;
                }
                State::Ready => {}
                _ => return Ok(()),
            }
            if self.busy {
                return Ok(());
            }
            let q = self.queue.pop_front().expect("not empty");
            self.answering = q.packet.get(3).copied();
            self.route(q)?;
        }
    }

    fn view(&self) -> (ShardMapRef, Vec<(String, bool)>) {
        (self.map.clone(), self.servers())
    }

    /// Runs `f` with a routing view of the session.
    fn decide<T>(&self, f: impl FnOnce(&View) -> T) -> T {
        let (map, servers) = self.view();
        let v = View {
            map: &map,
            servers: &servers,
            current_db: &self.current_db,
            preferred: self.cfg.preferred_server.as_deref(),
            previous: self.previous,
        };
        f(&v)
    }

    fn route(&mut self, q: Queued) -> Result<(), String> {
        let (seq, payload) = {
            let p = packet::single(&q.packet).map_err(|e| format!("client sent a {e}"))?;
            (p.seq, p.payload.to_vec())
        };
        let Some(&cmd) = payload.first() else {
            return self.reply_client(&err_packet(seq.wrapping_add(1), 1835, "08S01", "Malformed communication packet"));
        };
        let body = &payload[1..];
        let hint_owned = q.hint.clone();
        let hint = hint_owned.as_deref();
        match cmd {
            COM_QUIT => {
                for i in 0..self.backends.len() {
                    self.write(i, &q.packet, q.id, Expect::Ignore);
                }
                Ok(())
            }
            COM_INIT_DB => {
                let db = payload_str(body);
                self.change_db(q, db)
            }
            COM_QUERY => {
                let sql = payload_str(body);
                let a = analyze(&sql);
                self.route_query_text(q, cmd, &a, hint)
            }
            COM_STMT_PREPARE => {
                let a = analyze(&payload_str(body));
                let t = self.decide(|v| v.query_target(&a, hint));
                let t = self.target_or_fail(t, cmd)?;
                self.last_prepare = t;
                self.single(q, t)
            }
            COM_STMT_EXECUTE | COM_STMT_FETCH | COM_STMT_RESET | COM_STMT_SEND_LONG_DATA | COM_STMT_BULK_EXECUTE | COM_STMT_CLOSE => {
                let id = body.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                let known = match id {
                    Some(0xFFFF_FFFF) => self.last_prepare,
                    Some(id) if cmd == COM_STMT_CLOSE => self.ps_bin.remove(&id),
                    Some(id) => self.ps_bin.get(&id).copied(),
                    None => None,
                };
                let t = match known.filter(|&i| self.backends[i].in_use) {
                    Some(i) => Some(i),
                    None if known.is_some() => {
                        return self.fail_request(cmd, &format!("the server that prepared the statement ('{}') is gone", self.backends[known.unwrap()].name))
                    }
                    None => {
                        let t = self.decide(|v| v.query_target(&Analysis { kinds: vec![], tables: vec![], databases: vec![] }, hint));
                        self.target_or_fail(t, cmd)?
                    }
                };
                self.single(q, t)
            }
            COM_PING | COM_SET_OPTION | COM_RESET_CONNECTION | COM_CHANGE_USER | 0x07 | 0x0D => {
                if cmd == COM_RESET_CONNECTION || cmd == COM_CHANGE_USER {
                    self.ps_text.clear();
                    self.ps_bin.clear();
                }
                if cmd == COM_CHANGE_USER {
                    self.pending_user = change_user_target(q.packet.get(5..).unwrap_or_default());
                }
                self.to_all(q)
            }
            _ => {
                let t = self.decide(|v| match hint {
                    Some(_) => v.query_target(&Analysis { kinds: vec![], tables: vec![], databases: vec![] }, hint),
                    None => v.fallback(),
                });
                let t = self.target_or_fail(t, cmd)?;
                self.single(q, t)
            }
        }
    }

    fn route_query_text(&mut self, q: Queued, cmd: u8, a: &Analysis, hint: Option<&str>) -> Result<(), String> {
        self.pending_schema_change = a.kinds.contains(&Kind::SchemaChange);
        match a.kind() {
            Kind::ShowDatabases { like, .. } => {
                let rows: Vec<Vec<Option<String>>> = self
                    .map
                    .dbs
                    .keys()
                    .filter(|d| like.as_deref().is_none_or(|p| like_match(p, d)))
                    .map(|d| vec![Some(d.clone())])
                    .collect();
                self.reply_client(&text_resultset(&["Database"], &rows, 0, self.deprecate_eof))
            }
            Kind::ShowShards => {
                let rows: Vec<Vec<Option<String>>> = self.map.shard_rows().into_iter().map(|(n, s)| vec![Some(n), Some(s)]).collect();
                self.reply_client(&text_resultset(&["Database", "Server"], &rows, 0, self.deprecate_eof))
            }
            Kind::ShowTables { db } if hint.is_none() => {
                let db = db.unwrap_or_else(|| self.current_db.clone());
                let holders: Vec<usize> = if db.is_empty() {
                    vec![]
                } else {
                    let names = self.map.db_servers(&db);
                    (0..self.backends.len()).filter(|&i| self.backends[i].in_use && names.contains(&self.backends[i].name)).collect()
                };
                if holders.len() > 1 {
                    return self.gather(q, &holders);
                }
                let t = self.decide(|v| v.query_target(a, hint));
                let t = self.target_or_fail(t, cmd)?;
                self.single(q, t)
            }
            Kind::Use(db) if hint.is_none() => self.change_db(q, db),
            Kind::Session => self.to_all(q),
            Kind::Trx if hint.is_none() => self.to_all(q),
            Kind::Prepare { name, sql } => {
                let inner = sql.map(|s| analyze(&s)).unwrap_or(Analysis { kinds: vec![], tables: vec![], databases: vec![] });
                let t = self.decide(|v| v.query_target(&inner, hint));
                let t = self.target_or_fail(t, cmd)?;
                if let Some(t) = t {
                    self.ps_text.insert(name.to_lowercase(), t);
                }
                self.single(q, t)
            }
            Kind::Execute { name } | Kind::Deallocate { name } => {
                let known = if matches!(a.kind(), Kind::Deallocate { .. }) {
                    self.ps_text.remove(&name.to_lowercase())
                } else {
                    self.ps_text.get(&name.to_lowercase()).copied()
                };
                let t = match known {
                    Some(i) if self.backends[i].in_use => Some(i),
                    Some(i) => return self.fail_request(cmd, &format!("the server that prepared '{name}' ('{}') is gone", self.backends[i].name)),
                    None => {
                        let t = self.decide(|v| v.query_target(a, hint));
                        self.target_or_fail(t, cmd)?
                    }
                };
                self.single(q, t)
            }
            Kind::ExecuteImmediate { sql } => {
                let inner = sql.map(|s| analyze(&s)).unwrap_or(Analysis { kinds: vec![], tables: vec![], databases: vec![] });
                let t = self.decide(|v| v.query_target(&inner, hint));
                let t = self.target_or_fail(t, cmd)?;
                self.single(q, t)
            }
            _ => {
                let t = self.decide(|v| v.query_target(a, hint));
                let t = self.target_or_fail(t, cmd)?;
                self.single(q, t)
            }
        }
    }

    /// Turns a routing failure into the end of the session (with a clear message) or `None`
    /// when the session already ended.
    fn target_or_fail(&mut self, t: Result<usize, NoTarget>, cmd: u8) -> Result<Option<usize>, String> {
        match t {
            Ok(i) => Ok(Some(i)),
            Err(NoTarget::Lost(servers)) => {
                if let Some(i) = self.reconnect(&servers) {
                    return Ok(Some(i));
                }
                let msg = format!("Could not find valid server for {}: '{}' is not available", command_name(cmd), servers.join("', '"));
                log_error!("session {}: {msg}, closing connection.", self.id);
                self.kill(&msg);
                Ok(None)
            }
            Err(NoTarget::None) => Err(format!("Could not find valid server for {}, closing connection.", command_name(cmd))),
        }
    }

    /// Opens again the first of `servers` whose connection was lost, when the host can give
    /// the new connection the session's state (it replays the session-command history, within
    /// the service's max_sescmd_history and unless disable_sescmd_history). The current
    /// database, which this router applies itself, follows the history.
    fn reconnect(&mut self, servers: &[String]) -> Option<usize> {
        if !self.host.can_recover_state() {
            return None;
        }
        for name in servers {
            let Some(i) = self.backends.iter().position(|b| &b.name == name && !b.in_use) else { continue };
            if !self.host.connect(self.backends[i].endpoint) {
                continue;
            }
            log_info!("session {}: reconnected to '{name}', the session's history is replayed on it", self.id);
            let b = &mut self.backends[i];
            b.in_use = true;
            b.pending.clear();
            b.tracker = ReplyTracker::new(self.deprecate_eof);
            if !self.current_db.is_empty() && self.map.db_servers(&self.current_db).contains(name) {
                let pkt = init_db_packet(&self.current_db);
                if !self.write(i, &pkt, 0, Expect::Ignore) {
                    continue;
                }
            }
            return Some(i);
        }
        None
    }

    fn fail_request(&mut self, cmd: u8, why: &str) -> Result<(), String> {
        let msg = format!("Could not find valid server for {}: {why}", command_name(cmd));
        log_error!("session {}: {msg}, closing connection.", self.id);
        self.kill(&msg);
        Ok(())
    }

    /// Sends a request to one backend (`None`: the session was just ended).
    fn single(&mut self, q: Queued, t: Option<usize>) -> Result<(), String> {
        let Some(t) = t else { return Ok(()) };
        let cmd = q.packet.get(4).copied().unwrap_or(0);
        if !self.write(t, &q.packet, q.id, Expect::Client) {
            return Err(format!("write to '{}' failed", self.backends[t].name));
        }
        self.previous = Some(t);
        if q.packet.len().saturating_sub(4) == MAX_PAYLOAD {
            self.continuation = Some(vec![t]);
        }
        if will_respond(cmd) {
            self.busy = true;
        }
        Ok(())
    }

    /// A session command: every backend runs it, one of them answers the client.
    fn to_all(&mut self, q: Queued) -> Result<(), String> {
        let replier = match self.decide(|v| v.any()) {
            Ok(i) => i,
            Err(_) => return Err("no server left for a session command".into()),
        };
        let cmd = q.packet.get(4).copied().unwrap_or(0);
        let mut written = Vec::new();
        for i in 0..self.backends.len() {
            if !self.backends[i].in_use {
                continue;
            }
            let kind = if i == replier { Expect::Client } else { Expect::Ignore };
            if self.write(i, &q.packet, q.id, kind) {
                written.push(i);
            } else if i != replier {
                log_warning!("session {}: failed to execute session command in '{}'", self.id, self.backends[i].name);
                self.lose(i);
            } else {
                return Err(format!("write of a session command to '{}' failed", self.backends[i].name));
            }
        }
        if q.packet.len().saturating_sub(4) == MAX_PAYLOAD {
            self.continuation = Some(written);
        }
        if will_respond(cmd) {
            self.busy = true;
        }
        Ok(())
    }

    /// USE / COM_INIT_DB: to every server holding the database, the first answers.
    fn change_db(&mut self, q: Queued, db: String) -> Result<(), String> {
        let names = self.map.db_servers(&db);
        let holders: Vec<usize> = (0..self.backends.len()).filter(|&i| self.backends[i].in_use && names.contains(&self.backends[i].name)).collect();
        if holders.is_empty() {
            let stale = self.map_time.elapsed() > self.cfg.refresh_interval;
            if self.cfg.refresh_databases && stale && !self.remapped_for_use {
                log_info!("session {}: '{db}' is not in the map, which is stale: mapping again", self.id);
                self.remapped_for_use = true;
                self.queue.push_front(q);
                self.start_mapping(false);
                return Ok(());
            }
            log_info!("session {}: client is trying to use an unknown database '{db}'", self.id);
            // One server answers (normally "Unknown database"); the current database stays.
            let t = self.decide(|v| v.any());
            let t = self.target_or_fail(t, COM_INIT_DB)?;
            return self.single(q, t);
        }
        self.remapped_for_use = false;
        for (n, &i) in holders.iter().enumerate() {
            let kind = if n == 0 { Expect::Client } else { Expect::Ignore };
            if !self.write(i, &q.packet, q.id, kind) && n == 0 {
                return Err(format!("write to '{}' failed", self.backends[i].name));
            }
        }
        self.previous = Some(holders[0]);
        self.pending_use = Some(db);
        self.busy = true;
        Ok(())
    }

    /// SHOW TABLES of a database spread over several shards: the union of their answers.
    fn gather(&mut self, q: Queued, holders: &[usize]) -> Result<(), String> {
        self.gather_left = 0;
        for &i in holders {
            self.backends[i].gathered = Gathered::default();
            if self.write(i, &q.packet, q.id, Expect::Gather) {
                self.gather_left += 1;
            }
        }
        if self.gather_left == 0 {
            return Err("SHOW TABLES could not be sent to any shard".into());
        }
        self.busy = true;
        Ok(())
    }

    fn gather_done(&mut self) -> Result<(), String> {
        self.gather_left = self.gather_left.saturating_sub(1);
        if self.gather_left > 0 {
            return Ok(());
        }
        self.busy = false;
        let parts: Vec<Gathered> = self.backends.iter_mut().map(|b| std::mem::take(&mut b.gathered)).collect();
        if let Some(err) = parts.iter().find_map(|g| g.error.clone()) {
            return self.reply_client(&err);
        }
        let Some(first) = parts.iter().find(|g| !g.count.is_empty()) else {
            return self.reply_client(&err_packet(1, 2013, "HY000", "Lost connection to every shard holding the database"));
        };
        let mut rows: Vec<Vec<u8>> = parts.iter().flat_map(|g| g.rows.iter().cloned()).collect();
        rows.sort();
        rows.dedup();
        let status = first.status & !bridge::protocol::status::MORE_RESULTS_EXIST;
        let out = resultset_from_payloads(&first.count, &first.defs, &rows, status, self.deprecate_eof);
        self.reply_client(&out)
    }

    /// A backend is gone: it settles what it owed. Err: the session cannot go on.
    fn lose(&mut self, i: usize) -> Option<String> {
        let b = &mut self.backends[i];
        if !b.in_use {
            return None;
        }
        b.in_use = false;
        self.host.close(b.endpoint);
        let pending: Vec<Expect> = b.pending.drain(..).map(|(_, k)| k).collect();
        b.tracker = ReplyTracker::new(self.deprecate_eof);
        let name = b.name.clone();
        let mut fatal = None;
        if self.load_target == Some(i) {
            fatal = Some(format!("'{name}' failed during LOAD DATA LOCAL INFILE"));
            self.load_target = None;
        }
        for k in pending {
            match k {
                Expect::Client => fatal = Some(format!("'{name}' failed while its reply was awaited")),
                Expect::Ignore => {}
                Expect::Mapping => self.mapping_done(i, Some("connection failed".into())),
                Expect::InitDb => self.init_db_done(),
                Expect::Gather => {
                    if let Err(e) = self.gather_done() {
                        fatal = Some(e);
                    }
                }
            }
        }
        if fatal.is_none() && !self.backends.iter().any(|b| b.in_use) {
            fatal = Some("All connections have failed".into());
        }
        fatal
    }

    fn on_reply(&mut self, i: usize, data: &[u8]) -> Result<(), String> {
        let mut out: Vec<u8> = Vec::new();
        let packets = Packets::new(data);
        let mut fatal: Option<String> = None;
        for p in packets {
            let p = match p {
                Ok(p) => p,
                Err(e) => {
                    fatal = Some(format!("malformed reply from '{}': {e}", self.backends[i].name));
                    break;
                }
            };
            let b = &mut self.backends[i];
            let Some(&(cmd, kind)) = b.pending.front() else {
                match ReplyError::parse(p.payload) {
                    Some(e) => log_warning!("session {}: '{}' sent an unsolicited error: {e}", self.id, b.name),
                    None => log_info!("session {}: '{}' sent an unsolicited packet", self.id, b.name),
                }
                continue;
            };
            let before = b.tracker.state();
            if let Err(v) = b.tracker.feed(&p) {
                log_error!("session {}: protocol error in the reply of '{}': {v}", self.id, b.name);
                if kind == Expect::Client {
                    fatal = Some(format!("protocol error in the reply of '{}'", b.name));
                }
                if let Some(f) = self.lose(i) {
                    fatal = Some(f);
                }
                break;
            }
            let raw = &data[packets_offset(data, &p)..packets_offset(data, &p) + 4 + p.payload.len()];
            match kind {
                Expect::Client => {
                    out.extend_from_slice(raw);
                    if cmd == COM_STMT_PREPARE && before == ReplyState::Start && p.first() == Some(0x00) && p.payload.len() >= 5 {
                        let id = u32::from_le_bytes([p.payload[1], p.payload[2], p.payload[3], p.payload[4]]);
                        self.ps_bin.insert(id, i);
                        self.last_prepare = Some(i);
                    }
                }
                Expect::Ignore | Expect::InitDb => {}
                Expect::Mapping => {
                    if is_row(before, &p, self.deprecate_eof) {
                        if let Some(v) = text_row(p.payload) {
                            if let (Some(Some(db)), Some(t)) = (v.first(), v.get(1)) {
                                let db = String::from_utf8_lossy(db).into_owned();
                                let t = t.map(|t| String::from_utf8_lossy(t).into_owned()).unwrap_or_default();
                                let name = b.name.clone();
                                self.building.add(&db, &t, &name, &self.server_order);
                            }
                        }
                    }
                }
                Expect::Gather => {
                    let g = &mut b.gathered;
                    if is_row(before, &p, self.deprecate_eof) {
                        g.rows.push(p.payload.to_vec());
                    } else if p.is_err() && g.error.is_none() {
                        let mut e = Vec::new();
                        write_packet(&mut e, 1, p.payload);
                        g.error = Some(e);
                    } else if before == ReplyState::Start && g.count.is_empty() {
                        g.count = p.payload.to_vec();
                    } else if matches!(before, ReplyState::ColumnDefs { .. }) {
                        g.defs.push(p.payload.to_vec());
                    }
                }
            }
            let b = &mut self.backends[i];
            if b.tracker.is_load_data() && kind == Expect::Client {
                self.load_target = Some(i);
            }
            if !b.tracker.is_complete() {
                continue;
            }
            let error = b.tracker.error().map(|e| e.to_string());
            b.gathered.status = b.tracker.server_status();
            b.pending.pop_front();
            if let Some(&(next, _)) = b.pending.front() {
                b.tracker.start(next);
            }
            match kind {
                Expect::Client => {
                    if self.load_target == Some(i) {
                        self.load_target = None;
                    }
                    if let Some(db) = self.pending_use.take() {
                        if error.is_none() {
                            self.current_db = db;
                        }
                    }
                    if let Some((user, db)) = self.pending_user.take() {
                        if error.is_none() {
                            self.changed_user(user, db);
                        }
                    }
                    if std::mem::take(&mut self.pending_schema_change) {
                        self.schema_changed();
                    }
                    self.answering = None;
                    if !self.host.reply(Some(self.backends[i].endpoint), &out, true) {
                        return Err("cannot write to the client".into());
                    }
                    out.clear();
                    self.busy = false;
                }
                Expect::Ignore => {}
                Expect::Mapping => self.mapping_done(i, error),
                Expect::InitDb => {
                    if let Some(e) = error {
                        log_warning!("session {}: '{}' refused the connect-time database: {e}", self.id, self.backends[i].name);
                    }
                    self.init_db_done()
                }
                Expect::Gather => self.gather_done()?,
            }
        }
        if !out.is_empty() {
            self.answering = None;
            if !self.host.reply(Some(self.backends[i].endpoint), &out, false) {
                return Err("cannot write to the client".into());
            }
        }
        if let Some(f) = fatal {
            return Err(f);
        }
        Ok(())
    }
}

type ShardMapRef = Arc<ShardMap>;

/// The offset of packet `p` (borrowed from `data`) within `data`.
fn packets_offset(data: &[u8], p: &bridge::protocol::Packet<'_>) -> usize {
    (p.payload.as_ptr() as usize - data.as_ptr() as usize) - 4
}

impl RouterSession for Session {
    fn route_query(&mut self, packet: &[u8]) -> Result<(), String> {
        if self.state == State::Failed {
            return Ok(());
        }
        let id = self.host.packet_id();
        // LOCAL INFILE data and the rest of 16 MiB+ requests belong to the request in flight.
        if let Some(t) = self.load_target {
            let last = packet.len() <= 4;
            if !self.host.write_with_id(self.backends[t].endpoint, packet, id) {
                return Err(format!("LOAD DATA: write to '{}' failed", self.backends[t].name));
            }
            if last {
                self.load_target = None;
            }
            return Ok(());
        }
        if let Some(targets) = self.continuation.take() {
            for &t in &targets {
                if self.backends[t].in_use {
                    self.host.write_with_id(self.backends[t].endpoint, packet, id);
                }
            }
            if packet.len().saturating_sub(4) == MAX_PAYLOAD {
                self.continuation = Some(targets);
            }
            return Ok(());
        }
        let hint = self.host.route_hint();
        self.queue.push_back(Queued { packet: packet.to_vec(), id, hint });
        self.drain()
    }

    fn client_reply(&mut self, endpoint: usize, data: &[u8]) -> Result<(), String> {
        let Some(i) = self.backends.iter().position(|b| b.endpoint == endpoint) else { return Ok(()) };
        if !self.backends[i].in_use {
            return Ok(());
        }
        self.on_reply(i, data)?;
        self.drain()
    }

    fn handle_error(&mut self, endpoint: usize, message: &str) -> bool {
        let Some(i) = self.backends.iter().position(|b| b.endpoint == endpoint) else { return true };
        let name = self.backends[i].name.clone();
        match self.lose(i) {
            Some(why) => {
                log_error!("session {}: '{name}' failed ({message}): {why}", self.id);
                false
            }
            None => {
                log_warning!("session {}: '{name}' failed ({message}); continuing without it", self.id);
                self.drain().is_ok()
            }
        }
    }

    fn resume(&mut self) -> Result<(), String> {
        self.drain()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.release_claim();
    }
}

#[cfg(test)]
mod tests {
    use super::change_user_target;

    #[test]
    fn change_user_packet() {
        let mut p = b"bob\0".to_vec();
        p.push(3);
        p.extend_from_slice(&[1, 2, 3]);
        p.extend_from_slice(b"shop\0\x21\x00mysql_native_password\0");
        assert_eq!(change_user_target(&p), Some(("bob".into(), "shop".into())));
        assert_eq!(change_user_target(b"bob\0\0"), Some(("bob".into(), "".into())));
        assert_eq!(change_user_target(b"bob"), None);
        assert_eq!(change_user_target(b"bob\0\x09ab"), None, "auth data longer than the packet");
    }
}
