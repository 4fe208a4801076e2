//! Packets a router sends on its own: OK, ERR and small text result sets.

use super::packet::{write_lenenc_str, write_packet};

/// An ERR packet with a SQLSTATE.
pub fn err_packet(seq: u8, code: u16, sqlstate: &str, message: &str) -> Vec<u8> {
    let mut pl = vec![0xFF];
    pl.extend_from_slice(&code.to_le_bytes());
    pl.push(b'#');
    let mut state = sqlstate.as_bytes().to_vec();
    state.resize(5, b'0');
    pl.extend_from_slice(&state);
    pl.extend_from_slice(message.as_bytes());
    let mut out = Vec::new();
    write_packet(&mut out, seq, &pl);
    out
}

/// A plain OK packet.
pub fn ok_packet(seq: u8, status: u16) -> Vec<u8> {
    let mut pl = vec![0x00, 0, 0];
    pl.extend_from_slice(&status.to_le_bytes());
    pl.extend_from_slice(&[0, 0]);
    let mut out = Vec::new();
    write_packet(&mut out, seq, &pl);
    out
}

/// A text result set of string columns (NULL as None), starting at sequence 1.
/// `deprecate_eof` must match what the client negotiated.
pub fn text_resultset(
    columns: &[&str],
    rows: &[Vec<Option<String>>],
    status: u16,
    deprecate_eof: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seq = 1u8;
    let mut put = |out: &mut Vec<u8>, pl: &[u8]| {
        write_packet(out, seq, pl);
        seq = seq.wrapping_add(1);
    };
    let mut count = Vec::new();
    super::packet::write_lenenc(&mut count, columns.len() as u64);
    put(&mut out, &count);
    for name in columns {
        let mut pl = Vec::new();
        for s in ["def", "", "", "", name, ""] {
            write_lenenc_str(&mut pl, s.as_bytes());
        }
        // fixed part: length 0x0c, charset utf8mb4 (45), column length, type VAR_STRING, flags, decimals
        pl.extend_from_slice(&[0x0C, 45, 0, 0x00, 0x01, 0, 0, 0xFD, 0, 0, 0, 0, 0]);
        put(&mut out, &pl);
    }
    let eof = |status: u16| {
        let mut pl = vec![0xFE, 0, 0];
        pl.extend_from_slice(&status.to_le_bytes());
        pl
    };
    if !deprecate_eof {
        put(&mut out, &eof(status));
    }
    for row in rows {
        let mut pl = Vec::new();
        for v in row {
            match v {
                Some(s) => write_lenenc_str(&mut pl, s.as_bytes()),
                None => pl.push(0xFB),
            }
        }
        put(&mut out, &pl);
    }
    if deprecate_eof {
        let mut pl = vec![0xFE, 0, 0];
        pl.extend_from_slice(&status.to_le_bytes());
        pl.extend_from_slice(&[0, 0]);
        put(&mut out, &pl);
    } else {
        put(&mut out, &eof(status));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{command::COM_QUERY, packet::Packets, reply::ReplyTracker};
    use super::*;

    #[test]
    fn made_up_resultset_parses_back() {
        for dep in [false, true] {
            let long = "x".repeat(300); // lengths of 251 bytes and more need a 3-byte prefix
            let rows = vec![
                vec![Some("a".to_string()), None],
                vec![Some(long), Some("b".into())],
            ];
            let buf = text_resultset(&["c1", "c2"], &rows, 2, dep);
            let mut t = ReplyTracker::new(dep);
            t.start(COM_QUERY);
            for p in Packets::new(&buf) {
                t.feed(&p.unwrap()).unwrap();
            }
            assert!(t.is_complete());
            assert_eq!(t.rows(), 2);
        }
    }

    #[test]
    fn err_packet_layout() {
        let b = err_packet(1, 1927, "70100", "bye");
        assert_eq!(&b[..4], &[12, 0, 0, 1]);
        assert_eq!(&b[4..], b"\xFF\x87\x07#70100bye");
    }
}
