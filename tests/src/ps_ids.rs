//! MaxScale's prepared-statement ids, as the test host keeps them when asked
//! (`Targets::ps_ids`): the answer to a COM_STMT_PREPARE reaches the router with the statement
//! id replaced by the host id of the client packet that prepared it, the same on every backend,
//! and a COM_STMT_* packet written with that id reaches each server with the server's own id.

use bridge::protocol::command::*;
use bridge::protocol::{will_respond, Packets, ReplyState, ReplyTracker};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

#[derive(Default)]
pub struct PsIds {
    /// Host id -> the server's statement id.
    real: HashMap<u32, u32>,
    /// Requests written whose reply has not ended: (host id, tracker).
    pending: VecDeque<(u32, ReplyTracker)>,
}

fn names_statement(cmd: u8) -> bool {
    matches!(
        cmd,
        COM_STMT_EXECUTE
            | COM_STMT_CLOSE
            | COM_STMT_RESET
            | COM_STMT_FETCH
            | COM_STMT_SEND_LONG_DATA
            | COM_STMT_BULK_EXECUTE
    )
}

impl PsIds {
    /// A packet about to be written with host id `id`: what the server must get.
    pub fn on_write<'a>(&mut self, data: &'a [u8], id: u32, deprecate_eof: bool) -> Cow<'a, [u8]> {
        if data.len() < 5 || data[3] != 0 {
            return Cow::Borrowed(data);
        }
        let cmd = data[4];
        if will_respond(cmd) {
            let mut t = ReplyTracker::new(deprecate_eof);
            t.start(cmd);
            self.pending.push_back((id, t));
        }
        if !names_statement(cmd) || data.len() < 9 {
            return Cow::Borrowed(data);
        }
        let internal = u32::from_le_bytes(data[5..9].try_into().unwrap());
        let Some(&real) = self.real.get(&internal) else {
            return Cow::Borrowed(data);
        };
        if cmd == COM_STMT_CLOSE {
            self.real.remove(&internal);
        }
        let mut out = data.to_vec();
        out[5..9].copy_from_slice(&real.to_le_bytes());
        Cow::Owned(out)
    }

    /// Reply packets from the server, rewritten in place for the router.
    pub fn on_reply(&mut self, data: &mut [u8]) {
        let mut offset = 0;
        let mut rewrites = Vec::new();
        for p in Packets::new(data).flatten() {
            let at = offset;
            offset += 4 + p.payload.len();
            let Some((id, t)) = self.pending.front_mut() else {
                break;
            };
            let first = t.state() == ReplyState::Start;
            if t.feed(&p).is_err() {
                self.pending.pop_front();
                continue;
            }
            if first
                && t.command() == COM_STMT_PREPARE
                && p.first() == Some(0)
                && p.payload.len() >= 5
            {
                let real = u32::from_le_bytes(p.payload[1..5].try_into().unwrap());
                self.real.insert(*id, real);
                rewrites.push((at + 5, *id));
            }
            if t.is_complete() {
                self.pending.pop_front();
            }
        }
        for (at, id) in rewrites {
            data[at..at + 4].copy_from_slice(&id.to_le_bytes());
        }
    }
}
