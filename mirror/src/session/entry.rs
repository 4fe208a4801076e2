//! One client request as the session keeps it until every target has answered it (or been
//! dropped from it) and its report is written.

use crate::diff::Comparison;
use std::collections::VecDeque;
use std::time::Instant;

/// Counted for every waiting request on top of its bytes, so that a flood of tiny requests
/// is bounded by `max_backlog` too.
pub const ENTRY_OVERHEAD: u64 = 256;

/// Where one target is with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not written to the target yet.
    Pending,
    /// Written; the reply is awaited or arriving.
    InFlight,
    /// Answered.
    Done,
    /// The target was not in use for this request (failed, dropped, lost, not connected).
    Skipped,
}

/// A target's answer, as the report shows it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub checksum: u32,
    pub rows: u64,
    pub warnings: u16,
    pub duration_ms: u64,
    pub kind: &'static str,
}

/// One target's part in one request.
pub struct Part {
    pub step: Step,
    pub written: Instant,
    pub outcome: Option<Outcome>,
    /// LOCAL INFILE data packets already written to this target.
    pub data_sent: usize,
    /// The end of the LOCAL INFILE data (an empty packet) was written.
    pub load_ended: bool,
    /// Sequence number for a made-up end of the LOCAL INFILE data.
    pub load_seq: u8,
}

pub struct Entry {
    pub seq: u64,
    pub command: u8,
    /// What the report shows as `query`.
    pub query: Vec<u8>,
    pub expects_reply: bool,
    /// Host id of the client packet (MaxScale matches prepared statements with it).
    pub id: u32,
    /// Copies of the request's packets, kept while a target in use has not been written them.
    pub packets: Vec<Vec<u8>>,
    /// The client is still sending this request (packets of a 16 MiB+ request).
    pub continued: bool,
    /// LOCAL INFILE data from the client (with host ids), kept while a target may still
    /// ask for it; `data_base` is the number of the first one kept.
    pub data: VecDeque<(Vec<u8>, u32)>,
    pub data_base: usize,
    /// The client sent all the LOCAL INFILE data it will send.
    pub data_complete: bool,
    /// sync=true when the request came: it starts only after every earlier request was
    /// answered by every target, and the client's answer waits for all targets.
    pub sync: bool,
    /// Nothing may be written after this request to a target before it answered it
    /// (`is_barrier`).
    pub barrier: bool,
    /// Bytes the request holds (packets, data), for the backlog bound.
    pub bytes: u64,
    /// Main has answered: the client has its reply, so targets still owing theirs count it
    /// in their backlog.
    pub charged: bool,
    /// An answer the router makes up instead of routing (a malformed request).
    pub made_up: Option<Vec<u8>>,
    pub parts: Vec<Part>,
    pub diff: Option<Comparison>,
}

impl Entry {
    pub fn part(&self, i: usize) -> &Part {
        &self.parts[i]
    }

    pub fn new_part(step: Step) -> Part {
        Part {
            step,
            written: Instant::now(),
            outcome: None,
            data_sent: 0,
            load_ended: false,
            load_seq: 0,
        }
    }
}

/// Whether what follows a request must wait for its answer: a statement that can make the
/// server ask for a LOCAL INFILE (the server would read the next request as file data; any
/// mention of LOCAL is enough, a false positive only costs pipelining), a COM_CHANGE_USER, and
/// a COM_STMT_PREPARE (the statement id of what follows is only known from its answer).
pub fn is_barrier(command: u8, payload: &[u8]) -> bool {
    use bridge::protocol::command::{COM_CHANGE_USER, COM_QUERY, COM_STMT_PREPARE};
    match command {
        COM_QUERY => payload.windows(5).any(|w| w.eq_ignore_ascii_case(b"local")),
        COM_CHANGE_USER | COM_STMT_PREPARE => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barriers() {
        assert!(is_barrier(
            3,
            b"\x03LOAD DATA LOCAL INFILE 'x' INTO TABLE t"
        ));
        assert!(is_barrier(
            3,
            b"\x03load data local infile 'x' into table t"
        ));
        assert!(!is_barrier(3, b"\x03SELECT 1"));
        assert!(!is_barrier(0x17, b"\x17local"));
        assert!(is_barrier(0x11, b"\x11"));
        assert!(is_barrier(0x16, b"\x16SELECT ?"));
    }
}
