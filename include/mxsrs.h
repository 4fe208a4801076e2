/*
 * mxsrs.h: the whole contract between a router host and a Rust router module.
 *
 * Two tables of function pointers cross the boundary:
 *   - mxsrs_module: what the module (Rust) implements. The host calls it.
 *   - mxsrs_host_api: what the host implements. The module calls it.
 * The host is either the C++ shim inside MaxScale 24.02.3 (src/shim/shim.cc) or the Rust test
 * host (bridge::sim) that drives the same functions against real MariaDB servers.
 *
 * Conventions:
 *   - Strings are (pointer, length) pairs and need not be NUL-terminated, except the static
 *     descriptor strings of mxsrs_module and its params, which are NUL-terminated.
 *   - Packets are complete MariaDB packets, 4-byte headers included; a buffer may hold several.
 *   - An endpoint is an index into the endpoint list given at session creation.
 *   - Every call happens on the thread that owns the session (MaxScale: its routing worker),
 *     except router-level calls, which may come from any thread.
 *   - No function may unwind: the module catches panics at every entry point.
 */
#ifndef MXSRS_H
#define MXSRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of this header. */
#define MXSRS_ABI_VERSION 1

/* An endpoint index meaning "no backend": a reply the router made up itself. */
#define MXSRS_NO_ENDPOINT SIZE_MAX

/* Log levels, numbered as syslog priorities (what MaxScale uses). */
typedef enum mxsrs_log_level {
    MXSRS_LOG_ERROR = 3,
    MXSRS_LOG_WARNING = 4,
    MXSRS_LOG_NOTICE = 5,
    MXSRS_LOG_INFO = 6,
} mxsrs_log_level;

typedef struct mxsrs_str {
    const char* ptr;
    size_t len;
} mxsrs_str;

/* A parameter value as text, in MaxScale's canonical form (durations as "300000ms"). */
typedef struct mxsrs_kv {
    mxsrs_str key;
    mxsrs_str value;
} mxsrs_kv;

/* Parameter types the host knows how to validate (mxs::config::Param* in MaxScale). */
typedef enum mxsrs_param_type {
    MXSRS_PARAM_STRING = 0,
    MXSRS_PARAM_ENUM = 1,        /* one of enum_values */
    MXSRS_PARAM_TARGET = 2,      /* a server or service name */
    MXSRS_PARAM_BOOL = 3,
    MXSRS_PARAM_SECONDS = 4,     /* a duration with a unit, second granularity */
    MXSRS_PARAM_REGEX = 5,       /* a PCRE2 pattern, optionally written /pattern/ */
    MXSRS_PARAM_STRING_LIST = 6, /* comma-separated, trimmed */
} mxsrs_param_type;

typedef struct mxsrs_param {
    const char* name;
    const char* description;
    mxsrs_param_type type;
    const char* default_value;        /* NULL: mandatory */
    const char* const* enum_values;   /* MXSRS_PARAM_ENUM only */
    size_t n_enum_values;
} mxsrs_param;

/* One backend target of the service, as seen when a session starts. */
typedef struct mxsrs_endpoint_info {
    mxsrs_str name;
    bool can_connect; /* Running, not in maintenance or draining */
} mxsrs_endpoint_info;

typedef struct mxsrs_session_info {
    uint64_t id;              /* MaxScale session id (the client's connection id) */
    mxsrs_str user;
    mxsrs_str client_host;
    mxsrs_str default_db;     /* database the client connected with, may be empty */
    uint64_t client_caps;     /* basic capabilities | extended (MariaDB) capabilities << 32 */
    const mxsrs_endpoint_info* endpoints;
    size_t n_endpoints;
} mxsrs_session_info;

/* Opaque handles. Routers and sessions belong to the module, contexts to the host. */
typedef struct mxsrs_router mxsrs_router;
typedef struct mxsrs_session mxsrs_session;
typedef struct mxsrs_session_ctx mxsrs_session_ctx; /* host side of one session */

/* Services the host offers. */
typedef struct mxsrs_host_api {
    /* Log a message at a level, under the module's name. */
    void (*log)(mxsrs_log_level level, mxsrs_str message);
    /* Whether a message at this level would be written (e.g. info needs log_info). */
    bool (*log_enabled)(mxsrs_log_level level);
    /* Open the connection of an endpoint. False if it cannot be opened. */
    bool (*endpoint_connect)(mxsrs_session_ctx* ctx, size_t endpoint);
    /* Whether the connection of an endpoint is open. */
    bool (*endpoint_is_open)(mxsrs_session_ctx* ctx, size_t endpoint);
    /* Write one complete client packet to an endpoint. `id` is the id the host gave the client
     * packet in session_route_query (MaxScale uses it to match prepared statements and session
     * commands to their replies), 0 for a packet the router made up. False: the write failed. */
    bool (*endpoint_write)(mxsrs_session_ctx* ctx, size_t endpoint, const uint8_t* data, size_t len,
                           uint32_t id);
    /* Close an endpoint's connection; it is not reopened. */
    void (*endpoint_close)(mxsrs_session_ctx* ctx, size_t endpoint);
    /* Send packets to the client. `endpoint` is the backend whose reply this is (the host passes
     * on that backend's reply state), or MXSRS_NO_ENDPOINT for a reply the router made up.
     * `complete` says whether this ends the reply to the current request. */
    bool (*client_reply)(mxsrs_session_ctx* ctx, size_t endpoint, const uint8_t* data, size_t len,
                         bool complete);
    /* End the session: the client gets ERR 1927/70100 with `message` (if not empty), then the
     * connection closes. */
    void (*session_kill)(mxsrs_session_ctx* ctx, mxsrs_str message);
    /* Ask the host to call mxsrs_module.session_resume soon, from its event loop, not from
     * inside the current call (used to release queued client packets). */
    void (*session_schedule_resume)(mxsrs_session_ctx* ctx);
    /* Appended (still ABI 1: a host that lacks them leaves them NULL, and the module must check).
     * Stop sending the client's connect-time default database to backends this session opens
     * from now on (the router applies it itself, as the native schemarouter does). */
    void (*session_clear_connect_db)(mxsrs_session_ctx* ctx);
    /* The server named by the first ROUTE_TO_NAMED_SERVER routing hint of the client packet
     * being routed (valid only during session_route_query), empty if none. */
    mxsrs_str (*packet_route_hint)(mxsrs_session_ctx* ctx);
    /* Whether a backend connection opened now would get the session's state back: the host
     * replays its session-command history on it, within max_sescmd_history and unless
     * disable_sescmd_history (MaxScale: MXS_SESSION::can_recover_state()). */
    bool (*session_can_recover_state)(mxsrs_session_ctx* ctx);
} mxsrs_host_api;

/* A module command (maxctrl call command <module> <name> <service>). */
typedef struct mxsrs_command {
    const char* name;
    const char* description;
} mxsrs_command;

/* What a module implements. Functions returning char* return a string the module allocated,
 * NUL-terminated, to be released with free_string; NULL means "nothing". */
typedef struct mxsrs_module {
    uint32_t abi_version;       /* MXSRS_ABI_VERSION */
    const char* name;           /* module name, e.g. "mirror" */
    const char* description;
    const char* version;
    uint64_t capabilities;      /* RCAP_TYPE_* bits the router declares */
    const mxsrs_param* params;
    size_t n_params;
    const mxsrs_command* commands;
    size_t n_commands;

    /* Cross-parameter validation of a complete parameter set. NULL if valid, else the error. */
    char* (*validate)(const mxsrs_kv* params, size_t n);
    /* A router instance for a service. `host` outlives the router. NULL on failure. */
    mxsrs_router* (*router_new)(const mxsrs_host_api* host, mxsrs_str service,
                                const mxsrs_str* targets, size_t n_targets);
    /* Apply a complete parameter set (at start and on every runtime change). NULL on success,
     * else the error, and the previous configuration stays in force. */
    char* (*router_configure)(mxsrs_router* router, const mxsrs_kv* params, size_t n);
    /* Router diagnostics as a JSON object text, or NULL. */
    char* (*router_diagnostics)(const mxsrs_router* router);
    /* Run a module command on this router. Returns JSON text of the result (may be NULL);
     * *ok is set to false on failure, the returned text then being the error. */
    char* (*router_command)(mxsrs_router* router, mxsrs_str command, bool* ok);
    void (*router_free)(mxsrs_router* router);

    /* A session. The module connects the endpoints it wants through the host. NULL: the
     * session could not be created (the client gets an error). */
    mxsrs_session* (*session_new)(mxsrs_router* router, mxsrs_session_ctx* ctx,
                                  const mxsrs_session_info* info);
    /* One complete client packet, with the host's id for it (see endpoint_write). False: the
     * session is closed. */
    bool (*session_route_query)(mxsrs_session* session, const uint8_t* data, size_t len, uint32_t id);
    /* Reply packets from an endpoint. False: the session is closed. */
    bool (*session_client_reply)(mxsrs_session* session, size_t endpoint, const uint8_t* data,
                                 size_t len);
    /* An endpoint's connection failed. True: the session goes on without it. */
    bool (*session_handle_error)(mxsrs_session* session, size_t endpoint, mxsrs_str message);
    /* Called after the host honoured session_schedule_resume. False: the session is closed. */
    bool (*session_resume)(mxsrs_session* session);
    void (*session_free)(mxsrs_session* session);

    void (*free_string)(char* s);
} mxsrs_module;

#ifdef __cplusplus
}
#endif

#endif
