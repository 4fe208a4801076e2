//! One client session.
//!
//! Client requests are handled one at a time: a request that expects a reply is "in flight"
//! until its reply has fully reached the client, and later packets wait in a queue (so replies
//! from different shards never interleave, unlike the native router with pipelining clients).
//! Packets that belong to the request in flight pass at once: the rest of a 16 MiB+ request
//! and LOAD DATA LOCAL INFILE data.
//!
//! Every write to a backend pushes what its reply is for onto that backend's FIFO: the client,
//! another shard's copy of a session command (kept to answer in the replier's place), nobody,
//! the shard mapping, the connect-time COM_INIT_DB, or a merged answer. A backend that fails
//! settles whatever it owed (`failure`), so nothing ever waits for it, and a session ends only
//! when it needs a shard that cannot come back.

mod failure;
mod mapping;
mod merged;
mod reply;

use crate::config::Config;
use crate::merge::Part;
use crate::route::{NoTarget, View};
use crate::shard::{cache_key, ShardMap};
use crate::sql::{analyze, like_match, Analysis, Kind};
use crate::Shared;
use bridge::host::SessionHost;
use bridge::protocol::command::*;
use bridge::protocol::packet::{self, write_packet, MAX_PAYLOAD};
use bridge::protocol::resultset::{err_packet, text_resultset};
use bridge::protocol::status::IN_TRANS;
use bridge::protocol::{will_respond, ReplyTracker};
use bridge::router::{RouterSession, SessionInfo};
use bridge::{log_error, log_info, log_warning};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Client,
    /// A reply nobody reads (the COM_INIT_DB that follows a reconnection).
    Ignore,
    /// Another shard's copy of a session command or USE: kept while the client's reply is
    /// awaited, to answer in place of a replier that fails before answering.
    Replica,
    Mapping,
    InitDb,
    /// One shard's part of a merged answer.
    Gather,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    cmd: u8,
    kind: Expect,
    /// The client request it belongs to (`Session::req`).
    req: u64,
}

/// How much of a session command's copy is kept (OK packets and small results in practice).
const REPLICA_MAX: usize = 1 << 20;

struct Backend {
    endpoint: usize,
    name: String,
    in_use: bool,
    tracker: ReplyTracker,
    pending: VecDeque<Pending>,
    gathered: Part,
    /// The reply of the front Replica entry so far; `replica_full` once it outgrew REPLICA_MAX.
    replica: Vec<u8>,
    replica_full: bool,
    /// A reply packet arrived on this connection.
    answered: bool,
    /// The connection was opened again by `reconnect`.
    reconnected: bool,
    /// Why it cannot be opened again in this session (it would fail the same way).
    unrecoverable: Option<String>,
    /// Why it was lost.
    lost: Option<String>,
    /// It changed data inside the client's open transaction.
    trx_work: bool,
    /// It holds table locks from LOCK TABLES.
    locked: bool,
}

impl Backend {
    fn new(endpoint: usize, name: String, in_use: bool, deprecate_eof: bool) -> Self {
        Backend {
            endpoint,
            name,
            in_use,
            tracker: ReplyTracker::new(deprecate_eof),
            pending: VecDeque::new(),
            gathered: Part::default(),
            replica: Vec::new(),
            replica_full: false,
            answered: false,
            reconnected: false,
            unrecoverable: None,
            lost: None,
            trx_work: false,
            locked: false,
        }
    }
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

/// A complete reply of a session command's copy: (backend, bytes, OK, server status).
type Spare = (usize, Vec<u8>, bool, u16);

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
    /// (name, in use) of each backend, as routing decisions read it (kept, not rebuilt for
    /// every statement).
    view_servers: Vec<(String, bool)>,
    state: State,
    map: Arc<ShardMap>,
    /// When the map in use was built (started).
    map_time: Instant,
    building: ShardMap,
    mapping_started: Instant,
    mapping_left: usize,
    /// A server was lost while mapping: the map lacks its part and is not cached.
    mapping_partial: bool,
    /// This session holds the cache's update slot.
    claimed: bool,
    connect_db: Option<String>,
    init_db_left: usize,
    current_db: String,
    queue: VecDeque<Queued>,
    /// Counts client requests routed; the one in flight is `req`.
    req: u64,
    /// Sequence number of the client request being answered, until the first byte of its
    /// answer went out: an error that ends the session then answers it in sequence, so every
    /// client can read it (the native router sends it with sequence 0, which most connectors
    /// report as "packets out of sync" instead of the message).
    answering: Option<u8>,
    /// A client request's reply is awaited.
    busy: bool,
    /// The request in flight went to every shard (session command, transaction control).
    broadcast: bool,
    /// The first complete copy of the session command in flight.
    spare: Option<Spare>,
    /// The client's last reply said a transaction is open.
    in_trx: bool,
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
    /// The merged answer in flight: its shards (in order), how many still owe their part,
    /// how to merge, and for LOCK TABLES the shards that will hold locks.
    gathering: Vec<usize>,
    gather_left: usize,
    gather_mode: Option<crate::merge::Mode>,
    lock_set: Option<Vec<usize>>,
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
    let names: Vec<String> = backends
        .iter()
        .filter(|b| b.in_use)
        .map(|b| b.name.clone())
        .collect();
    cache_key(user, &names)
}

/// A packet the router sends on its own (not a client packet).
fn own_packet(cmd: u8, body: &[u8]) -> Vec<u8> {
    let mut payload = vec![cmd];
    payload.extend_from_slice(body);
    let mut pkt = Vec::new();
    write_packet(&mut pkt, 0, &payload);
    pkt
}

fn payload_str(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

fn no_names() -> Analysis {
    Analysis {
        kinds: vec![],
        tables: vec![],
        databases: vec![],
    }
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        host: SessionHost,
        info: SessionInfo,
    ) -> Result<Self, String> {
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
            backends.push(Backend::new(i, e.name.clone(), in_use, deprecate_eof));
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
            view_servers: backends
                .iter()
                .map(|b: &Backend| (b.name.clone(), b.in_use))
                .collect(),
            backends,
            state: State::Fresh,
            map: Arc::new(ShardMap::default()),
            map_time: Instant::now(),
            building: ShardMap::default(),
            mapping_started: Instant::now(),
            mapping_left: 0,
            mapping_partial: false,
            claimed: false,
            connect_db,
            init_db_left: 0,
            current_db: String::new(),
            queue: VecDeque::new(),
            req: 0,
            answering: None,
            busy: false,
            broadcast: false,
            spare: None,
            in_trx: false,
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
            gathering: Vec::new(),
            gather_left: 0,
            gather_mode: None,
            lock_set: None,
        })
    }

    /// Marks backend `i` in use or not (the routing view follows).
    fn set_in_use(&mut self, i: usize, in_use: bool) {
        self.backends[i].in_use = in_use;
        self.view_servers[i].1 = in_use;
    }

    /// Writes a packet to backend `i`, expecting a reply of kind `kind` (if the command has one).
    fn write(&mut self, i: usize, pkt: &[u8], id: u32, kind: Expect) -> bool {
        let req = self.req;
        let b = &mut self.backends[i];
        if !b.in_use || !self.host.write_with_id(b.endpoint, pkt, id) {
            return false;
        }
        let cmd = pkt.get(4).copied().unwrap_or(0);
        if will_respond(cmd) {
            b.pending.push_back(Pending { cmd, kind, req });
            if b.pending.len() == 1 {
                b.tracker.start(cmd);
            }
        }
        true
    }

    /// Makes backend `i`'s entry for the request in flight the one the client gets.
    fn make_replier(&mut self, i: usize) {
        let req = self.req;
        if let Some(p) = self.backends[i]
            .pending
            .iter_mut()
            .rev()
            .find(|p| p.req == req)
        {
            p.kind = Expect::Client;
        }
    }

    /// Sends a reply the router made up; it ends the request in flight.
    fn reply_client(&mut self, data: &[u8]) -> Result<(), String> {
        self.answering = None;
        self.busy = false;
        if self.host.reply(None, data, true) {
            Ok(())
        } else {
            Err("cannot write to the client".into())
        }
    }

    /// An error for the request in flight, in sequence; the session goes on.
    fn reply_error(&mut self, code: u16, sqlstate: &str, msg: &str) -> Result<(), String> {
        let seq = self.answering.unwrap_or(0).wrapping_add(1);
        self.reply_client(&err_packet(seq, code, sqlstate, msg))
    }

    /// The client's reply from backend `i` is complete (`out`: its last bytes): what it
    /// confirms takes effect, and the next request may go.
    fn complete_client(
        &mut self,
        i: usize,
        out: &[u8],
        ok: bool,
        status: u16,
    ) -> Result<(), String> {
        if self.load_target == Some(i) {
            self.load_target = None;
        }
        if let Some(db) = self.pending_use.take() {
            if ok {
                self.current_db = db;
            }
        }
        if let Some((user, db)) = self.pending_user.take() {
            if ok {
                self.changed_user(user, db);
            }
        }
        if std::mem::take(&mut self.pending_schema_change) {
            self.schema_changed();
        }
        self.in_trx = status & IN_TRANS != 0;
        self.answering = None;
        self.spare = None;
        self.busy = false;
        if !self.host.reply(Some(self.backends[i].endpoint), out, true) {
            return Err("cannot write to the client".into());
        }
        Ok(())
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
                self.host.reply(
                    None,
                    &err_packet(seq.wrapping_add(1), 1927, "70100", msg),
                    true,
                );
                self.host.kill("");
            }
            _ => self.host.kill(msg),
        }
    }

    /// Ends the session with `msg` (answering the waiting request) and returns it as the error.
    fn end(&mut self, msg: String) -> Result<(), String> {
        log_error!("session {}: {msg}; closing the session", self.id);
        self.kill(&msg);
        Err(msg)
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
            self.req += 1;
            self.broadcast = false;
            self.route(q)?;
        }
    }

    /// Runs `f` with a routing view of the session.
    fn decide<T>(&self, f: impl FnOnce(&View) -> T) -> T {
        let v = View {
            map: &self.map,
            servers: &self.view_servers,
            current_db: &self.current_db,
            preferred: self.cfg.preferred_server.as_deref(),
            previous: self.previous,
        };
        f(&v)
    }

    fn route(&mut self, q: Queued) -> Result<(), String> {
        let seq = packet::single(&q.packet)
            .map_err(|e| format!("client sent a {e}"))?
            .seq;
        let Some(&cmd) = q.packet.get(4) else {
            return self.reply_client(&err_packet(
                seq.wrapping_add(1),
                1835,
                "08S01",
                "Malformed communication packet",
            ));
        };
        // The packet moves on with `q`: what is read of it is copied out first (the SQL text
        // only for the commands that carry it).
        let text = || payload_str(&q.packet[5..]);
        let stmt_id = q
            .packet
            .get(5..9)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
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
                let db = text();
                self.change_db(q, db)
            }
            COM_QUERY => {
                let sql = text();
                let a = analyze(&sql);
                self.route_query_text(q, cmd, &sql, &a, hint)
            }
            COM_STMT_PREPARE => {
                let a = analyze(&text());
                let t = self.decide(|v| v.query_target(&a, hint));
                let t = self.target_or_fail(t, cmd)?;
                self.last_prepare = t;
                self.single(q, t)
            }
            COM_STMT_EXECUTE
            | COM_STMT_FETCH
            | COM_STMT_RESET
            | COM_STMT_SEND_LONG_DATA
            | COM_STMT_BULK_EXECUTE
            | COM_STMT_CLOSE => {
                let known = match stmt_id {
                    Some(0xFFFF_FFFF) => self.last_prepare,
                    Some(id) if cmd == COM_STMT_CLOSE => self.ps_bin.remove(&id),
                    Some(id) => self.ps_bin.get(&id).copied(),
                    None => None,
                };
                let t = match known {
                    Some(i) => match self.reopened(i) {
                        Some(i) => Some(i),
                        None => {
                            return self.fail_request(
                                cmd,
                                &format!(
                                    "the server that prepared the statement ('{}') is gone",
                                    self.backends[i].name
                                ),
                            )
                        }
                    },
                    None => {
                        let t = self.decide(|v| v.query_target(&no_names(), hint));
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
                self.send_to_all(q)
            }
            _ => {
                let t = self.decide(|v| match hint {
                    Some(_) => v.query_target(&no_names(), hint),
                    None => v.fallback(),
                });
                let t = self.target_or_fail(t, cmd)?;
                self.single(q, t)
            }
        }
    }

    fn route_query_text(
        &mut self,
        q: Queued,
        cmd: u8,
        sql: &str,
        a: &Analysis,
        hint: Option<&str>,
    ) -> Result<(), String> {
        self.pending_schema_change = a.kinds.contains(&Kind::SchemaChange);
        let kind = a.kind();
        if hint.is_none() {
            if let Some(plan) = self.merge_plan(&kind, sql) {
                return self.run_merged(q, plan);
            }
        }
        match kind {
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
                let rows: Vec<Vec<Option<String>>> = self
                    .map
                    .shard_rows()
                    .into_iter()
                    .map(|(n, s)| vec![Some(n), Some(s)])
                    .collect();
                self.reply_client(&text_resultset(
                    &["Database", "Server"],
                    &rows,
                    0,
                    self.deprecate_eof,
                ))
            }
            Kind::Use(db) if hint.is_none() => self.change_db(q, db),
            Kind::Session => self.send_to_all(q),
            Kind::Trx if hint.is_none() => self.send_to_all(q),
            Kind::Prepare { name, sql } => {
                let inner = sql.map(|s| analyze(&s)).unwrap_or_else(no_names);
                let t = self.decide(|v| v.query_target(&inner, hint));
                let t = self.target_or_fail(t, cmd)?;
                if let Some(t) = t {
                    self.ps_text.insert(name.to_lowercase(), t);
                }
                self.single(q, t)
            }
            Kind::Execute { ref name } | Kind::Deallocate { ref name } => {
                let known = if matches!(kind, Kind::Deallocate { .. }) {
                    self.ps_text.remove(&name.to_lowercase())
                } else {
                    self.ps_text.get(&name.to_lowercase()).copied()
                };
                let t = match known.map(|i| (i, self.reopened(i))) {
                    Some((_, Some(i))) => Some(i),
                    Some((i, None)) => {
                        return self.fail_request(
                            cmd,
                            &format!(
                                "the server that prepared '{name}' ('{}') is gone",
                                self.backends[i].name
                            ),
                        )
                    }
                    None => {
                        let t = self.decide(|v| v.query_target(a, hint));
                        self.target_or_fail(t, cmd)?
                    }
                };
                self.single(q, t)
            }
            Kind::ExecuteImmediate { sql } => {
                let inner = sql.map(|s| analyze(&s)).unwrap_or_else(no_names);
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

    /// Sends a request to one backend (`None`: the session was just ended).
    fn single(&mut self, q: Queued, t: Option<usize>) -> Result<(), String> {
        let Some(t) = t else { return Ok(()) };
        let cmd = q.packet.get(4).copied().unwrap_or(0);
        if !self.write(t, &q.packet, q.id, Expect::Client) {
            // Its connection is gone: settle that, then route again (reconnecting if it can).
            log_warning!(
                "session {}: write to '{}' failed",
                self.id,
                self.backends[t].name
            );
            if let Some(f) = self.lose(t, "write failed") {
                return self.end(f);
            }
            return self.route(q);
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

    /// Writes `q` to each of `targets` as a copy; the first that took it is the replier,
    /// unless `preferred` took it. Returns the backends written to.
    fn write_copies(
        &mut self,
        q: &Queued,
        targets: &[usize],
        preferred: Option<usize>,
    ) -> Result<Vec<usize>, String> {
        let mut written = Vec::new();
        for &i in targets {
            if self.write(i, &q.packet, q.id, Expect::Replica) {
                written.push(i);
            } else if self.backends[i].in_use {
                log_warning!(
                    "session {}: failed to execute session command in '{}'",
                    self.id,
                    self.backends[i].name
                );
                if let Some(f) = self.lose(i, "write failed") {
                    return Err(f);
                }
            }
        }
        let replier = preferred
            .filter(|p| written.contains(p))
            .or(written.first().copied());
        if let Some(r) = replier {
            self.make_replier(r);
        }
        Ok(written)
    }

    /// A session command: every backend runs it, one of them answers the client (another
    /// one if that one fails before answering).
    fn send_to_all(&mut self, q: Queued) -> Result<(), String> {
        let preferred = self.decide(|v| v.any()).ok();
        let cmd = q.packet.get(4).copied().unwrap_or(0);
        let all: Vec<usize> = (0..self.backends.len())
            .filter(|&i| self.backends[i].in_use)
            .collect();
        let written = match self.write_copies(&q, &all, preferred) {
            Ok(w) => w,
            Err(f) => return self.end(f),
        };
        if written.is_empty() {
            return self.end("no server left for a session command".into());
        }
        self.broadcast = true;
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
        let holders: Vec<usize> = (0..self.backends.len())
            .filter(|&i| self.backends[i].in_use && names.contains(&self.backends[i].name))
            .collect();
        if holders.is_empty() {
            let stale = self.map_time.elapsed() > self.cfg.refresh_interval;
            if self.cfg.refresh_databases && stale && !self.remapped_for_use {
                log_info!(
                    "session {}: '{db}' is not in the map, which is stale: mapping again",
                    self.id
                );
                self.remapped_for_use = true;
                self.queue.push_front(q);
                self.start_mapping(false);
                return Ok(());
            }
            if !names.is_empty() {
                // Its servers are lost: reconnect one, or end the session naming them.
                let t = self.target_or_fail(Err(NoTarget::Lost(names)), COM_INIT_DB)?;
                if t.is_none() {
                    return Ok(());
                }
                return self.change_db(q, db);
            }
            log_info!(
                "session {}: client is trying to use an unknown database '{db}'",
                self.id
            );
            // One server answers (normally "Unknown database"); the current database stays.
            let t = self.decide(|v| v.any());
            let t = self.target_or_fail(t, COM_INIT_DB)?;
            return self.single(q, t);
        }
        self.remapped_for_use = false;
        let written = match self.write_copies(&q, &holders, None) {
            Ok(w) => w,
            Err(f) => return self.end(f),
        };
        let Some(&first) = written.first() else {
            return self.change_db(q, db);
        };
        self.broadcast = true;
        self.previous = Some(first);
        self.pending_use = Some(db);
        self.busy = true;
        Ok(())
    }
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
            if !self
                .host
                .write_with_id(self.backends[t].endpoint, packet, id)
            {
                let name = self.backends[t].name.clone();
                return self.end(format!("LOAD DATA LOCAL INFILE: write to '{name}' failed"));
            }
            if last {
                self.load_target = None;
            }
            return Ok(());
        }
        if let Some(targets) = self.continuation.take() {
            for &t in &targets {
                if self.backends[t].in_use {
                    self.host
                        .write_with_id(self.backends[t].endpoint, packet, id);
                }
            }
            if packet.len().saturating_sub(4) == MAX_PAYLOAD {
                self.continuation = Some(targets);
            }
            return Ok(());
        }
        let hint = self.host.route_hint();
        self.queue.push_back(Queued {
            packet: packet.to_vec(),
            id,
            hint,
        });
        self.drain()
    }

    fn client_reply(&mut self, endpoint: usize, data: &[u8]) -> Result<(), String> {
        let Some(i) = self.backends.iter().position(|b| b.endpoint == endpoint) else {
            return Ok(());
        };
        if !self.backends[i].in_use || self.state == State::Failed {
            return Ok(());
        }
        if let Err(f) = self.on_reply(i, data) {
            return self.end(f);
        }
        self.drain()
    }

    fn handle_error(&mut self, endpoint: usize, message: &str) -> bool {
        let Some(i) = self.backends.iter().position(|b| b.endpoint == endpoint) else {
            return true;
        };
        self.backend_failed(i, message)
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
        assert_eq!(
            change_user_target(b"bob\0\0"),
            Some(("bob".into(), "".into()))
        );
        assert_eq!(change_user_target(b"bob"), None);
        assert_eq!(
            change_user_target(b"bob\0\x09ab"),
            None,
            "auth data longer than the packet"
        );
    }
}
