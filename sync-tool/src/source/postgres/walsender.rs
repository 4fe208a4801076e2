//! A logical-replication (walsender) session: start-up and authentication in replication mode,
//! replication commands (IDENTIFY_SYSTEM, CREATE_REPLICATION_SLOT), then START_REPLICATION with
//! the pgoutput options that the server's major supports, and the CopyBoth stream: XLogData
//! and keepalives in, standby status updates out. Messages are built with postgres-protocol
//! (the wire layer of tokio-postgres), which also does SCRAM and MD5.
//!
//! Hand-written because the replication crates fix the pgoutput options (protocol 1 and the
//! `messages` option, which PostgreSQL before 14 refuses).

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::retry::fatal;

/// What the stream delivers: a pgoutput message, or a keepalive with the server's WAL end.
#[derive(Debug)]
pub enum Event {
    XLogData { data: Bytes },
    KeepAlive { wal_end: u64 },
}

/// A server error: SQLSTATE and message.
#[derive(Debug)]
pub struct ServerError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ServerError {}

pub struct ConnectParams<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
    pub database: &'a str,
    pub options: &'a str,
    pub application_name: &'a str,
}

/// A replication session before START_REPLICATION.
pub struct WalSender {
    sock: TcpStream,
    buf: BytesMut,
}

/// One backend message: tag and body.
struct Msg {
    tag: u8,
    body: Bytes,
}

fn server_error(body: &[u8]) -> ServerError {
    let (mut code, mut message) = (String::new(), String::new());
    for field in body.split(|&b| b == 0) {
        if let Some((&k, v)) = field.split_first() {
            match k {
                b'C' => code = String::from_utf8_lossy(v).into_owned(),
                b'M' => message = String::from_utf8_lossy(v).into_owned(),
                _ => {}
            }
        }
    }
    ServerError { code, message }
}

/// The length of the message at the front of `buf` (tag byte not counted), once its header
/// is there.
fn frame_len(buf: &BytesMut) -> Option<usize> {
    (buf.len() >= 5).then(|| u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize)
}

/// Takes one whole message off the front of `buf`, if it holds one.
fn take_msg(buf: &mut BytesMut) -> Result<Option<Msg>> {
    let Some(len) = frame_len(buf) else {
        return Ok(None);
    };
    if len < 4 {
        bail!("postgres replication: invalid message length {len}");
    }
    if buf.len() <= len {
        return Ok(None);
    }
    let tag = buf[0];
    let mut m = buf.split_to(len + 1);
    m.advance(5);
    Ok(Some(Msg {
        tag,
        body: m.freeze(),
    }))
}

/// Reads one whole message from `sock` into `buf` (cancel-safe: bytes read stay in `buf`).
async fn read_msg(sock: &mut (impl AsyncReadExt + Unpin), buf: &mut BytesMut) -> Result<Msg> {
    loop {
        if let Some(m) = take_msg(buf)? {
            return Ok(m);
        }
        // the rest of the message, or enough for a header and then some
        buf.reserve(frame_len(buf).map_or(8192, |len| len + 1 - buf.len()));
        if sock.read_buf(buf).await? == 0 {
            bail!("postgres replication: the server closed the connection");
        }
    }
}

impl WalSender {
    /// Connects and authenticates (trust, password, MD5, SCRAM-SHA-256) in replication mode.
    pub async fn connect(p: &ConnectParams<'_>) -> Result<WalSender> {
        let sock = tokio::time::timeout(
            Duration::from_secs(10),
            TcpStream::connect((p.host, p.port)),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "postgres replication connect {}:{}: timed out",
                p.host,
                p.port
            )
        })?
        .map_err(|e| anyhow!("postgres replication connect {}:{}: {e}", p.host, p.port))?;
        sock.set_nodelay(true)?;
        let mut ws = WalSender {
            sock,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        let mut out = BytesMut::new();
        let mut params = vec![
            ("user", p.user),
            ("database", p.database),
            ("replication", "database"),
            ("client_encoding", "UTF8"),
            ("application_name", p.application_name),
        ];
        if !p.options.is_empty() {
            params.push(("options", p.options));
        }
        frontend::startup_message(params, &mut out)?;
        ws.send(&mut out).await?;
        let mut scram: Option<sasl::ScramSha256> = None;
        loop {
            let m = ws.read().await?;
            match m.tag {
                b'R' => {
                    let mut b = m.body.clone();
                    if b.len() < 4 {
                        bail!("postgres replication: short authentication message");
                    }
                    match b.get_u32() {
                        0 => {}
                        3 => {
                            frontend::password_message(p.password.as_bytes(), &mut out)?;
                            ws.send(&mut out).await?;
                        }
                        5 if b.len() >= 4 => {
                            let salt = [b[0], b[1], b[2], b[3]];
                            let h = md5_hash(p.user.as_bytes(), p.password.as_bytes(), salt);
                            frontend::password_message(h.as_bytes(), &mut out)?;
                            ws.send(&mut out).await?;
                        }
                        10 => {
                            let mechs: Vec<&[u8]> = b.split(|&c| c == 0).collect();
                            if !mechs.iter().any(|m| *m == sasl::SCRAM_SHA_256.as_bytes()) {
                                return Err(fatal(
                                    "postgres replication: the server offers no SCRAM-SHA-256",
                                ));
                            }
                            let s = sasl::ScramSha256::new(
                                p.password.as_bytes(),
                                sasl::ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response(
                                sasl::SCRAM_SHA_256,
                                s.message(),
                                &mut out,
                            )?;
                            ws.send(&mut out).await?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| anyhow!("SASL continue without SASL"))?;
                            s.update(&b)
                                .map_err(|e| fatal(format!("postgres SCRAM: {e}")))?;
                            frontend::sasl_response(s.message(), &mut out)?;
                            ws.send(&mut out).await?;
                        }
                        12 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| anyhow!("SASL final without SASL"))?;
                            s.finish(&b)
                                .map_err(|e| fatal(format!("postgres SCRAM: {e}")))?;
                        }
                        k => {
                            return Err(fatal(format!(
                                "postgres replication: unsupported authentication method {k}"
                            )))
                        }
                    }
                }
                b'E' => {
                    let e = server_error(&m.body);
                    // 28xxx: bad password / no pg_hba entry; 3D000: no such database
                    if e.code.starts_with("28") || e.code == "3D000" || e.code == "42501" {
                        return Err(fatal(format!("postgres replication connect: {e}")));
                    }
                    bail!("postgres replication connect: {e}");
                }
                b'Z' => return Ok(ws),
                _ => {} // ParameterStatus, BackendKeyData, Notice
            }
        }
    }

    async fn send(&mut self, out: &mut BytesMut) -> Result<()> {
        self.sock.write_all(out).await?;
        out.clear();
        Ok(())
    }

    async fn read(&mut self) -> Result<Msg> {
        read_msg(&mut self.sock, &mut self.buf).await
    }

    /// Runs a replication command; returns the rows of its (last) result set as text.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.send(&mut out).await?;
        let mut rows = Vec::new();
        let mut err = None;
        loop {
            let m = self.read().await?;
            match m.tag {
                b'T' => rows.clear(),
                b'D' => {
                    let mut b = m.body.clone();
                    let n = b.get_u16() as usize;
                    let mut row = Vec::with_capacity(n);
                    for _ in 0..n {
                        let len = b.get_i32();
                        if len < 0 {
                            row.push(None);
                        } else {
                            let v = b.split_to(len as usize);
                            row.push(Some(String::from_utf8_lossy(&v).into_owned()));
                        }
                    }
                    rows.push(row);
                }
                b'E' => err = Some(server_error(&m.body)),
                b'Z' => break,
                _ => {}
            }
        }
        match err {
            Some(e) => Err(e.into()),
            None => Ok(rows),
        }
    }

    /// Sends START_REPLICATION (`command` whole) and hands the stream to a worker task.
    pub async fn start(
        mut self,
        command: &str,
        status_interval: Duration,
        start_lsn: u64,
    ) -> Result<Replication> {
        let mut out = BytesMut::new();
        frontend::query(command, &mut out)?;
        self.send(&mut out).await?;
        loop {
            let m = self.read().await?;
            match m.tag {
                b'W' => break,
                b'E' => return Err(server_error(&m.body).into()),
                _ => {}
            }
        }
        let (tx, rx) = mpsc::channel(BATCHES_QUEUED);
        let (applied_tx, applied_rx) = watch::channel(start_lsn);
        let task = tokio::spawn(async move {
            let r = worker(self, tx.clone(), applied_rx, status_interval).await;
            if let Err(e) = r {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Replication {
            rx,
            ready: VecDeque::new(),
            applied: applied_tx,
            task,
        })
    }
}

/// The running stream.
pub struct Replication {
    rx: mpsc::Receiver<Result<Vec<Event>>>,
    /// The rest of the last batch received.
    ready: VecDeque<Event>,
    applied: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Replication {
    /// The next event (cancel-safe).
    pub async fn recv(&mut self) -> Result<Event> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(e);
            }
            match self.rx.recv().await {
                Some(r) => self.ready.extend(r?),
                None => bail!("replication stream ended"),
            }
        }
    }

    /// Everything up to `lsn` is durable here: the server may release it (sent with the next
    /// standby status update, at once if it is a raise).
    pub fn update_applied_lsn(&self, lsn: u64) {
        self.applied.send_if_modified(|v| {
            if lsn > *v {
                *v = lsn;
                true
            } else {
                false
            }
        });
    }
}

impl Drop for Replication {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

fn status_update(lsn: u64, out: &mut BytesMut) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let mut body = BytesMut::with_capacity(34);
    body.put_u8(b'r');
    body.put_u64(lsn); // written
    body.put_u64(lsn); // flushed
    body.put_u64(lsn); // applied
    body.put_i64(now - PG_EPOCH_UNIX_MICROS);
    body.put_u8(0);
    out.put_u8(b'd');
    out.put_u32(body.len() as u32 + 4);
    out.extend_from_slice(&body);
}

/// Writes a standby status update for `lsn` (`out`: a reused buffer).
async fn send_status(
    wr: &mut (impl AsyncWriteExt + Unpin),
    out: &mut BytesMut,
    lsn: u64,
) -> Result<()> {
    status_update(lsn, out);
    wr.write_all(out).await?;
    out.clear();
    Ok(())
}

/// Events handed over at once: every whole message a read brought, up to this many. One
/// hand-over per message woke the consumer (and, with the queue full, the reader) per row.
const BATCH_EVENTS: usize = 512;
/// Batches queued for the consumer (at most `BATCHES_QUEUED * BATCH_EVENTS` events).
const BATCHES_QUEUED: usize = 16;

async fn worker(
    ws: WalSender,
    tx: mpsc::Sender<Result<Vec<Event>>>,
    mut applied: watch::Receiver<u64>,
    status_interval: Duration,
) -> Result<()> {
    let WalSender { sock, mut buf } = ws;
    let (mut rd, mut wr) = sock.into_split();
    let mut out = BytesMut::new();
    let mut tick = tokio::time::interval(status_interval);
    let mut sent = 0u64;
    loop {
        let first = tokio::select! {
            m = read_msg(&mut rd, &mut buf) => m?,
            _ = tick.tick() => {
                sent = *applied.borrow();
                send_status(&mut wr, &mut out, sent).await?;
                continue;
            }
            r = applied.changed() => {
                if r.is_err() {
                    return Ok(()); // the consumer is gone
                }
                let l = *applied.borrow_and_update();
                if l > sent {
                    sent = l;
                    send_status(&mut wr, &mut out, l).await?;
                }
                continue;
            }
        };
        let mut batch = Vec::new();
        let mut reply = false;
        let mut next = Some(first);
        while let Some(m) = next {
            match m.tag {
                b'd' if !m.body.is_empty() => {
                    let mut b = m.body;
                    match b.get_u8() {
                        b'w' if b.len() >= 24 => {
                            b.advance(24); // start, end, send time
                            batch.push(Event::XLogData { data: b });
                        }
                        b'k' if b.len() >= 17 => {
                            let wal_end = b.get_u64();
                            b.advance(8);
                            reply |= b.get_u8() == 1;
                            batch.push(Event::KeepAlive { wal_end });
                        }
                        k => {
                            hand_over(&tx, batch).await;
                            bail!("postgres replication: unexpected CopyData message {k:?}")
                        }
                    }
                }
                b'E' => {
                    hand_over(&tx, batch).await;
                    return Err(anyhow!("replication stream: {}", server_error(&m.body)));
                }
                b'c' => {
                    hand_over(&tx, batch).await;
                    bail!("replication stopped by the server")
                }
                _ => {}
            }
            next = if batch.len() < BATCH_EVENTS {
                take_msg(&mut buf)?
            } else {
                None
            };
        }
        if reply {
            sent = *applied.borrow();
            send_status(&mut wr, &mut out, sent).await?;
        }
        if !batch.is_empty() && tx.send(Ok(batch)).await.is_err() {
            return Ok(()); // the consumer is gone
        }
    }
}

/// Hands the events read before a stream error to the consumer, which gets the error next.
async fn hand_over(tx: &mpsc::Sender<Result<Vec<Event>>>, batch: Vec<Event>) {
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch)).await;
    }
}
