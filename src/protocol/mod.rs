//! The parts of the MariaDB client/server protocol that routers need: packet framing,
//! command names, reply tracking and packets a router makes up itself.
//! Hand-written because routers see raw packets one at a time and must track a reply as it
//! streams; protocol client crates (mysql_common, mysql_async) parse whole exchanges instead.

pub mod command;
pub mod packet;
pub mod reply;
pub mod resultset;
pub mod rows;
pub mod session_sql;

#[cfg(test)]
mod framing_proptests;
#[cfg(test)]
mod reply_proptests;

pub use command::{command_name, will_respond};
pub use packet::{Packet, PacketError, Packets};
pub use reply::{ReplyError, ReplyState, ReplyTracker};

/// Client capability bits the routers care about.
pub mod caps {
    pub const CONNECT_WITH_DB: u64 = 1 << 3;
    pub const PROTOCOL_41: u64 = 1 << 9;
    pub const MULTI_STATEMENTS: u64 = 1 << 16;
    pub const MULTI_RESULTS: u64 = 1 << 17;
    pub const SESSION_TRACK: u64 = 1 << 23;
    pub const DEPRECATE_EOF: u64 = 1 << 24;
}

/// Server status flags (OK and EOF packets).
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS_EXIST: u16 = 0x0008;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const LAST_ROW_SENT: u16 = 0x0080;
}
