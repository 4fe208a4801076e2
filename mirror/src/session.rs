//! One client session: every request goes to all targets, main's reply to the client.
//!
//! One request is in flight at a time; later requests wait in a queue. Packets that belong to
//! the request in flight are not queued but passed on at once: the rest of a request of 16 MiB
//! or more, and the file data of LOAD DATA LOCAL INFILE (the native router deadlocks on both).
//! Main's reply streams to the client except its last chunk, which is held until every target
//! has answered and the report is written.
//! A target that fails is dropped from the request in flight, whatever it was waiting for,
//! and an error a server sends on an idle connection is logged, never counted as a reply.

use crate::config::{OnError, ReportWhen};
use crate::report::{Report, TargetResult};
use crate::stats::TargetStats;
use crate::Shared;
use bridge::host::SessionHost;
use bridge::protocol::command::carries_sql;
use bridge::protocol::packet::{self, write_packet, Packets};
use bridge::protocol::reply::{ReplyError, ReplyState};
use bridge::protocol::resultset::err_packet;
use bridge::protocol::{will_respond, ReplyTracker};
use bridge::router::{RouterSession, SessionInfo};
use bridge::{log_info, log_warning};
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

struct Backend {
    endpoint: usize,
    name: String,
    in_use: bool,
    /// Got the request in flight.
    in_request: bool,
    /// A reply to the request in flight is expected or arriving.
    waiting: bool,
    tracker: ReplyTracker,
    crc: crc32fast::Hasher,
    started: Instant,
    duration_ms: u64,
    /// LOCAL INFILE data that arrived before this server asked for it.
    pending_data: Vec<(Vec<u8>, u32)>,
    /// Sequence number of the next LOCAL INFILE data packet.
    load_seq: u8,
    /// The end of the LOCAL INFILE data (an empty packet) was sent.
    load_ended: bool,
    stats: Arc<TargetStats>,
}

struct Request {
    command: u8,
    query: Vec<u8>,
    expects_reply: bool,
    /// The next client packet continues this request (16 MiB+ requests).
    continued: bool,
}

pub struct MirrorSession {
    shared: Arc<Shared>,
    host: SessionHost,
    id: u64,
    backends: Vec<Backend>,
    main: usize,
    /// Reports written, as the native router counts `query_id`.
    reports: u64,
    current: Option<Request>,
    /// Client packets waiting for the request in flight, with the host's ids.
    queue: VecDeque<(Vec<u8>, u32)>,
    /// Main's last reply chunk, sent when every target has answered.
    held: Option<Vec<u8>>,
}

impl MirrorSession {
    pub(crate) fn new(shared: Arc<Shared>, host: SessionHost, info: SessionInfo) -> Result<Self, String> {
        let active = shared.active().ok_or("the router is not configured")?;
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
            .map(|(i, e)| Backend {
                endpoint: i,
                name: e.name.clone(),
                in_use: e.can_connect && host.connect(i),
                in_request: false,
                waiting: false,
                tracker: ReplyTracker::new(deprecate_eof),
                crc: crc32fast::Hasher::new(),
                started: Instant::now(),
                duration_ms: 0,
                pending_data: Vec::new(),
                load_seq: 0,
                load_ended: false,
                stats: shared.stats.target(&e.name),
            })
            .collect();
        if !backends[main].in_use {
            return Err(format!("cannot connect to main target '{main_name}'"));
        }
        for b in backends.iter().filter(|b| !b.in_use) {
            log_warning!("session {}: target '{}' is not available, mirroring without it", info.id, b.name);
        }
        Ok(MirrorSession { shared, host, id: info.id, backends, main, reports: 0, current: None, queue: VecDeque::new(), held: None })
    }

    fn index_of(&self, endpoint: usize) -> Option<usize> {
        self.backends.iter().position(|b| b.endpoint == endpoint)
    }

    fn on_error(&self) -> OnError {
        self.shared.active().map_or(OnError::Ignore, |a| a.config.on_error)
    }

    /// Starts a new request: writes it to every target in use.
    fn start(&mut self, packet: &[u8], id: u32) -> Result<(), String> {
        let p = packet::single(packet).map_err(|e| format!("client sent a {e}"))?;
        let Some(command) = p.first() else {
            // An empty packet is not a command: answer it like a server would.
            let err = err_packet(p.seq.wrapping_add(1), 1835, "08S01", "Malformed communication packet");
            return if self.host.reply(None, &err, true) { Ok(()) } else { Err("cannot write to the client".into()) };
        };
        let expects_reply = will_respond(command);
        let query = if carries_sql(command) { p.payload[1..].to_vec() } else { Vec::new() };
        let now = Instant::now();
        for i in 0..self.backends.len() {
            if !self.backends[i].in_use {
                continue;
            }
            if !self.host.write_with_id(self.backends[i].endpoint, packet, id) {
                self.fail(i, "write failed")?;
                continue;
            }
            let b = &mut self.backends[i];
            b.stats.queries.fetch_add(1, Relaxed);
            b.in_request = true;
            b.waiting = expects_reply;
            b.tracker.start(command);
            b.crc = crc32fast::Hasher::new();
            b.started = now;
            b.duration_ms = 0;
            b.pending_data.clear();
            b.load_ended = false;
        }
        self.current = Some(Request { command, query, expects_reply, continued: p.is_continued() });
        self.progress()
    }

    /// A client packet that belongs to the request in flight, if it is one: the rest of a
    /// 16 MiB+ request, or LOCAL INFILE data.
    fn pass_through(&mut self, packet: &[u8]) -> Result<bool, String> {
        let Some(req) = self.current.as_mut() else { return Ok(false) };
        let p = packet::single(packet).map_err(|e| format!("client sent a {e}"))?;
        if req.continued {
            req.continued = p.is_continued();
            for i in 0..self.backends.len() {
                if self.backends[i].in_use && self.backends[i].in_request && !self.host.write(self.backends[i].endpoint, packet) {
                    self.fail(i, "write failed")?;
                }
            }
            return Ok(true);
        }
        if !self.backends.iter().any(|b| b.in_use && b.tracker.is_load_data()) {
            return Ok(false);
        }
        let is_last = p.payload.is_empty();
        for i in 0..self.backends.len() {
            let b = &mut self.backends[i];
            if !b.in_use || !b.in_request || b.load_ended {
                continue;
            }
            match b.tracker.state() {
                ReplyState::LoadData { .. } => {
                    b.load_seq = p.seq.wrapping_add(1);
                    b.load_ended = is_last;
                    if !self.host.write(b.endpoint, packet) {
                        self.fail(i, "write failed")?;
                    }
                }
                // Not answered yet: keep the data until it asks for the file (or refuses).
                ReplyState::Start if b.waiting => b.pending_data.push((packet.to_vec(), self.host.packet_id())),
                _ => {}
            }
        }
        Ok(true)
    }

    /// Handles a backend failure. Err: the session must end.
    fn fail(&mut self, i: usize, why: &str) -> Result<(), String> {
        let b = &mut self.backends[i];
        if !b.in_use {
            return Ok(());
        }
        b.in_use = false;
        b.waiting = false;
        b.stats.errors.fetch_add(1, Relaxed);
        self.host.close(b.endpoint);
        let name = b.name.clone();
        if i == self.main {
            return Err(format!("main target '{name}' failed: {why}"));
        }
        if self.on_error() == OnError::Close {
            return Err(format!("target '{name}' failed and on_error=close: {why}"));
        }
        log_warning!("session {}: target '{name}' failed, mirroring without it: {why}", self.id);
        Ok(())
    }

    /// After any change: end other servers' LOCAL INFILE transfers that main will not feed,
    /// and finish the request once every target has answered.
    fn progress(&mut self) -> Result<(), String> {
        if !self.backends[self.main].waiting {
            for i in 0..self.backends.len() {
                let b = &mut self.backends[i];
                if b.in_use && !b.load_ended && matches!(b.tracker.state(), ReplyState::LoadData { .. }) {
                    let mut end = Vec::new();
                    write_packet(&mut end, b.load_seq, &[]);
                    b.load_ended = true;
                    if !self.host.write_with_id(b.endpoint, &end, 0) {
                        self.fail(i, "write failed")?;
                    }
                }
            }
        }
        let done = match &self.current {
            Some(req) => !req.continued && self.backends.iter().all(|b| !b.in_use || !b.waiting),
            None => false,
        };
        if done {
            self.finish()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        let req = self.current.take().expect("a request in flight");
        for b in &mut self.backends {
            b.in_request = false;
        }
        // The report goes out before the client's answer: whoever has the answer can read
        // its report.
        if req.expects_reply {
            self.report(&req);
        }
        if let Some(chunk) = self.held.take() {
            if !self.host.reply(Some(self.backends[self.main].endpoint), &chunk, true) {
                return Err("cannot write to the client".into());
            }
        }
        while self.current.is_none() {
            let Some((next, id)) = self.queue.pop_front() else { break };
            self.start(&next, id)?;
        }
        Ok(())
    }

    fn report(&mut self, req: &Request) {
        let Some(active) = self.shared.active() else { return };
        let main_crc = self.backends[self.main].crc.clone().finalize();
        let mut conflict = false;
        let mut results = Vec::new();
        for b in self.backends.iter().filter(|b| b.in_use) {
            let crc = b.crc.clone().finalize();
            if crc != main_crc {
                conflict = true;
                b.stats.conflicts.fetch_add(1, Relaxed);
            }
            results.push(TargetResult {
                target: &b.name,
                checksum: crc,
                rows: b.tracker.rows(),
                warnings: b.tracker.warnings(),
                duration_ms: b.duration_ms,
                kind: b.tracker.kind(),
            });
        }
        if active.config.report == ReportWhen::OnConflict && !conflict {
            return;
        }
        self.reports += 1;
        let doc = Report { query: &req.query, command: req.command, session: self.id, query_id: self.reports, results }.to_json();
        active.exporter.ship(&doc);
    }
}

impl RouterSession for MirrorSession {
    fn route_query(&mut self, packet: &[u8]) -> Result<(), String> {
        if self.pass_through(packet)? {
            return Ok(());
        }
        if self.current.is_some() {
            self.queue.push_back((packet.to_vec(), self.host.packet_id()));
            return Ok(());
        }
        self.start(packet, self.host.packet_id())
    }

    fn client_reply(&mut self, endpoint: usize, data: &[u8]) -> Result<(), String> {
        let Some(i) = self.index_of(endpoint) else { return Ok(()) };
        let is_main = i == self.main;
        let b = &mut self.backends[i];
        if !b.in_use {
            return Ok(());
        }
        if !b.waiting {
            // Nothing was asked: typically a server killing the connection or shutting down.
            // The connection's failure, if any, comes through handle_error.
            for p in Packets::new(data).flatten() {
                match ReplyError::parse(p.payload) {
                    Some(e) => log_warning!("session {}: target '{}' sent an unsolicited error: {e}", self.id, b.name),
                    None => log_info!("session {}: target '{}' sent an unsolicited packet", self.id, b.name),
                }
            }
            return Ok(());
        }
        b.crc.update(data);
        let mut violation = None;
        for p in Packets::new(data) {
            match p {
                Ok(p) => {
                    if let Err(e) = b.tracker.feed(&p) {
                        violation = Some(e.to_string());
                        break;
                    }
                }
                Err(e) => {
                    violation = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(v) = violation {
            let why = format!("protocol error in reply: {v}");
            self.fail(i, &why)?;
            return self.progress();
        }
        if b.tracker.is_load_data() && !b.pending_data.is_empty() {
            for (packet, id) in std::mem::take(&mut b.pending_data) {
                let p = packet::single(&packet).map_err(|e| e.to_string())?;
                b.load_seq = p.seq.wrapping_add(1);
                b.load_ended = p.payload.is_empty();
                if !self.host.write_with_id(b.endpoint, &packet, id) {
                    return self.fail(i, "write failed").and_then(|_| self.progress());
                }
            }
        }
        let complete = b.tracker.is_complete();
        if complete {
            b.waiting = false;
            b.duration_ms = b.started.elapsed().as_millis() as u64;
            b.pending_data.clear();
        }
        if is_main {
            if complete {
                self.held = Some(data.to_vec());
            } else if !self.host.reply(Some(endpoint), data, false) {
                return Err("cannot write to the client".into());
            }
        }
        self.progress()
    }

    fn handle_error(&mut self, endpoint: usize, message: &str) -> bool {
        let Some(i) = self.index_of(endpoint) else { return true };
        if let Err(e) = self.fail(i, message).and_then(|_| self.progress()) {
            bridge::log_error!("session {}: {e}", self.id);
            return false;
        }
        true
    }
}
