//! One client session of a module, hosted by the test: the module's writes go to real
//! MariaDB connections, their replies come back to the module, and what the module sends to
//! the client is recorded.
//!
//! Two optional behaviours of MaxScale's backend protocol can be switched on per session
//! (`Targets::async_connect`, `Targets::history`): backends that log in in the background
//! (writes made meanwhile wait, in order), and the session-command history (see [`history`]).

use crate::backend::{Backend, Event};
use crate::env;
use crate::history::History;
use bridge::protocol::{will_respond, Packets, ReplyTracker};
use bridge::router::{EndpointInfo, SessionInfo};
use bridge::sim::{SimHost, SimRouter, SimSession};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// Capabilities of the simulated client: protocol 4.1, multi-statements and -results,
/// LOCAL INFILE, transactions, plugin auth; DEPRECATE_EOF optional.
pub const BASE_CAPS: u64 =
    0x0000_0001 | 0x4 | 0x80 | 0x200 | 0x2000 | 0x8000 | 0x1_0000 | 0x2_0000 | 0x4_0000 | 0x8_0000;
pub const DEPRECATE_EOF: u64 = 1 << 24;

#[derive(Clone)]
pub struct Targets {
    /// (name, port)
    pub servers: Vec<(String, u16)>,
    /// Endpoints MaxScale would consider down.
    pub down: Vec<String>,
    pub caps: u64,
    pub user: String,
    pub password: String,
    pub default_db: String,
    /// Backends log in in the background, as MaxScale's do: `connect` returns at once and
    /// writes wait until the login (and the history replay) is done.
    pub async_connect: bool,
    /// Keep MaxScale's session-command history: replayed on every backend that logs in
    /// later, outcomes compared, a backend that differs is failed (`History`).
    pub history: bool,
    /// Translate prepared-statement ids as MaxScale does (`ps_ids`).
    pub ps_ids: bool,
}

impl Targets {
    pub fn new(servers: &[(&str, u16)]) -> Self {
        Targets {
            servers: servers.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
            down: vec![],
            caps: BASE_CAPS,
            user: env::USER.into(),
            password: env::PASSWORD.into(),
            default_db: String::new(),
            async_connect: false,
            history: false,
            ps_ids: false,
        }
    }
}

/// What the module sent to the client.
#[derive(Default, Debug)]
pub struct Client {
    pub bytes: Vec<u8>,
    /// Replies ended with `complete`.
    pub completed: usize,
    /// Chunks: (from endpoint, bytes, complete).
    pub chunks: Vec<(Option<usize>, Vec<u8>, bool)>,
    pub killed: Option<String>,
    /// Packets the module wrote: (endpoint, the host id they carried).
    pub writes: Vec<(usize, u32)>,
}

type Delayed = Vec<(Vec<u8>, u32)>;

enum Conn {
    None,
    /// Logging in on another thread; `stream` is a clone of its socket (to break it).
    Connecting {
        stream: TcpStream,
        delayed: Delayed,
    },
    /// Logged in, the history is being replayed: its replies stay here.
    Replaying {
        b: Backend,
        left: VecDeque<(u32, bool, ReplyTracker)>,
        delayed: Delayed,
    },
    Open(Backend),
}

struct Endpoint {
    conn: Conn,
    /// The live connection's tag: events carrying another one are from an earlier connection.
    tag: Option<usize>,
    /// Closed by the module: its end is not reported back.
    closed_by_module: bool,
    /// History mode: the replies expected from this backend (client packet id, tracker).
    replies: VecDeque<(u32, ReplyTracker)>,
    /// Prepared-statement ids (`Targets::ps_ids`).
    ps: crate::ps_ids::PsIds,
}

struct State {
    targets: Targets,
    eps: Vec<Endpoint>,
    client: Client,
    resume: bool,
    events: Sender<Event>,
    history: Option<History>,
    /// Backend failures found inside a module call, reported once it returned.
    failures: VecDeque<(usize, String)>,
    /// A real client attached to the session (`attach_client`): it gets what the module sends.
    socket: Option<TcpStream>,
    client_gone: bool,
}

fn next_tag() -> usize {
    static TAG: AtomicUsize = AtomicUsize::new(1);
    TAG.fetch_add(1, Ordering::Relaxed)
}

impl State {
    fn name(&self, ep: usize) -> String {
        self.targets.servers[ep].0.clone()
    }

    /// Writes to an open backend, noting the reply it owes (history mode).
    fn write_open(&mut self, ep: usize, data: &[u8], id: u32) -> bool {
        let track = self.history.is_some();
        let deprecate_eof = self.targets.caps & DEPRECATE_EOF != 0;
        let e = &mut self.eps[ep];
        let Conn::Open(b) = &mut e.conn else {
            return false;
        };
        let data: &[u8] = &if self.targets.ps_ids {
            e.ps.on_write(data, id, deprecate_eof)
        } else {
            std::borrow::Cow::Borrowed(data)
        };
        if !b.write(data) {
            return false;
        }
        // A request starts with sequence 0 (LOCAL INFILE data and continuations do not).
        if track && data.len() > 4 && data[3] == 0 && will_respond(data[4]) {
            let mut t = ReplyTracker::new(self.targets.caps & DEPRECATE_EOF != 0);
            t.start(data[4]);
            e.replies.push_back((id, t));
        }
        true
    }

    /// A login finished: replay the history, or release the writes that waited.
    fn logged_in(&mut self, ep: usize, mut b: Backend) {
        let Conn::Connecting { delayed, .. } =
            std::mem::replace(&mut self.eps[ep].conn, Conn::None)
        else {
            b.close();
            return;
        };
        let entries = self
            .history
            .as_ref()
            .map(|h| h.entries())
            .unwrap_or_default();
        if entries.is_empty() {
            self.eps[ep].conn = Conn::Open(b);
            self.flush(ep, delayed);
            return;
        }
        let mut left = VecDeque::new();
        for (id, packet, ok) in entries {
            b.write(&packet);
            let mut t = ReplyTracker::new(self.targets.caps & DEPRECATE_EOF != 0);
            t.start(packet[4]);
            left.push_back((id, ok, t));
        }
        self.eps[ep].conn = Conn::Replaying { b, left, delayed };
    }

    fn flush(&mut self, ep: usize, delayed: Delayed) {
        for (data, id) in delayed {
            if !self.write_open(ep, &data, id) {
                break;
            }
        }
    }

    /// Drops an endpoint's connection (the module is told unless it closed it).
    fn drop_conn(&mut self, ep: usize) {
        let e = &mut self.eps[ep];
        match std::mem::replace(&mut e.conn, Conn::None) {
            Conn::Open(mut b) | Conn::Replaying { mut b, .. } => b.close(),
            Conn::Connecting { stream, .. } => {
                let _ = stream.shutdown(Shutdown::Both);
            }
            Conn::None => {}
        }
        e.tag = None;
        e.replies.clear();
    }

    /// A reply packet of a backend in history mode: the replay's, or one that may be a
    /// session command's, whose outcome must match the client's. Some(packet) goes on to the
    /// module; an error means the backend differs and is failed.
    fn check_reply(&mut self, ep: usize, data: &[u8]) -> Result<bool, String> {
        let name = self.name(ep);
        let Some(h) = self.history.as_mut() else {
            return Ok(true);
        };
        let p = match Packets::new(data).next() {
            Some(Ok(p)) => p,
            _ => return Ok(true),
        };
        let e = &mut self.eps[ep];
        if let Conn::Replaying { left, .. } = &mut e.conn {
            let Some((_, ok, t)) = left.front_mut() else {
                return Ok(false);
            };
            if t.feed(&p).is_err() || t.is_complete() {
                let got = t.error().is_none();
                let want = *ok;
                let err = t.error().map(|e| e.to_string()).unwrap_or_default();
                left.pop_front();
                if got != want {
                    return Err(History::mismatch(&name, &err));
                }
                if left.is_empty() {
                    let Conn::Replaying { b, delayed, .. } =
                        std::mem::replace(&mut e.conn, Conn::None)
                    else {
                        unreachable!()
                    };
                    e.conn = Conn::Open(b);
                    self.flush(ep, delayed);
                }
            }
            return Ok(false);
        }
        if let Some((id, t)) = e.replies.front_mut() {
            if t.feed(&p).is_err() || t.is_complete() {
                let (id, ok, err) = (
                    *id,
                    t.error().is_none(),
                    t.error().map(|e| e.to_string()).unwrap_or_default(),
                );
                e.replies.pop_front();
                h.backend_outcome(ep, &name, id, ok, &err)?;
            }
        }
        Ok(true)
    }
}

struct Host(Rc<RefCell<State>>);

impl SimHost for Host {
    fn connect(&mut self, ep: usize) -> bool {
        let mut st = self.0.borrow_mut();
        let Some((_, port)) = st.targets.servers.get(ep).cloned() else {
            return false;
        };
        let t = st.targets.clone();
        let tag = next_tag();
        let events = st.events.clone();
        st.drop_conn(ep);
        if t.async_connect {
            let stream = match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("test host: cannot connect endpoint {ep} (port {port}): {e}");
                    return false;
                }
            };
            let Ok(clone) = stream.try_clone() else {
                return false;
            };
            std::thread::spawn(move || {
                let r = Backend::login(
                    stream,
                    &t.user,
                    &t.password,
                    "",
                    t.caps,
                    tag,
                    events.clone(),
                )
                .map_err(|e| format!("login failed: {e}"));
                let _ = events.send(Event::Connected(tag, r));
            });
            let e = &mut st.eps[ep];
            e.conn = Conn::Connecting {
                stream: clone,
                delayed: vec![],
            };
            e.tag = Some(tag);
            e.closed_by_module = false;
            return true;
        }
        match Backend::connect(port, &t.user, &t.password, "", t.caps, tag, events) {
            Ok(b) => {
                let e = &mut st.eps[ep];
                e.conn = Conn::Open(b);
                e.tag = Some(tag);
                e.closed_by_module = false;
                true
            }
            Err(e) => {
                eprintln!("test host: cannot connect endpoint {ep} (port {port}): {e}");
                false
            }
        }
    }
    fn is_open(&self, ep: usize) -> bool {
        self.0
            .borrow()
            .eps
            .get(ep)
            .is_some_and(|e| !matches!(e.conn, Conn::None))
    }
    fn write(&mut self, ep: usize, data: &[u8], id: u32) -> bool {
        let mut st = self.0.borrow_mut();
        st.client.writes.push((ep, id));
        let Some(e) = st.eps.get_mut(ep) else {
            return false;
        };
        match &mut e.conn {
            Conn::None => false,
            Conn::Connecting { delayed, .. } | Conn::Replaying { delayed, .. } => {
                delayed.push((data.to_vec(), id));
                true
            }
            Conn::Open(_) => st.write_open(ep, data, id),
        }
    }
    fn close(&mut self, ep: usize) {
        let mut st = self.0.borrow_mut();
        if ep < st.eps.len() {
            st.drop_conn(ep);
            st.eps[ep].closed_by_module = true;
        }
    }
    fn client_reply(&mut self, ep: Option<usize>, data: &[u8], complete: bool) -> bool {
        let mut st = self.0.borrow_mut();
        if let Some(s) = st.socket.as_mut() {
            if s.write_all(data).is_err() {
                return false;
            }
        }
        st.client.bytes.extend_from_slice(data);
        st.client.chunks.push((ep, data.to_vec(), complete));
        if complete {
            st.client.completed += 1;
            let st = &mut *st;
            if let Some(h) = st.history.as_mut() {
                for f in h.client_reply_done(&st.client.bytes) {
                    st.failures.push_back(f);
                }
            }
        }
        true
    }
    fn kill(&mut self, message: &str) {
        let mut st = self.0.borrow_mut();
        st.client.killed = Some(message.to_string());
        if let Some(mut s) = st.socket.take() {
            // As MaxScale does: ERR 1927 with sequence 0, then the connection closes.
            if !message.is_empty() {
                let _ = s.write_all(&bridge::protocol::resultset::err_packet(
                    0, 1927, "70100", message,
                ));
            }
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    fn schedule_resume(&mut self) {
        self.0.borrow_mut().resume = true;
    }
    fn can_recover_state(&self) -> bool {
        self.0.borrow().history.is_some()
    }
}

pub struct Harness {
    session: Option<SimSession>,
    state: Rc<RefCell<State>>,
    events: Receiver<Event>,
    /// False once the module ended the session.
    pub alive: bool,
    pub id: u64,
    /// Ids given to client packets, as MaxScale numbers them (from 1).
    next_packet_id: u32,
}

impl Harness {
    /// Opens a session; None if the module refused it.
    pub fn open(router: &SimRouter, targets: Targets) -> Option<Harness> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = channel();
        let n = targets.servers.len();
        let info = SessionInfo {
            id,
            user: targets.user.clone(),
            client_host: "127.0.0.1".into(),
            default_db: targets.default_db.clone(),
            client_caps: targets.caps,
            endpoints: targets
                .servers
                .iter()
                .map(|(name, _)| EndpointInfo {
                    name: name.clone(),
                    can_connect: !targets.down.contains(name),
                })
                .collect(),
        };
        let history = targets.history.then(History::default);
        let state = Rc::new(RefCell::new(State {
            targets,
            eps: (0..n)
                .map(|_| Endpoint {
                    conn: Conn::None,
                    tag: None,
                    closed_by_module: false,
                    replies: VecDeque::new(),
                    ps: Default::default(),
                })
                .collect(),
            client: Client::default(),
            resume: false,
            events: tx,
            history,
            failures: VecDeque::new(),
            socket: None,
            client_gone: false,
        }));
        let session = router.new_session(Box::new(Host(state.clone())), &info)?;
        let mut h = Harness {
            session: Some(session),
            state,
            events: rx,
            alive: true,
            id,
            next_packet_id: 0,
        };
        h.after_call();
        Some(h)
    }

    fn session(&mut self) -> &mut SimSession {
        self.session.as_mut().expect("session open")
    }

    /// Sends client packets; false if the module closed the session.
    pub fn send(&mut self, packets: Vec<Vec<u8>>) -> bool {
        for p in packets {
            if !self.alive {
                return false;
            }
            self.next_packet_id += 1;
            let id = self.next_packet_id;
            if let Some(h) = self.state.borrow_mut().history.as_mut() {
                h.client_sent(id, &p);
            }
            if !self.session().route_query_with_id(&p, id) {
                self.alive = false;
            }
            self.after_call();
        }
        self.alive
    }

    /// After a module call: honour a resume request, report failures found meanwhile.
    fn after_call(&mut self) {
        loop {
            if !self.alive {
                return;
            }
            if std::mem::take(&mut self.state.borrow_mut().resume) {
                if !self.session().resume() {
                    self.alive = false;
                }
                continue;
            }
            let failure = self.state.borrow_mut().failures.pop_front();
            let Some((ep, msg)) = failure else { return };
            self.fail(ep, &msg);
        }
    }

    /// Ends a backend's connection as a failure the module is told about.
    fn fail(&mut self, ep: usize, msg: &str) {
        let known = {
            let mut st = self.state.borrow_mut();
            let k = st.eps[ep].closed_by_module;
            st.drop_conn(ep);
            st.eps[ep].closed_by_module = true;
            k
        };
        if !known && !self.session().handle_error(ep, msg) {
            self.alive = false;
        }
    }

    /// The endpoint whose live connection carries `tag`.
    fn endpoint_of(&self, tag: usize) -> Option<usize> {
        self.state
            .borrow()
            .eps
            .iter()
            .position(|e| e.tag == Some(tag))
    }

    /// Delivers backend events to the module until `done` holds or `timeout` passes.
    pub fn pump_until(&mut self, timeout: Duration, mut done: impl FnMut(&Client) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if done(&self.state.borrow().client) {
                return true;
            }
            if !self.alive {
                return false;
            }
            let left = end.saturating_duration_since(Instant::now());
            let ev = match self.events.recv_timeout(left) {
                Ok(ev) => ev,
                Err(RecvTimeoutError::Timeout) => return done(&self.state.borrow().client),
                Err(RecvTimeoutError::Disconnected) => return false,
            };
            match ev {
                Event::Data(tag, mut data) => {
                    let Some(ep) = self.endpoint_of(tag) else {
                        continue;
                    };
                    if self.state.borrow().targets.ps_ids {
                        self.state.borrow_mut().eps[ep].ps.on_reply(&mut data);
                    }
                    let checked = self.state.borrow_mut().check_reply(ep, &data);
                    match checked {
                        Ok(true) => {
                            if !self.session().client_reply(ep, &data) {
                                self.alive = false;
                            }
                        }
                        Ok(false) => {}
                        Err(msg) => self.fail(ep, &msg),
                    }
                }
                Event::Closed(tag, msg) | Event::Connected(tag, Err(msg)) => {
                    if let Some(ep) = self.endpoint_of(tag) {
                        self.fail(ep, &msg);
                    }
                }
                Event::Connected(tag, Ok(mut b)) => match self.endpoint_of(tag) {
                    Some(ep) => self.state.borrow_mut().logged_in(ep, b),
                    None => b.close(),
                },
                Event::ClientPacket(p) => {
                    self.send(vec![p]);
                }
                Event::ClientClosed => self.state.borrow_mut().client_gone = true,
            }
            self.after_call();
        }
    }

    /// Waits for the `n`-th complete reply to the client.
    pub fn wait_replies(&mut self, n: usize, timeout: Duration) -> bool {
        self.pump_until(timeout, |c| c.completed >= n)
    }

    /// Sends a query and waits for its complete reply; returns the reply's bytes.
    pub fn query(&mut self, sql: &str) -> Vec<u8> {
        let before = self.state.borrow().client.bytes.len();
        let n = self.state.borrow().client.completed + 1;
        assert!(
            self.send(crate::packets::query(sql)),
            "session closed while sending {sql:?}"
        );
        assert!(
            self.wait_replies(n, Duration::from_secs(30)),
            "no complete reply to {sql:?}"
        );
        self.state.borrow().client.bytes[before..].to_vec()
    }

    /// Hands the module bytes as if `ep`'s server had sent them.
    pub fn inject(&mut self, ep: usize, data: &[u8]) -> bool {
        if !self.session().client_reply(ep, data) {
            self.alive = false;
        }
        self.alive
    }

    /// Delivers whatever arrives within `d` (for replies that are not expected to complete).
    pub fn settle(&mut self, d: Duration) {
        self.pump_until(d, |_| false);
    }

    pub fn client<R>(&self, f: impl FnOnce(&Client) -> R) -> R {
        f(&self.state.borrow().client)
    }

    /// The server-side connection id of an endpoint's connection (for KILL).
    pub fn connection_id(&self, ep: usize) -> Option<u32> {
        match &self.state.borrow().eps[ep].conn {
            Conn::Open(b) | Conn::Replaying { b, .. } => Some(b.connection_id),
            _ => None,
        }
    }

    /// Whether an endpoint is still logging in (or replaying the history).
    pub fn is_connecting(&self, ep: usize) -> bool {
        matches!(
            self.state.borrow().eps[ep].conn,
            Conn::Connecting { .. } | Conn::Replaying { .. }
        )
    }

    /// Breaks an endpoint's connection as a network failure would (the module is told).
    pub fn break_connection(&mut self, ep: usize) {
        let st = self.state.borrow();
        match &st.eps[ep].conn {
            Conn::Open(b) | Conn::Replaying { b, .. } => b.shutdown(),
            Conn::Connecting { stream, .. } => {
                let _ = stream.shutdown(Shutdown::Both);
            }
            Conn::None => {}
        }
    }

    /// Serves a real client on `stream` (already logged in, see `listener`): its packets go
    /// to the module as `pump_until` delivers them, the module's replies go to it.
    pub fn attach_client(&mut self, stream: TcpStream) -> std::io::Result<()> {
        let mut rd = stream.try_clone()?;
        let events = self.state.borrow().events.clone();
        self.state.borrow_mut().socket = Some(stream);
        std::thread::spawn(move || loop {
            match crate::backend::read_packet(&mut rd) {
                Ok((seq, payload)) => {
                    let mut p = Vec::with_capacity(payload.len() + 4);
                    p.extend_from_slice(&(payload.len() as u32).to_le_bytes()[..3]);
                    p.push(seq);
                    p.extend_from_slice(&payload);
                    if events.send(Event::ClientPacket(p)).is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = events.send(Event::ClientClosed);
                    return;
                }
            }
        });
        Ok(())
    }

    /// The attached client is gone, or the session ended (its socket is then closed).
    pub fn client_gone(&self) -> bool {
        let mut st = self.state.borrow_mut();
        if !self.alive {
            if let Some(s) = st.socket.take() {
                let _ = s.shutdown(Shutdown::Both);
            }
            return true;
        }
        st.client_gone
    }

    /// The recorded session-command history (SQL text of each entry), history mode only.
    pub fn history(&self) -> Vec<String> {
        let st = self.state.borrow();
        st.history
            .as_ref()
            .map(|h| {
                h.entries()
                    .into_iter()
                    .map(|(_, p, _)| String::from_utf8_lossy(&p[5..]).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.session.take());
        let mut st = self.state.borrow_mut();
        for ep in 0..st.eps.len() {
            st.drop_conn(ep);
        }
    }
}
