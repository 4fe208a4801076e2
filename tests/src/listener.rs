//! A MariaDB listener in front of module sessions, as MaxScale's listener is: real client
//! tools (mariadb-dump, Python connectors, an ORM) connect to it, each connection gets a
//! session of the router, and the test host serves them all from the test's thread.
//!
//! The handshake offers what the schemarouter's clients get from MaxScale (OLD_PROTOCOL: no
//! DEPRECATE_EOF), mysql_native_password, no TLS; any password is accepted (the backends check
//! the test host's own credentials).

use crate::backend::{read_packet, write_packet};
use crate::harness::{Harness, Targets};
use bridge::sim::SimRouter;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const LONG_PASSWORD: u32 = 1;
const CONNECT_WITH_DB: u32 = 1 << 3;
const PROTOCOL_41: u32 = 1 << 9;
const SECURE_CONNECTION: u32 = 1 << 15;
const PLUGIN_AUTH: u32 = 1 << 19;
const CONNECT_ATTRS: u32 = 1 << 20;
const PLUGIN_AUTH_LENENC: u32 = 1 << 21;
/// FOUND_ROWS, LONG_FLAG, LOCAL_FILES, INTERACTIVE, TRANSACTIONS, MULTI_STATEMENTS,
/// MULTI_RESULTS, PS_MULTI_RESULTS and the bits above.
const OFFERED: u32 = LONG_PASSWORD
    | 2
    | 4
    | CONNECT_WITH_DB
    | 0x80
    | PROTOCOL_41
    | 0x400
    | 0x2000
    | SECURE_CONNECTION
    | 0x1_0000
    | 0x2_0000
    | 0x4_0000
    | PLUGIN_AUTH
    | CONNECT_ATTRS
    | PLUGIN_AUTH_LENENC;
const NATIVE: &[u8] = b"mysql_native_password";
/// As MariaDB (and MaxScale) announce 10.x servers: the "5.5.5-" prefix tells old MySQL clients
/// (and mysql-connector-python) it is not MySQL 8.
const VERSION: &str = "5.5.5-10.11.19-MariaDB-test-host";

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// A length-encoded integer at the start of `b`: (value, bytes used).
fn lenenc(b: &[u8]) -> Option<(usize, usize)> {
    bridge::protocol::packet::read_lenenc(b).map(|(v, n)| (v as usize, n))
}

/// Runs the server side of the login; returns the client's capabilities and database.
fn login(s: &mut TcpStream, conn_id: u32) -> io::Result<(u32, String)> {
    let nonce = *b"abcdefgh12345678ijkl";
    let mut hs = vec![10];
    hs.extend_from_slice(VERSION.as_bytes());
    hs.push(0);
    hs.extend_from_slice(&conn_id.to_le_bytes());
    hs.extend_from_slice(&nonce[..8]);
    hs.push(0);
    hs.extend_from_slice(&(OFFERED as u16).to_le_bytes());
    hs.push(45);
    hs.extend_from_slice(&2u16.to_le_bytes());
    hs.extend_from_slice(&((OFFERED >> 16) as u16).to_le_bytes());
    hs.push(21);
    hs.extend_from_slice(&[0; 10]);
    hs.extend_from_slice(&nonce[8..]);
    hs.push(0);
    hs.extend_from_slice(NATIVE);
    hs.push(0);
    write_packet(s, 0, &hs)?;
    let (seq, r) = read_packet(s)?;
    if r.len() < 32 {
        return Err(bad("short login packet (TLS is not offered)"));
    }
    let caps = u32::from_le_bytes(r[..4].try_into().unwrap()) & OFFERED;
    let mut rest = &r[32..];
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| bad("no user"))?;
    rest = &rest[nul + 1..];
    let auth_len = if caps & PLUGIN_AUTH_LENENC != 0 {
        let (n, used) = lenenc(rest).ok_or_else(|| bad("bad auth data"))?;
        rest = &rest[used..];
        n
    } else {
        let n = *rest.first().ok_or_else(|| bad("no auth data"))? as usize;
        rest = &rest[1..];
        n
    };
    rest = rest
        .get(auth_len..)
        .ok_or_else(|| bad("auth data too long"))?;
    let mut db = String::new();
    if caps & CONNECT_WITH_DB != 0 {
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        db = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    let plugin: &[u8] = if caps & PLUGIN_AUTH != 0 {
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    } else {
        NATIVE
    };
    let mut seq = seq;
    if plugin != NATIVE {
        // Ask for mysql_native_password (what a MariaDB server offers too).
        let mut sw = vec![0xFE];
        sw.extend_from_slice(NATIVE);
        sw.push(0);
        sw.extend_from_slice(&nonce);
        sw.push(0);
        write_packet(s, seq.wrapping_add(1), &sw)?;
        seq = read_packet(s)?.0;
    }
    write_packet(s, seq.wrapping_add(1), &[0, 0, 0, 2, 0, 0, 0])?;
    Ok((caps, db))
}

/// Runs a client tool (`make` gets the listener's port) against sessions of `router` on
/// `targets`, serving every connection it opens until it exits; returns its output. Panics
/// if it runs longer than `timeout`.
pub fn run_tool(
    router: &SimRouter,
    targets: &Targets,
    timeout: Duration,
    make: impl FnOnce(u16) -> Command,
) -> Output {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut cmd = make(port);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the client tool");
    let pid = child.id();
    // The tool's output is read on another thread, so a full pipe never stalls it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let end = Instant::now() + timeout;
    let mut sessions: Vec<Harness> = Vec::new();
    let mut conn_id = 1u32;
    let mut output: Option<Output> = None;
    loop {
        if let Ok((mut s, _)) = listener.accept() {
            s.set_nonblocking(false).unwrap();
            s.set_nodelay(true).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            conn_id += 1;
            match login(&mut s, conn_id) {
                Ok((caps, db)) => {
                    s.set_read_timeout(None).unwrap();
                    let mut t = targets.clone();
                    t.caps &= caps as u64;
                    t.default_db = db;
                    match Harness::open(router, t) {
                        Some(mut h) => {
                            h.attach_client(s).expect("attach the client");
                            sessions.push(h);
                        }
                        None => {
                            let _ = write_packet(
                                &mut s,
                                2,
                                &bridge::protocol::resultset::err_packet(
                                    0,
                                    1815,
                                    "HY000",
                                    "Internal error: Session creation failed",
                                )[4..],
                            );
                        }
                    }
                }
                Err(e) => eprintln!("test host listener: login failed: {e}"),
            }
        }
        for h in sessions.iter_mut() {
            h.pump_until(Duration::from_millis(2), |_| false);
        }
        sessions.retain(|h| !h.client_gone());
        if output.is_none() {
            output = done_rx
                .try_recv()
                .ok()
                .map(|r| r.expect("client tool output"));
        }
        if sessions.is_empty() {
            if let Some(out) = output.take() {
                return out;
            }
        }
        if Instant::now() > end {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let out = output.or_else(|| {
                done_rx
                    .recv_timeout(Duration::from_secs(5))
                    .ok()
                    .map(|r| r.unwrap())
            });
            panic!(
                "the client tool did not finish within {timeout:?}: {:?}",
                out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            );
        }
        if sessions.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
