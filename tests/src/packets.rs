//! Client packets a test sends.

use bridge::protocol::packet::{write_packet, Packets, MAX_PAYLOAD};

/// A command packet (sequence 0); payloads of 16 MiB or more become several packets.
pub fn command(cmd: u8, body: &[u8]) -> Vec<Vec<u8>> {
    let mut payload = vec![cmd];
    payload.extend_from_slice(body);
    split(&payload, 0)
}

pub fn query(sql: &str) -> Vec<Vec<u8>> {
    command(0x03, sql.as_bytes())
}

/// Frames a payload as packets starting at `seq`, each complete packet its own buffer.
pub fn split(payload: &[u8], seq: u8) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut seq = seq;
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        let mut p = Vec::with_capacity(n + 4);
        p.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        p.push(seq);
        p.extend_from_slice(&rest[..n]);
        out.push(p);
        rest = &rest[n..];
        seq = seq.wrapping_add(1);
        if n < MAX_PAYLOAD {
            break;
        }
    }
    out
}

pub fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    write_packet(&mut p, seq, payload);
    p
}

/// Payloads of the packets in a buffer.
pub fn payloads(buf: &[u8]) -> Vec<Vec<u8>> {
    Packets::new(buf)
        .map(|p| p.expect("well-formed packets").payload.to_vec())
        .collect()
}
