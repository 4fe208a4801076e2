//! Command bytes: their names (as MaxScale prints them) and whether the server answers.

const NAMES: [&str; 32] = [
    "COM_SLEEP",
    "COM_QUIT",
    "COM_INIT_DB",
    "COM_QUERY",
    "COM_FIELD_LIST",
    "COM_CREATE_DB",
    "COM_DROP_DB",
    "COM_REFRESH",
    "COM_SHUTDOWN",
    "COM_STATISTICS",
    "COM_PROCESS_INFO",
    "COM_CONNECT",
    "COM_PROCESS_KILL",
    "COM_DEBUG",
    "COM_PING",
    "COM_TIME",
    "COM_DELAYED_INSERT",
    "COM_CHANGE_USER",
    "COM_BINLOG_DUMP",
    "COM_TABLE_DUMP",
    "COM_CONNECT_OUT",
    "COM_REGISTER_SLAVE",
    "COM_STMT_PREPARE",
    "COM_STMT_EXECUTE",
    "COM_STMT_SEND_LONG_DATA",
    "COM_STMT_CLOSE",
    "COM_STMT_RESET",
    "COM_SET_OPTION",
    "COM_STMT_FETCH",
    "COM_DAEMON",
    "",
    "COM_RESET_CONNECTION",
];

pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PING: u8 = 0x0E;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1A;
pub const COM_SET_OPTION: u8 = 0x1B;
pub const COM_STMT_FETCH: u8 = 0x1C;
pub const COM_RESET_CONNECTION: u8 = 0x1F;
pub const COM_STMT_BULK_EXECUTE: u8 = 0xFA;

/// The name MaxScale uses for a command byte, e.g. `COM_QUERY` or `COM_UNKNOWN(1e)`.
pub fn command_name(cmd: u8) -> String {
    match cmd {
        0x42 => "COM_XPAND_REPL".into(),
        0xFA => "COM_STMT_BULK_EXECUTE".into(),
        0xFE => "COM_MULTI".into(),
        c if (c as usize) < NAMES.len() && !NAMES[c as usize].is_empty() => {
            NAMES[c as usize].into()
        }
        c => format!("COM_UNKNOWN({c:02x})"),
    }
}

/// Whether the server sends a reply to this command.
pub fn will_respond(cmd: u8) -> bool {
    !matches!(cmd, COM_QUIT | COM_STMT_SEND_LONG_DATA | COM_STMT_CLOSE)
}

/// Whether the payload of this command carries SQL text (reported as `query`).
pub fn carries_sql(cmd: u8) -> bool {
    matches!(cmd, COM_QUERY | COM_STMT_PREPARE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_maxscale() {
        assert_eq!(command_name(0x00), "COM_SLEEP");
        assert_eq!(command_name(0x03), "COM_QUERY");
        assert_eq!(command_name(0x1D), "COM_DAEMON");
        assert_eq!(command_name(0x1E), "COM_UNKNOWN(1e)");
        assert_eq!(command_name(0x1F), "COM_RESET_CONNECTION");
        assert_eq!(command_name(0x20), "COM_UNKNOWN(20)");
        assert_eq!(command_name(0x42), "COM_XPAND_REPL");
        assert_eq!(command_name(0xFA), "COM_STMT_BULK_EXECUTE");
        assert_eq!(command_name(0xFE), "COM_MULTI");
        assert_eq!(command_name(0xAB), "COM_UNKNOWN(ab)");
    }

    #[test]
    fn commands_without_reply() {
        for c in [COM_QUIT, COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE] {
            assert!(!will_respond(c));
        }
        for c in [COM_QUERY, COM_PING, COM_STMT_EXECUTE, COM_INIT_DB, 0x1E] {
            assert!(will_respond(c));
        }
    }
}
