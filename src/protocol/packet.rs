//! Packet framing: a 3-byte little-endian payload length, a sequence number, the payload.

use std::fmt;

pub const HEADER_LEN: usize = 4;
/// A payload of exactly this length is continued in the next packet.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub seq: u8,
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// The first payload byte: the command of a request, the kind of a reply packet.
    pub fn first(&self) -> Option<u8> {
        self.payload.first().copied()
    }
    /// Whether the next packet continues this one (payloads of 16 MiB - 1 bytes).
    pub fn is_continued(&self) -> bool {
        self.payload.len() == MAX_PAYLOAD
    }
    pub fn is_err(&self) -> bool {
        self.first() == Some(0xFF)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// The buffer ends inside a header or a payload.
    Truncated {
        offset: usize,
        needed: usize,
        have: usize,
    },
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Truncated {
                offset,
                needed,
                have,
            } => write!(
                f,
                "malformed packet at offset {offset}: {needed} bytes needed, {have} present"
            ),
        }
    }
}

impl std::error::Error for PacketError {}

/// Iterates over the complete packets of a buffer.
pub struct Packets<'a> {
    buf: &'a [u8],
    offset: usize,
}

impl<'a> Packets<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Packets { buf, offset: 0 }
    }
}

impl<'a> Iterator for Packets<'a> {
    type Item = Result<Packet<'a>, PacketError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.offset..];
        if rest.is_empty() {
            return None;
        }
        if rest.len() < HEADER_LEN {
            let err = PacketError::Truncated {
                offset: self.offset,
                needed: HEADER_LEN,
                have: rest.len(),
            };
            self.offset = self.buf.len();
            return Some(Err(err));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], 0]) as usize;
        if rest.len() < HEADER_LEN + len {
            let err = PacketError::Truncated {
                offset: self.offset,
                needed: HEADER_LEN + len,
                have: rest.len(),
            };
            self.offset = self.buf.len();
            return Some(Err(err));
        }
        self.offset += HEADER_LEN + len;
        Some(Ok(Packet {
            seq: rest[3],
            payload: &rest[HEADER_LEN..HEADER_LEN + len],
        }))
    }
}

/// Parses a buffer that must hold exactly one packet.
pub fn single(buf: &[u8]) -> Result<Packet<'_>, PacketError> {
    let mut it = Packets::new(buf);
    match it.next() {
        Some(Ok(p)) if it.offset == buf.len() => Ok(p),
        Some(Ok(_)) => Err(PacketError::Truncated {
            offset: it.offset,
            needed: 0,
            have: buf.len(),
        }),
        Some(Err(e)) => Err(e),
        None => Err(PacketError::Truncated {
            offset: 0,
            needed: HEADER_LEN,
            have: 0,
        }),
    }
}

/// Appends one packet (header and payload) to `out`. The payload must be below 16 MiB.
pub fn write_packet(out: &mut Vec<u8>, seq: u8, payload: &[u8]) {
    debug_assert!(payload.len() < MAX_PAYLOAD);
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes()[..3]);
    out.push(seq);
    out.extend_from_slice(payload);
}

/// Reads a length-encoded integer. Returns the value and the bytes it used.
pub fn read_lenenc(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let take = |n: usize| -> Option<u64> {
        let bytes = buf.get(1..1 + n)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(bytes);
        Some(u64::from_le_bytes(v))
    };
    match first {
        0..=0xFA => Some((first as u64, 1)),
        0xFC => Some((take(2)?, 3)),
        0xFD => Some((take(3)?, 4)),
        0xFE => Some((take(8)?, 9)),
        _ => None, // 0xFB is NULL, 0xFF is not an integer
    }
}

pub fn write_lenenc(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xFA => out.push(v as u8),
        0xFB..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

pub fn write_lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    write_lenenc(out, s.len() as u64);
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_several_packets() {
        let mut buf = Vec::new();
        write_packet(&mut buf, 1, b"\x03abc");
        write_packet(&mut buf, 2, b"");
        let v: Vec<_> = Packets::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            v,
            vec![
                Packet {
                    seq: 1,
                    payload: b"\x03abc"
                },
                Packet {
                    seq: 2,
                    payload: b""
                }
            ]
        );
    }

    #[test]
    fn truncated_header_and_payload_are_errors() {
        assert!(matches!(
            Packets::new(&[1, 0]).next(),
            Some(Err(PacketError::Truncated { .. }))
        ));
        assert!(matches!(
            Packets::new(&[5, 0, 0, 0, 1]).next(),
            Some(Err(PacketError::Truncated { .. }))
        ));
        assert!(
            single(&[1, 0, 0, 0, 9, 0]).is_err(),
            "trailing bytes after one packet"
        );
    }

    #[test]
    fn lenenc_round_trip() {
        for v in [
            0u64,
            250,
            251,
            65535,
            65536,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            write_lenenc(&mut b, v);
            assert_eq!(read_lenenc(&b), Some((v, b.len())), "value {v}");
        }
        assert_eq!(read_lenenc(&[0xFC, 1]), None, "short");
        assert_eq!(read_lenenc(&[0xFB]), None, "NULL is not an integer");
    }
}
