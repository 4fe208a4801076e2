//! Requests through the session: taken from the client into the log, written to each target
//! in order, retired with their report once every target answered; targets dropped, failed
//! and reconnected.

use super::entry::{is_barrier, Entry, Part, Step, ENTRY_OVERHEAD};
use super::exec_types;
use super::{Expect, MirrorSession, MAX_STATEMENTS};
use crate::config::{OnError, ReportWhen};
use crate::diff::Comparison;
use crate::report::{Report, TargetResult};
use bridge::protocol::command::*;
use bridge::protocol::packet::{self, write_packet};
use bridge::protocol::resultset::err_packet;
use bridge::protocol::{will_respond, ReplyState};
use bridge::{log_info, log_notice, log_warning};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// How long a target that was connected again waits before the next attempt (reconnect=true).
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection failed (or broke the protocol).
    Error,
    /// Too far behind main (sync=false).
    Backlog,
}

/// The statement id of a COM_STMT_* packet.
fn stmt_id(packet: &[u8]) -> Option<u32> {
    packet
        .get(5..9)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
}

fn names_statement(command: u8) -> bool {
    matches!(
        command,
        COM_STMT_EXECUTE
            | COM_STMT_FETCH
            | COM_STMT_RESET
            | COM_STMT_SEND_LONG_DATA
            | COM_STMT_BULK_EXECUTE
    )
}

impl MirrorSession {
    /// A client packet that starts a request.
    pub(super) fn new_request(&mut self, packet: &[u8], id: u32) -> Result<(), String> {
        let p = packet::single(packet).map_err(|e| format!("client sent a {e}"))?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let (sync, want_diff) = (self.config().sync, self.config().report_diff);
        let Some(command) = p.first() else {
            // An empty packet is not a command: answered as a server would, in its turn.
            let mut e = self.blank_entry(seq, 0, id, sync);
            e.made_up = Some(err_packet(
                p.seq.wrapping_add(1),
                1835,
                "08S01",
                "Malformed communication packet",
            ));
            e.expects_reply = false;
            for (i, part) in e.parts.iter_mut().enumerate() {
                if i != self.main {
                    part.step = Step::Skipped;
                }
            }
            self.log.push_back(e);
            return self.settle(None);
        };
        self.history.record(packet, id);
        if command == COM_STMT_EXECUTE && self.config().reconnect {
            let st = stmt_id(packet).and_then(|s| self.statements.get_mut(&s));
            if let Some(st) = st {
                if let Some(t) = exec_types::types_of(packet, st.params) {
                    st.types = t.to_vec();
                }
            }
        }
        if command == COM_STMT_CLOSE {
            if let Some(s) = stmt_id(packet) {
                self.statements.remove(&s);
            }
        }
        self.try_reconnect(seq);
        let mut e = self.blank_entry(seq, command, id, sync);
        e.query = if carries_sql(command) {
            p.payload[1..].to_vec()
        } else if want_diff && names_statement(command) {
            stmt_id(packet)
                .and_then(|s| self.statements.get(&s))
                .map(|s| s.sql.clone())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        e.expects_reply = will_respond(command);
        e.continued = p.is_continued();
        e.barrier = is_barrier(command, p.payload);
        e.bytes = packet.len() as u64;
        if want_diff && e.expects_reply {
            let binary = matches!(command, COM_STMT_EXECUTE | COM_STMT_FETCH);
            let cols = if binary {
                stmt_id(packet)
                    .and_then(|s| self.statements.get(&s))
                    .map(|s| s.columns.clone())
            } else {
                None
            };
            e.diff = Some(Comparison::new(
                self.backends.len(),
                self.main,
                binary,
                cols.unwrap_or_default(),
            ));
        }
        if e.continued {
            self.receiving = Some(seq);
        }
        self.log.push_back(e);
        self.settle(Some((seq, packet)))?;
        // Targets that could not take it now get it later from a copy.
        if let Some(e) = self.entry_mut(seq) {
            if e.packets.is_empty() && e.parts.iter().any(|p| p.step == Step::Pending) {
                e.packets.push(packet.to_vec());
            }
        }
        Ok(())
    }

    fn blank_entry(&self, seq: u64, command: u8, id: u32, sync: bool) -> Entry {
        Entry {
            seq,
            command,
            query: Vec::new(),
            expects_reply: true,
            id,
            packets: Vec::new(),
            continued: false,
            data: Default::default(),
            data_base: 0,
            data_complete: false,
            sync,
            barrier: false,
            bytes: 0,
            charged: false,
            made_up: None,
            parts: self
                .backends
                .iter()
                .map(|b| {
                    Entry::new_part(if b.in_use {
                        Step::Pending
                    } else {
                        Step::Skipped
                    })
                })
                .collect(),
            diff: None,
        }
    }

    /// A client packet that may belong to request `seq`, still being received: the rest of
    /// a 16 MiB+ request, or LOCAL INFILE data. False: it starts a new request.
    pub(super) fn continue_request(
        &mut self,
        seq: u64,
        packet: &[u8],
        id: u32,
    ) -> Result<bool, String> {
        let p = packet::single(packet).map_err(|e| format!("client sent a {e}"))?;
        let (continued, is_last, len) =
            (p.is_continued(), p.payload.is_empty(), packet.len() as u64);
        let Some(e) = self.entry(seq) else {
            self.receiving = None;
            return Ok(false);
        };
        if e.continued {
            let targets: Vec<usize> = (0..self.backends.len())
                .filter(|&i| {
                    self.backends[i].in_use
                        && matches!(e.parts[i].step, Step::InFlight | Step::Done)
                })
                .collect();
            let keep = e.parts.iter().any(|p| p.step == Step::Pending);
            for i in targets {
                if self.backends[i].in_use
                    && !self
                        .host
                        .write_with_id(self.backends[i].endpoint, packet, id)
                {
                    self.fail(i, "write failed", Failure::Error)?;
                }
            }
            if let Some(e) = self.entry_mut(seq) {
                if keep {
                    e.packets.push(packet.to_vec());
                }
                e.bytes += len;
                e.continued = continued;
            }
            if !continued {
                self.receiving = None;
                self.settle(None)?;
            }
            return Ok(true);
        }
        let main = &self.backends[self.main];
        if main.expects.front() != Some(&Expect::Entry(seq)) || !main.tracker.is_load_data() {
            self.receiving = None;
            return Ok(false);
        }
        if let Some(e) = self.entry_mut(seq) {
            e.data.push_back((packet.to_vec(), id));
            e.bytes += len;
            e.data_complete |= is_last;
        }
        for i in 0..self.backends.len() {
            if self.in_load_data(i, seq) {
                self.feed_load_data(i, seq)?;
            }
        }
        self.trim_data(seq);
        self.check_backlog_of(seq)?;
        Ok(true)
    }

    /// Whether target `i` is receiving request `seq`'s reply and its server asked for the file.
    pub(super) fn in_load_data(&self, i: usize, seq: u64) -> bool {
        let b = &self.backends[i];
        b.in_use && b.expects.front() == Some(&Expect::Entry(seq)) && b.tracker.is_load_data()
    }

    /// Writes to target `i` the LOCAL INFILE data of request `seq` it has not had, and the
    /// end of the data once the client will send no more.
    pub(super) fn feed_load_data(&mut self, i: usize, seq: u64) -> Result<(), String> {
        let ep = self.backends[i].endpoint;
        let asked_seq = match self.backends[i].tracker.state() {
            ReplyState::LoadData { request_seq } => request_seq,
            _ => return Ok(()),
        };
        loop {
            let Some(e) = self.entry(seq) else {
                return Ok(());
            };
            let part = &e.parts[i];
            if part.load_ended {
                return Ok(());
            }
            let next = part.data_sent;
            let (ok, pkt_seq, last) = if let Some((pkt, id)) =
                next.checked_sub(e.data_base).and_then(|k| e.data.get(k))
            {
                let last = pkt.len() == 4;
                (self.host.write_with_id(ep, pkt, *id), pkt[3], last)
            } else if e.data_complete {
                // The client will send nothing more (main did not ask for the file, or
                // stopped): end this server's transfer.
                let s = if next == 0 {
                    asked_seq.wrapping_add(1)
                } else {
                    part.load_seq
                };
                let mut end = Vec::new();
                write_packet(&mut end, s, &[]);
                (self.host.write_with_id(ep, &end, 0), s, true)
            } else {
                return Ok(());
            };
            if !ok {
                return self.fail(i, "write failed", Failure::Error);
            }
            let e = self.entry_mut(seq).expect("entry");
            let part = &mut e.parts[i];
            part.data_sent += 1;
            part.load_seq = pkt_seq.wrapping_add(1);
            part.load_ended = last;
        }
    }

    /// Frees LOCAL INFILE data every target that may still want it has had.
    fn trim_data(&mut self, seq: u64) {
        let backends = &self.backends;
        let Some(e) = self.log.iter_mut().find(|e| e.seq == seq) else {
            return;
        };
        let low = e
            .parts
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                backends[*i].in_use
                    && matches!(p.step, Step::Pending | Step::InFlight)
                    && !p.load_ended
            })
            .map(|(_, p)| p.data_sent)
            .min()
            .unwrap_or(e.data_base + e.data.len());
        while e.data_base < low && e.data.pop_front().is_some() {
            e.data_base += 1;
        }
    }

    /// Writes what can be written, then retires answered requests, until nothing moves.
    pub(super) fn settle(&mut self, current: Option<(u64, &[u8])>) -> Result<(), String> {
        self.settle_with(current, None)
    }

    /// `main_final`: main's last chunk of the first request of the log, not copied (sync).
    pub(super) fn settle_with(
        &mut self,
        current: Option<(u64, &[u8])>,
        mut main_final: Option<&[u8]>,
    ) -> Result<(), String> {
        loop {
            for i in 0..self.backends.len() {
                while self.can_write(i) {
                    self.write_next(i, current)?;
                }
            }
            if !self.retire_front(&mut main_final)? {
                return Ok(());
            }
        }
    }

    fn can_write(&self, i: usize) -> bool {
        let b = &self.backends[i];
        if !b.in_use {
            return false;
        }
        let Some(e) = self.entry(b.next_write) else {
            return false;
        };
        if e.parts[i].step != Step::Pending {
            return true; // skipped over by write_next
        }
        if i == self.main && !b.expects.is_empty() {
            return false;
        }
        if e.sync {
            return self.log.front().map(|f| f.seq) == Some(e.seq) && b.expects.is_empty();
        }
        match b.expects.back() {
            None | Some(Expect::Replay(_)) => true,
            Some(Expect::Entry(s)) => self
                .entry(*s)
                .is_none_or(|prev| !prev.barrier && !prev.sync && !prev.continued),
        }
    }

    fn write_next(&mut self, i: usize, current: Option<(u64, &[u8])>) -> Result<(), String> {
        let seq = self.backends[i].next_write;
        self.backends[i].next_write += 1;
        let ep = self.backends[i].endpoint;
        let e = self.entry(seq).expect("entry to write");
        if e.parts[i].step != Step::Pending {
            return Ok(());
        }
        if let Some(err) = &e.made_up {
            if !self.host.reply(None, err, true) {
                return Err("cannot write to the client".into());
            }
            self.entry_mut(seq).expect("entry").parts[i].step = Step::Done;
            return Ok(());
        }
        let typed = self.typed_execute(i, e, current);
        let ok = if let Some(p) = &typed {
            self.host.write_with_id(ep, p, e.id)
        } else if e.packets.is_empty() {
            match current {
                Some((s, pkt)) if s == seq => self.host.write_with_id(ep, pkt, e.id),
                _ => false,
            }
        } else {
            e.packets
                .iter()
                .all(|pkt| self.host.write_with_id(ep, pkt, e.id))
        };
        if !ok {
            return self.fail(i, "write failed", Failure::Error);
        }
        let (expects_reply, command) = (e.expects_reply, e.command);
        if command == COM_STMT_EXECUTE {
            let stmt = e.packets.first().map(|p| &p[..]).or(current.map(|c| c.1));
            if let Some(s) = stmt.and_then(stmt_id) {
                if let Some(set) = &mut self.backends[i].typed {
                    set.insert(s);
                }
            }
        }
        let e = self.entry_mut(seq).expect("entry");
        e.parts[i].step = if expects_reply {
            Step::InFlight
        } else {
            Step::Done
        };
        e.parts[i].written = Instant::now();
        let b = &mut self.backends[i];
        b.stats.queries.fetch_add(1, Relaxed);
        if expects_reply {
            if b.expects.is_empty() {
                b.tracker.start(command);
                b.crc = crc32fast::Hasher::new();
            }
            b.expects.push_back(Expect::Entry(seq));
        } else if i == self.main {
            self.main_done(seq)?;
        } else {
            self.uncharge(i, seq);
        }
        Ok(())
    }

    /// A COM_STMT_EXECUTE for a target connected again, with the statement's parameter types
    /// put in if this connection has not had them (see `exec_types`).
    fn typed_execute(&self, i: usize, e: &Entry, current: Option<(u64, &[u8])>) -> Option<Vec<u8>> {
        let typed = self.backends[i].typed.as_ref()?;
        if e.command != COM_STMT_EXECUTE || e.packets.len() > 1 {
            return None;
        }
        let pkt = match e.packets.first() {
            Some(p) => &p[..],
            None => current.filter(|c| c.0 == e.seq)?.1,
        };
        let s = stmt_id(pkt).filter(|s| !typed.contains(s))?;
        let st = self.statements.get(&s)?;
        exec_types::with_types(pkt, st.params, &st.types)
    }

    /// Main has answered request `seq` (the client has, or is about to get, its reply).
    pub(super) fn main_done(&mut self, seq: u64) -> Result<(), String> {
        if self.receiving == Some(seq) {
            self.receiving = None;
        }
        let Some(e) = self.entry_mut(seq) else {
            return Ok(());
        };
        e.data_complete = true;
        let charge = !e.sync;
        let cost = e.bytes + ENTRY_OVERHEAD;
        if charge {
            e.charged = true;
        }
        for i in 0..self.backends.len() {
            if i == self.main {
                continue;
            }
            if self.in_load_data(i, seq) {
                self.feed_load_data(i, seq)?;
            }
            let owes = self
                .entry(seq)
                .is_some_and(|e| matches!(e.parts[i].step, Step::Pending | Step::InFlight));
            if charge && owes && self.backends[i].in_use {
                let b = &mut self.backends[i];
                b.lag_bytes += cost;
                b.lag_requests += 1;
                self.check_backlog(i, 0)?;
            }
        }
        Ok(())
    }

    /// Target `i` answered (or skipped) request `seq`: it no longer counts in its backlog.
    pub(super) fn uncharge(&mut self, i: usize, seq: u64) {
        let Some(e) = self.entry(seq) else { return };
        if e.charged {
            let cost = e.bytes + ENTRY_OVERHEAD;
            let b = &mut self.backends[i];
            b.lag_bytes = b.lag_bytes.saturating_sub(cost);
            b.lag_requests = b.lag_requests.saturating_sub(1);
        }
    }

    /// Drops target `i` if its backlog (plus `extra` bytes held for it) is beyond the bound.
    fn check_backlog(&mut self, i: usize, extra: u64) -> Result<(), String> {
        let limit = self.config().backlog;
        let b = &self.backends[i];
        let bytes = b.lag_bytes + extra;
        let over = bytes > limit.bytes || (limit.requests > 0 && b.lag_requests > limit.requests);
        if !over {
            return Ok(());
        }
        let why = format!(
            "{} requests ({} bytes) main has answered wait for it, more than max_backlog ({} bytes{})",
            b.lag_requests,
            bytes,
            limit.bytes,
            if limit.requests > 0 { format!(", {} requests", limit.requests) } else { String::new() }
        );
        self.fail(i, &why, Failure::Backlog)
    }

    /// LOCAL INFILE data of request `seq` held for targets that have not taken it.
    fn check_backlog_of(&mut self, seq: u64) -> Result<(), String> {
        let Some(e) = self.entry(seq) else {
            return Ok(());
        };
        if e.sync {
            return Ok(());
        }
        let held: Vec<(usize, u64)> = e
            .parts
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                *i != self.main
                    && self.backends[*i].in_use
                    && matches!(p.step, Step::Pending | Step::InFlight)
            })
            .map(|(i, _)| (i, e.data.iter().map(|d| d.0.len() as u64).sum::<u64>()))
            .collect();
        for (i, bytes) in held {
            self.check_backlog(i, bytes)?;
        }
        Ok(())
    }

    /// Retires the first request of the log if every target answered it or was dropped:
    /// writes its report, then (sync=true) gives the client main's last chunk.
    fn retire_front(&mut self, main_final: &mut Option<&[u8]>) -> Result<bool, String> {
        let Some(front) = self.log.front() else {
            return Ok(false);
        };
        if front.continued
            || !front
                .parts
                .iter()
                .all(|p| matches!(p.step, Step::Done | Step::Skipped))
        {
            return Ok(false);
        }
        let e = self.log.pop_front().expect("front");
        // The client gets its answer before the report is written (as the native router
        // does): the export is not on its path.
        let mut replied = true;
        if e.sync {
            let chunk = self.held.take();
            if let Some(c) = chunk.as_deref().or(main_final.take()) {
                replied = self
                    .host
                    .reply(Some(self.backends[self.main].endpoint), c, true);
            }
        }
        if e.expects_reply {
            self.report(&e);
        }
        if !replied {
            return Err("cannot write to the client".into());
        }
        Ok(true)
    }

    pub(super) fn report(&mut self, e: &Entry) {
        let Some(main) = e.part(self.main).outcome else {
            return;
        };
        let mut conflict = false;
        let mut results = Vec::with_capacity(self.backends.len());
        for (i, b) in self.backends.iter().enumerate() {
            let part: &Part = e.part(i);
            let (Step::Done, Some(o)) = (part.step, part.outcome) else {
                continue;
            };
            let mut diff = None;
            if o.checksum != main.checksum {
                conflict = true;
                b.stats.conflicts.fetch_add(1, Relaxed);
                diff = e
                    .diff
                    .as_ref()
                    .and_then(|d| d.result(i))
                    .map(|v| v.to_string());
            }
            results.push(TargetResult {
                target: &b.name,
                checksum: o.checksum,
                rows: o.rows,
                warnings: o.warnings,
                duration_ms: o.duration_ms,
                kind: o.kind,
                diff,
            });
        }
        if self.active.config.report == ReportWhen::OnConflict && !conflict {
            return;
        }
        self.reports += 1;
        let mut line = std::mem::take(&mut self.line);
        Report {
            query: &e.query,
            command: e.command,
            session: self.id,
            query_id: self.reports,
            results,
        }
        .write_line(&mut line);
        self.active.exporter.ship(&line);
        self.line = line;
    }

    /// Handles a target that failed or is dropped. Err: the session must end.
    pub(super) fn fail(&mut self, i: usize, why: &str, kind: Failure) -> Result<(), String> {
        let on_error = self.config().on_error;
        let b = &mut self.backends[i];
        if !b.in_use {
            return Ok(());
        }
        b.in_use = false;
        b.expects.clear();
        b.lag_bytes = 0;
        b.lag_requests = 0;
        b.lost = kind == Failure::Error;
        b.reconnect_logged = false;
        match kind {
            Failure::Error => b.stats.errors.fetch_add(1, Relaxed),
            Failure::Backlog => b.stats.backlog_drops.fetch_add(1, Relaxed),
        };
        self.host.close(b.endpoint);
        let name = b.name.clone();
        if i == self.main {
            return Err(format!("main target '{name}' failed: {why}"));
        }
        if kind == Failure::Error && on_error == OnError::Close {
            return Err(format!("target '{name}' failed and on_error=close: {why}"));
        }
        for e in &mut self.log {
            e.parts[i].step = Step::Skipped;
        }
        match kind {
            Failure::Error => log_warning!(
                "session {}: target '{name}' failed, mirroring without it: {why}",
                self.id
            ),
            Failure::Backlog => log_warning!(
                "session {}: target '{name}' dropped from the session: {why}",
                self.id
            ),
        }
        Ok(())
    }

    /// Before request `seq`: connects lost targets again when the session's state can be
    /// given back (reconnect=true, history complete, main idle and not in a transaction).
    fn try_reconnect(&mut self, seq: u64) {
        if !self.config().reconnect || self.main_in_trx || self.receiving.is_some() {
            return;
        }
        let m = &self.backends[self.main];
        if !m.expects.is_empty() || m.next_write != seq {
            return;
        }
        for i in 0..self.backends.len() {
            let b = &self.backends[i];
            if i == self.main || b.in_use || !b.lost {
                continue;
            }
            if !self.history.recoverable() {
                if !b.reconnect_logged {
                    log_warning!(
                        "session {}: target '{}' is not reconnected: the session ran more session commands than can be replayed ({} or {} bytes)",
                        self.id,
                        b.name,
                        crate::history::MAX_ENTRIES,
                        crate::history::MAX_BYTES
                    );
                    self.backends[i].reconnect_logged = true;
                }
                continue;
            }
            // MaxScale connects without waiting: to a server that just died, `connect` says
            // yes and the connection fails a moment later. Without a pause every request of
            // every session would connect again (hundreds a second, each logged).
            if b.reconnected_at
                .is_some_and(|t| t.elapsed() < RECONNECT_PAUSE)
            {
                continue;
            }
            if !self.host.connect(b.endpoint) {
                if !b.reconnect_logged {
                    log_info!("session {}: target '{}' cannot be connected yet; trying again with later requests", self.id, b.name);
                    self.backends[i].reconnect_logged = true;
                }
                continue;
            }
            let replay: Vec<(Vec<u8>, u32)> = self
                .history
                .replay()
                .map(|(p, id)| (p.to_vec(), id))
                .collect();
            let b = &mut self.backends[i];
            b.in_use = true;
            b.lost = false;
            b.next_write = seq;
            b.stats.reconnects.fetch_add(1, Relaxed);
            b.reconnected_at = Some(Instant::now());
            b.typed = Some(Default::default());
            let (ep, name) = (b.endpoint, b.name.clone());
            for (p, id) in &replay {
                if !self.host.write_with_id(ep, p, *id) {
                    let _ = self.fail(
                        i,
                        "write failed while restoring the session state",
                        Failure::Error,
                    );
                    break;
                }
                let b = &mut self.backends[i];
                if b.expects.is_empty() {
                    b.tracker.start(p[4]);
                    b.crc = crc32fast::Hasher::new();
                }
                b.expects.push_back(Expect::Replay(p[4]));
            }
            if self.backends[i].in_use {
                log_notice!(
                    "session {}: target '{name}' reconnected, {} session commands replayed",
                    self.id,
                    replay.len()
                );
            }
        }
    }

    /// Main answered a COM_STMT_PREPARE with the statement id the client gets.
    pub(super) fn prepared(&mut self, seq: u64, stmt: u32, params: u16) {
        let Some(e) = self.entry(seq) else { return };
        let (id, sql) = (e.id, e.query.clone());
        self.history.prepared(id, stmt);
        if self.statements.len() < MAX_STATEMENTS {
            self.statements.insert(
                stmt,
                super::Statement {
                    sql,
                    params,
                    ..Default::default()
                },
            );
            self.preparing = Some(stmt);
        }
    }
}
