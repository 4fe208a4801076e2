//! A raw connection to a MariaDB server, as MaxScale's backend protocol would hold it: the
//! handshake (mysql_native_password) is done here, then packets pass through untouched and a
//! reader thread reports every reply packet and the connection's end.

use sha1::{Digest, Sha1};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::Sender;
use std::thread;

pub enum Event {
    Data(usize, Vec<u8>),
    Closed(usize, String),
    /// A login that ran in the background (`Backend::login` on its own thread) ended.
    Connected(usize, Result<Backend, String>),
    /// A packet from a real client attached to the session (`listener`).
    ClientPacket(Vec<u8>),
    ClientClosed,
}

pub struct Backend {
    stream: TcpStream,
    pub connection_id: u32,
}

const PROTOCOL_41: u64 = 1 << 9;
const SECURE_CONNECTION: u64 = 1 << 15;
const PLUGIN_AUTH: u64 = 1 << 19;
const CONNECT_WITH_DB: u64 = 1 << 3;
const CLIENT_MYSQL: u64 = 1;

pub fn read_packet(s: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h)?;
    let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
    let mut p = vec![0; len];
    s.read_exact(&mut p)?;
    Ok((h[3], p))
}

pub fn write_packet(s: &mut impl Write, seq: u8, payload: &[u8]) -> io::Result<()> {
    let mut b = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    b.push(seq);
    b.extend_from_slice(payload);
    s.write_all(&b)
}

fn scramble(nonce: &[u8], password: &str) -> Vec<u8> {
    if password.is_empty() {
        return vec![];
    }
    let h1 = Sha1::digest(password.as_bytes());
    let h2 = Sha1::digest(h1);
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(h2);
    let h3 = h.finalize();
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn server_error(p: &[u8]) -> io::Error {
    let code = u16::from_le_bytes([p[1], p[2]]);
    bad(format!(
        "server error {code}: {}",
        String::from_utf8_lossy(&p[3..])
    ))
}

impl Backend {
    /// Connects and authenticates with capabilities `caps` (basic | extended << 32); replies
    /// then go to `events` tagged with `endpoint`.
    pub fn connect(
        port: u16,
        user: &str,
        password: &str,
        db: &str,
        caps: u64,
        endpoint: usize,
        events: Sender<Event>,
    ) -> io::Result<Backend> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        Backend::login(s, user, password, db, caps, endpoint, events)
    }

    /// The handshake on a connection already open (a server that is slow to log in, e.g. a
    /// stopped process, blocks here; shutting the socket down from another clone ends it).
    pub fn login(
        mut s: TcpStream,
        user: &str,
        password: &str,
        db: &str,
        caps: u64,
        endpoint: usize,
        events: Sender<Event>,
    ) -> io::Result<Backend> {
        s.set_nodelay(true)?;
        let (seq, hs) = read_packet(&mut s)?;
        if hs.first() == Some(&0xFF) {
            return Err(server_error(&hs));
        }
        let nul = hs[1..]
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("bad handshake"))?
            + 1;
        let mut i = nul + 1;
        let connection_id = u32::from_le_bytes(hs[i..i + 4].try_into().unwrap());
        i += 4;
        let mut nonce = hs[i..i + 8].to_vec();
        i += 9;
        let server_caps_lo = u16::from_le_bytes([hs[i], hs[i + 1]]) as u64;
        let server_caps_hi = u16::from_le_bytes([hs[i + 5], hs[i + 6]]) as u64;
        let auth_len = hs[i + 7] as usize;
        let server_caps = server_caps_lo | server_caps_hi << 16;
        i += 8 + 10;
        let part2 = auth_len.saturating_sub(8).max(13);
        nonce.extend_from_slice(&hs[i..i + part2 - 1]);

        let mut caps = caps | PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH;
        if !db.is_empty() {
            caps |= CONNECT_WITH_DB;
        }
        let mut r = Vec::new();
        r.extend_from_slice(
            &((caps & 0xFFFF_FFFF & !CLIENT_MYSQL) as u32 & server_caps as u32
                | PROTOCOL_41 as u32)
                .to_le_bytes(),
        );
        r.extend_from_slice(&(1u32 << 30).to_le_bytes());
        r.push(45);
        r.extend_from_slice(&[0; 19]);
        r.extend_from_slice(&((caps >> 32) as u32).to_le_bytes());
        r.extend_from_slice(user.as_bytes());
        r.push(0);
        let auth = scramble(&nonce, password);
        r.push(auth.len() as u8);
        r.extend_from_slice(&auth);
        if !db.is_empty() {
            r.extend_from_slice(db.as_bytes());
            r.push(0);
        }
        r.extend_from_slice(b"mysql_native_password\0");
        write_packet(&mut s, seq.wrapping_add(1), &r)?;
        let (mut seq, mut reply) = read_packet(&mut s)?;
        if reply.first() == Some(&0xFE) {
            // Authentication switch: answer with the new nonce.
            let nul = reply
                .iter()
                .skip(1)
                .position(|&b| b == 0)
                .map(|p| p + 2)
                .ok_or_else(|| bad("bad auth switch"))?;
            let nonce: Vec<u8> = reply[nul..]
                .iter()
                .copied()
                .take_while(|&b| b != 0)
                .collect();
            write_packet(&mut s, seq.wrapping_add(1), &scramble(&nonce, password))?;
            (seq, reply) = read_packet(&mut s)?;
        }
        let _ = seq;
        match reply.first() {
            Some(0x00) => {}
            Some(0xFF) => return Err(server_error(&reply)),
            _ => return Err(bad("unexpected authentication reply")),
        }
        let mut rd = s.try_clone()?;
        thread::spawn(move || loop {
            let mut h = [0u8; 4];
            let res = rd.read_exact(&mut h).and_then(|_| {
                let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
                let mut p = h.to_vec();
                p.resize(4 + len, 0);
                rd.read_exact(&mut p[4..]).map(|_| p)
            });
            match res {
                Ok(p) => {
                    if events.send(Event::Data(endpoint, p)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = events.send(Event::Closed(endpoint, format!("connection lost: {e}")));
                    return;
                }
            }
        });
        Ok(Backend {
            stream: s,
            connection_id,
        })
    }

    pub fn write(&mut self, data: &[u8]) -> bool {
        self.stream.write_all(data).is_ok()
    }

    pub fn close(&mut self) {
        self.shutdown();
    }

    /// Ends the connection (its reader reports it closed).
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
