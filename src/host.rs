//! The host's services, as a safe API: logging (any thread) and the session's endpoints and
//! client (the session's thread).

use crate::ffi;
use crate::log::Level;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::OnceLock;

#[derive(Clone, Copy)]
pub(crate) struct HostApi(pub(crate) ffi::mxsrs_host_api);

// SAFETY: the table holds only `extern "C"` function pointers, which the host guarantees to be
// callable from any thread (MaxScale's logging is thread-safe; the session functions are only
// called from the session's own thread, which `SessionHost` enforces by not being Send).
unsafe impl Send for HostApi {}
unsafe impl Sync for HostApi {}

static HOST: OnceLock<HostApi> = OnceLock::new();

/// Remembers the host's table. The first host wins: one process has one host.
pub(crate) fn install(api: HostApi) -> HostApi {
    *HOST.get_or_init(|| api)
}

fn level(l: Level) -> ffi::mxsrs_log_level {
    match l {
        Level::Error => ffi::mxsrs_log_level::MXSRS_LOG_ERROR,
        Level::Warning => ffi::mxsrs_log_level::MXSRS_LOG_WARNING,
        Level::Notice => ffi::mxsrs_log_level::MXSRS_LOG_NOTICE,
        Level::Info => ffi::mxsrs_log_level::MXSRS_LOG_INFO,
    }
}

pub(crate) fn str_arg(s: &[u8]) -> ffi::mxsrs_str {
    ffi::mxsrs_str {
        ptr: s.as_ptr().cast(),
        len: s.len(),
    }
}

/// Logs through the host. False if there is no host yet.
pub(crate) fn log(l: Level, message: &str) -> bool {
    let Some(h) = HOST.get() else { return false };
    let Some(f) = h.0.log else { return false };
    // SAFETY: `f` is the host's log function; the string is valid for the call's duration.
    unsafe { f(level(l), str_arg(message.as_bytes())) };
    true
}

pub(crate) fn log_enabled(l: Level) -> Option<bool> {
    let f = HOST.get()?.0.log_enabled?;
    // SAFETY: plain call of the host's function with a valid enum value.
    Some(unsafe { f(level(l)) })
}

/// The host side of one session: its endpoints and its client. Not `Send`: a session's calls
/// must come from the session's own thread.
pub struct SessionHost {
    api: HostApi,
    ctx: *mut ffi::mxsrs_session_ctx,
    /// The host's id of the client packet being routed (0 outside `route_query`).
    packet_id: Rc<Cell<u32>>,
}

macro_rules! host_fn {
    ($self:ident, $name:ident) => {
        $self
            .api
            .0
            .$name
            .expect(concat!("host API lacks ", stringify!($name)))
    };
}

impl SessionHost {
    pub(crate) fn new(
        api: HostApi,
        ctx: *mut ffi::mxsrs_session_ctx,
        packet_id: Rc<Cell<u32>>,
    ) -> Self {
        SessionHost {
            api,
            ctx,
            packet_id,
        }
    }

    /// The host's id of the client packet being routed now (0 outside `route_query`). Keep it
    /// with a packet that is written later, and pass it to `write_with_id`.
    pub fn packet_id(&self) -> u32 {
        self.packet_id.get()
    }

    /// Opens an endpoint's connection.
    pub fn connect(&self, endpoint: usize) -> bool {
        // SAFETY: `ctx` is the live context the host gave with this session; the host checks
        // the endpoint index.
        unsafe { host_fn!(self, endpoint_connect)(self.ctx, endpoint) }
    }

    pub fn is_open(&self, endpoint: usize) -> bool {
        // SAFETY: as in `connect`.
        unsafe { host_fn!(self, endpoint_is_open)(self.ctx, endpoint) }
    }

    /// Writes one complete packet to an endpoint, as the client packet being routed now.
    pub fn write(&self, endpoint: usize, packet: &[u8]) -> bool {
        self.write_with_id(endpoint, packet, self.packet_id())
    }

    /// Writes a client packet routed earlier (`id` from `packet_id` at that time).
    pub fn write_with_id(&self, endpoint: usize, packet: &[u8], id: u32) -> bool {
        // SAFETY: as in `connect`; the host copies the bytes before returning.
        unsafe {
            host_fn!(self, endpoint_write)(self.ctx, endpoint, packet.as_ptr(), packet.len(), id)
        }
    }

    pub fn close(&self, endpoint: usize) {
        // SAFETY: as in `connect`.
        unsafe { host_fn!(self, endpoint_close)(self.ctx, endpoint) }
    }

    /// Sends packets to the client. `from` is the backend whose reply this is, `None` for a
    /// reply the router made up; `complete` ends the reply to the current request.
    pub fn reply(&self, from: Option<usize>, data: &[u8], complete: bool) -> bool {
        let ep = from.unwrap_or(usize::MAX);
        // SAFETY: as in `write`.
        unsafe { host_fn!(self, client_reply)(self.ctx, ep, data.as_ptr(), data.len(), complete) }
    }

    /// Ends the session; the client gets ERR 1927 with `message` if it is not empty.
    pub fn kill(&self, message: &str) {
        // SAFETY: as in `write`.
        unsafe { host_fn!(self, session_kill)(self.ctx, str_arg(message.as_bytes())) }
    }

    /// Asks for `RouterSession::resume` to be called soon from the host's event loop.
    pub fn schedule_resume(&self) {
        // SAFETY: as in `connect`.
        unsafe { host_fn!(self, session_schedule_resume)(self.ctx) }
    }

    /// Backends opened from now on get no connect-time default database (the router applies
    /// it itself). False if the host cannot do that.
    pub fn clear_connect_db(&self) -> bool {
        let Some(f) = self.api.0.session_clear_connect_db else {
            return false;
        };
        // SAFETY: as in `connect`.
        unsafe { f(self.ctx) };
        true
    }

    /// Whether a backend connection opened now gets the session's state back (the host replays
    /// its session-command history). False if the host cannot tell.
    pub fn can_recover_state(&self) -> bool {
        let Some(f) = self.api.0.session_can_recover_state else {
            return false;
        };
        // SAFETY: as in `connect`.
        unsafe { f(self.ctx) }
    }

    /// The server named by the first ROUTE_TO_NAMED_SERVER hint of the client packet being
    /// routed; `None` without such a hint (or outside `route_query`).
    pub fn route_hint(&self) -> Option<String> {
        let f = self.api.0.packet_route_hint?;
        // SAFETY: as in `connect`; the returned string is valid until the host's routeQuery
        // returns, and is copied here.
        let s = unsafe { f(self.ctx) };
        if s.ptr.is_null() || s.len == 0 {
            return None;
        }
        // SAFETY: the host guarantees `len` readable bytes at `ptr`.
        let b = unsafe { std::slice::from_raw_parts(s.ptr.cast::<u8>(), s.len) };
        Some(String::from_utf8_lossy(b).into_owned())
    }
}
