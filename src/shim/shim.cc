/*
 * The C++ shim MaxScale loads: it implements MaxScale's router API (mxs::Router,
 * mxs::RouterSession, mxs::config::Specification, module commands) on top of the mxsrs_module
 * table a Rust module exports (include/mxsrs.h), and offers MaxScale's services to Rust as an
 * mxsrs_host_api. It only translates: every decision is made in Rust.
 *
 * Compiled by build.rs only when MAXSCALE_SRC is set; linked into each module's shared
 * library, so each module has its own copy of these statics.
 *
 * One source for every supported release: build.rs defines MXSRS_MAXSCALE_VERSION
 * (10000 * major + 100 * minor + patch of the tree compiled against), and the few API
 * differences are behind conditionals on it:
 *   < 24.02: newSession returns a raw pointer MaxScale owns; no RouterSession::lcall.
 *   < 24.02: no RCAP_TYPE_AUTH_ALL_SERVERS (the bit is not passed on).
 *   >= 24.08: module commands take a std::vector of arguments (mxs::modulecmd).
 */

// Every MaxScale log macro in the headers names the module through MXB_MODULE_NAME, which
// build.rs defines as this variable (set from the Rust module's name).
extern const char* mxsrs_module_name;

#include <maxscale/ccdefs.hh>
#include <maxscale/buffer.hh>
#include <maxscale/config2.hh>
#include <maxscale/modinfo.hh>
#include <maxscale/modulecmd.hh>
#include <maxscale/router.hh>
#include <maxscale/service.hh>
#include <maxscale/session.hh>
#include <maxscale/target.hh>
#include <maxscale/protocol/mariadb/module_names.hh>
#include <maxscale/protocol/mariadb/protocol_classes.hh>
#include <maxscale/protocol/mariadb/mysql.hh>
#include <maxscale/hint.hh>
#include <maxbase/log.hh>

#include <dlfcn.h>

#include <chrono>

#include <memory>
#include <string>
#include <vector>

#include "mxsrs.h"

const char* mxsrs_module_name = "mxsrs";

namespace
{
namespace cfg = mxs::config;

const mxsrs_module* g_mod = nullptr;

mxsrs_str to_str(const std::string& s)
{
    return {s.data(), s.size()};
}

std::string from_str(mxsrs_str s)
{
    return s.len ? std::string(s.ptr, s.len) : std::string();
}

// Takes a string the module allocated.
std::string take(char* s)
{
    std::string out = s ? s : "";
    if (s)
    {
        g_mod->free_string(s);
    }
    return out;
}

using KV = std::vector<std::pair<std::string, std::string>>;

std::vector<mxsrs_kv> to_kv(const KV& kv)
{
    std::vector<mxsrs_kv> out;
    for (const auto& [k, v] : kv)
    {
        out.push_back({to_str(k), to_str(v)});
    }
    return out;
}

// The module's RCAP_TYPE_* bits less those this release does not define.
uint64_t capabilities()
{
    uint64_t caps = g_mod->capabilities;
#if MXSRS_MAXSCALE_VERSION < 240200
    caps &= ~uint64_t(1 << 12);     // RCAP_TYPE_AUTH_ALL_SERVERS came with 24.02
#endif
    return caps;
}

// ---- logging --------------------------------------------------------------------------------

void host_log(mxsrs_log_level level, mxsrs_str msg)
{
    if (mxb_log_should_log(level))
    {
        mxb_log_message(level, mxsrs_module_name, __FILE__, __LINE__, __func__, "%.*s", (int)msg.len, msg.ptr);
    }
}

bool host_log_enabled(mxsrs_log_level level)
{
    return mxb_log_should_log(level);
}

// ---- parameters -----------------------------------------------------------------------------

// Enumerations are declared by the module as text; their values are their positions.
enum class EnumValue : int64_t
{
};

std::string json_text(json_t* v)
{
    if (json_is_string(v))
    {
        return json_string_value(v);
    }
    if (json_is_integer(v))
    {
        return std::to_string(json_integer_value(v));
    }
    if (json_is_boolean(v))
    {
        return json_is_true(v) ? "true" : "false";
    }
    char* s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    std::string out = s ? s : "";
    free(s);
    return out;
}

// Cross-parameter validation goes to the module; each value was checked by its Param.
class Spec : public cfg::Specification
{
public:
    using cfg::Specification::Specification;

protected:
    bool post_validate(const cfg::Configuration*, const mxs::ConfigParameters& params,
                       const std::map<std::string, mxs::ConfigParameters>&) const override
    {
        KV kv;
        for (const auto& [name, param] : *this)
        {
            if (params.contains(name))
            {
                kv.emplace_back(name, params.get_string(name));
            }
        }
        return validate(kv);
    }

    bool post_validate(const cfg::Configuration*, json_t* json,
                       const std::map<std::string, json_t*>&) const override
    {
        KV kv;
        for (const auto& [name, param] : *this)
        {
            json_t* v = json_object_get(json, name.c_str());
            if (v && !json_is_null(v))
            {
                kv.emplace_back(name, json_text(v));
            }
        }
        return validate(kv);
    }

private:
    bool validate(const KV& kv) const
    {
        auto raw = to_kv(kv);
        std::string err = take(g_mod->validate(raw.data(), raw.size()));
        if (!err.empty())
        {
            MXB_ERROR("%s", err.c_str());
            return false;
        }
        return true;
    }
};

Spec* g_spec = nullptr;
std::vector<std::pair<mxsrs_param_type, cfg::Param*>> g_params;

cfg::Param* make_param(const mxsrs_param& p)
{
    const auto rt = cfg::Param::AT_RUNTIME;
    const char* d = p.default_value;
    switch (p.type)
    {
    case MXSRS_PARAM_STRING:
        return d ? new cfg::ParamString(g_spec, p.name, p.description, d, cfg::ParamString::IGNORED, rt)
                 : new cfg::ParamString(g_spec, p.name, p.description, rt);

    case MXSRS_PARAM_ENUM:
        {
            std::vector<std::pair<EnumValue, const char*>> values;
            int64_t def = 0;
            for (size_t i = 0; i < p.n_enum_values; i++)
            {
                values.emplace_back(static_cast<EnumValue>(i), p.enum_values[i]);
                if (d && strcmp(d, p.enum_values[i]) == 0)
                {
                    def = i;
                }
            }
            return d ? new cfg::ParamEnum<EnumValue>(g_spec, p.name, p.description, values,
                                                     static_cast<EnumValue>(def), rt)
                     : new cfg::ParamEnum<EnumValue>(g_spec, p.name, p.description, values, rt);
        }

    case MXSRS_PARAM_TARGET:
        return new cfg::ParamTarget(g_spec, p.name, p.description,
                                    d ? cfg::Param::OPTIONAL : cfg::Param::MANDATORY, rt);

    case MXSRS_PARAM_BOOL:
        return d ? new cfg::ParamBool(g_spec, p.name, p.description, strcmp(d, "true") == 0, rt)
                 : new cfg::ParamBool(g_spec, p.name, p.description, rt);

    case MXSRS_PARAM_SECONDS:
        {
            std::chrono::milliseconds ms {0};
            std::string msg;
            if (d && !get_suffixed_duration(d, &ms))
            {
                MXB_ERROR("Bad default '%s' of parameter '%s'", d, p.name);
            }
            return d ? new cfg::ParamSeconds(g_spec, p.name, p.description,
                                             std::chrono::duration_cast<std::chrono::seconds>(ms), rt)
                     : new cfg::ParamSeconds(g_spec, p.name, p.description, rt);
        }

    case MXSRS_PARAM_REGEX:
        return new cfg::ParamRegex(g_spec, p.name, p.description, d ? d : "", rt);

    case MXSRS_PARAM_STRING_LIST:
        return d ? new cfg::ParamStringList(g_spec, p.name, p.description, ",",
                                            mxb::strtok(d, ","), rt)
                 : new cfg::ParamStringList(g_spec, p.name, p.description, ",", rt);
    }
    return nullptr;
}

class Router;

// A router's configuration: one value object per declared parameter; after MaxScale sets
// them (at start and at every `alter service`), the whole set goes to the module as text.
class Config : public cfg::Configuration
{
public:
    Config(const std::string& name, Router* router);

protected:
    bool post_configure(const std::map<std::string, mxs::ConfigParameters>&) override;

private:
    Router*                                 m_router;
    std::vector<std::unique_ptr<cfg::Type>> m_values;
};

// ---- sessions -------------------------------------------------------------------------------

class Session;

mxsrs_session_ctx* ctx_of(Session* s)
{
    return reinterpret_cast<mxsrs_session_ctx*>(s);
}

class Session : public mxs::RouterSession
{
public:
    Session(MXS_SESSION* session, Router* router, const mxs::Endpoints& endpoints)
        : mxs::RouterSession(session)
        , m_router(router)
        , m_endpoints(endpoints)
        , m_routes(endpoints.size())
        , m_replies(endpoints.size())
    {
        for (size_t i = 0; i < m_endpoints.size(); i++)
        {
            m_endpoints[i]->set_userdata(reinterpret_cast<void*>(i + 1));
        }
    }

    ~Session()
    {
        if (m_rs)
        {
            g_mod->session_free(m_rs);
        }
    }

    bool start(mxsrs_router* rs);

    bool routeQuery(GWBUF&& packet) override
    {
        m_hint.clear();
        for (const auto& h : packet.hints())
        {
            if (h.type == Hint::Type::ROUTE_TO_NAMED_SERVER)
            {
                m_hint = h.data;
            }
            break;      // only the first hint counts, as in the native schemarouter
        }
        m_routing = true;
        Current current(m_query, &packet);
        bool ok = g_mod->session_route_query(m_rs, packet.data(), packet.length(), packet.id());
        m_routing = false;
        m_hint.clear();
        return ok;
    }

    mxsrs_str route_hint() const
    {
        return to_str(m_hint);
    }

    bool can_recover_state() const
    {
        auto* mses = static_cast<MYSQL_session*>(m_pSession->protocol_data());
        if (!mses)
        {
            return false;
        }
        // With disable_sescmd_history MaxScale drops each command at once and still calls the
        // (empty) history recoverable: a session command that ran is then state we cannot give back.
        if (m_pSession->service->config()->disable_sescmd_history && mses->history().pruned())
        {
            return false;
        }
        return mses->can_recover_state();
    }

    void clear_connect_db()
    {
        auto* mses = static_cast<MYSQL_session*>(m_pSession->protocol_data());
        if (mses)
        {
            // Backend connections authenticate later, from the event loop: they read this then.
            mses->client_caps.basic_capabilities &= ~GW_MYSQL_CAPABILITIES_CONNECT_WITH_DB;
            mses->auth_data->default_db.clear();
        }
    }

    bool clientReply(GWBUF&& packet, const mxs::ReplyRoute& down, const mxs::Reply& reply) override
    {
        size_t i = index_of(down.endpoint());
        if (i == MXSRS_NO_ENDPOINT)
        {
            return true;
        }
        // Kept so that a chunk the module holds back can be sent later with its reply state.
        m_routes[i] = down;
        m_replies[i] = reply;
        Current current(m_reply, &packet);
        return g_mod->session_client_reply(m_rs, i, packet.data(), packet.length());
    }

    bool handleError(mxs::ErrorType type, const std::string& message, mxs::Endpoint* problem,
                     const mxs::Reply& reply) override
    {
        size_t i = index_of(problem);
        if (i != MXSRS_NO_ENDPOINT && g_mod->session_handle_error(m_rs, i, to_str(message)))
        {
            return true;
        }
        return mxs::RouterSession::handleError(type, message, problem, reply);
    }

    // Host services, called by the module.
    // As MaxScale's own routers do: no connection to a server that is down, in maintenance
    // or draining (MaxScale's connect() does not check, and a router reconnecting a lost
    // target would otherwise use a server put into maintenance).
    bool ep_connect(size_t i)
    {
        return i < m_endpoints.size() && m_endpoints[i]->target()->is_connectable()
               && m_endpoints[i]->connect();
    }

    bool ep_is_open(size_t i)
    {
        return i < m_endpoints.size() && m_endpoints[i]->is_open();
    }

    bool ep_write(size_t i, const uint8_t* data, size_t len, uint32_t id)
    {
        if (i >= m_endpoints.size() || !m_endpoints[i]->is_open())
        {
            return false;
        }
        GWBUF buf = piece(m_query, data, len);
        buf.set_id(id);
        return m_endpoints[i]->routeQuery(std::move(buf));
    }

    void ep_close(size_t i)
    {
        if (i < m_endpoints.size() && m_endpoints[i]->is_open())
        {
            m_endpoints[i]->close();
        }
    }

    bool reply(size_t i, const uint8_t* data, size_t len, bool complete)
    {
        if (i < m_endpoints.size())
        {
            return mxs::RouterSession::clientReply(piece(m_reply, data, len), m_routes[i], m_replies[i]);
        }
        // A reply the router made up. Inside routeQuery MaxScale delivers it as the answer to
        // the request; elsewhere (a request the router held back and routes from clientReply
        // or session_resume) set_response would never be delivered: pass it up as a complete
        // reply, as MaxScale's own delivery does.
        if (m_routing)
        {
            set_response(GWBUF(data, len));
            return true;
        }
        return mxs::RouterSession::clientReply(GWBUF(data, len), mxs::ReplyRoute(), mxs::Reply());
    }

    void kill(mxsrs_str msg)
    {
        m_pSession->kill(from_str(msg));
    }

    void schedule_resume()
    {
        // What RouterSession::lcall (24.02 and later) does, written out for 23.08 as well: the
        // session runs the call from its event loop, and only while this router session lives.
        m_pSession->delay_routing(this, GWBUF(), std::chrono::milliseconds(0), [this](GWBUF&&) {
            return g_mod->session_resume(m_rs);
        });
    }

private:
    // The buffer of the call being handled, set for its duration (and restored after a nested
    // call): bytes the module passes back from inside it are sent as a shallow clone of that
    // range (what the native routers do), not copied.
    class Current
    {
    public:
        Current(const GWBUF*& slot, const GWBUF* buf)
            : m_slot(slot)
            , m_prev(slot)
        {
            slot = buf;
        }

        ~Current()
        {
            m_slot = m_prev;
        }

    private:
        const GWBUF*& m_slot;
        const GWBUF*  m_prev;
    };

    static GWBUF piece(const GWBUF* buf, const uint8_t* data, size_t len)
    {
        if (buf && len > 0 && data >= buf->data() && data + len <= buf->data() + buf->length())
        {
            GWBUF out = buf->shallow_clone();
            out.consume(data - buf->data());
            out.rtrim(out.length() - len);
            return out;
        }
        // A copy the module kept of the whole buffer (a router that queues requests): the
        // buffer itself goes on, with what MaxScale attached to it (its parse result, which a
        // backend write with RCAP_TYPE_QUERY_CLASSIFICATION would otherwise compute again).
        if (buf && len > 0 && len == buf->length() && memcmp(data, buf->data(), len) == 0)
        {
            return buf->shallow_clone();
        }
        return GWBUF(data, len);
    }

    size_t index_of(mxs::Endpoint* ep)
    {
        auto n = reinterpret_cast<size_t>(ep ? ep->get_userdata() : nullptr);
        return n >= 1 && n <= m_endpoints.size() ? n - 1 : MXSRS_NO_ENDPOINT;
    }

    Router*                      m_router;
    mxs::Endpoints               m_endpoints;
    std::vector<mxs::ReplyRoute> m_routes;
    std::vector<mxs::Reply>      m_replies;
    mxsrs_session*               m_rs {nullptr};
    std::string                  m_hint;
    bool                         m_routing {false};
    const GWBUF*                 m_query {nullptr};
    const GWBUF*                 m_reply {nullptr};
};

Session* sess(mxsrs_session_ctx* ctx)
{
    return reinterpret_cast<Session*>(ctx);
}

const mxsrs_host_api g_host_api = {
    host_log,
    host_log_enabled,
    [](mxsrs_session_ctx* c, size_t i) {
        return sess(c)->ep_connect(i);
    },
    [](mxsrs_session_ctx* c, size_t i) {
        return sess(c)->ep_is_open(i);
    },
    [](mxsrs_session_ctx* c, size_t i, const uint8_t* d, size_t n, uint32_t id) {
        return sess(c)->ep_write(i, d, n, id);
    },
    [](mxsrs_session_ctx* c, size_t i) {
        sess(c)->ep_close(i);
    },
    [](mxsrs_session_ctx* c, size_t i, const uint8_t* d, size_t n, bool complete) {
        return sess(c)->reply(i, d, n, complete);
    },
    [](mxsrs_session_ctx* c, mxsrs_str msg) {
        sess(c)->kill(msg);
    },
    [](mxsrs_session_ctx* c) {
        sess(c)->schedule_resume();
    },
    [](mxsrs_session_ctx* c) {
        sess(c)->clear_connect_db();
    },
    [](mxsrs_session_ctx* c) {
        return sess(c)->route_hint();
    },
    [](mxsrs_session_ctx* c) {
        return sess(c)->can_recover_state();
    },
};

// ---- router ---------------------------------------------------------------------------------

class Router : public mxs::Router
{
public:
    static Router* create(SERVICE* service)
    {
        std::vector<std::string> names;
        for (auto* t : service->get_children())
        {
            names.push_back(t->name());
        }
        std::vector<mxsrs_str> targets;
        for (const auto& n : names)
        {
            targets.push_back(to_str(n));
        }
        std::string svc = service->name();
        mxsrs_router* rs = g_mod->router_new(&g_host_api, to_str(svc), targets.data(), targets.size());
        return rs ? new Router(service, rs) : nullptr;
    }

    ~Router()
    {
        g_mod->router_free(m_rs);
    }

#if MXSRS_MAXSCALE_VERSION >= 240200
    std::shared_ptr<mxs::RouterSession> newSession(MXS_SESSION* session,
                                                   const mxs::Endpoints& endpoints) override
    {
        auto s = std::make_shared<Session>(session, this, endpoints);
        return s->start(m_rs) ? s : nullptr;
    }
#else
    mxs::RouterSession* newSession(MXS_SESSION* session, const mxs::Endpoints& endpoints) override
    {
        auto s = std::make_unique<Session>(session, this, endpoints);
        return s->start(m_rs) ? s.release() : nullptr;
    }
#endif

    json_t* diagnostics() const override
    {
        std::string s = take(g_mod->router_diagnostics(m_rs));
        return s.empty() ? nullptr : json_loads(s.c_str(), 0, nullptr);
    }

    uint64_t getCapabilities() const override
    {
        return capabilities();
    }

    cfg::Configuration& getConfiguration() override
    {
        return m_config;
    }

    std::set<std::string> protocols() const override
    {
        return {MXS_MARIADB_PROTOCOL_NAME};
    }

    mxsrs_router* rs() const
    {
        return m_rs;
    }

private:
    Router(SERVICE* service, mxsrs_router* rs)
        : m_rs(rs)
        , m_config(service->name(), this)
    {
    }

    mxsrs_router* m_rs;
    Config        m_config;
};

bool Session::start(mxsrs_router* rs)
{
    auto* mses = static_cast<MYSQL_session*>(m_pSession->protocol_data());
    std::vector<std::string> names;
    for (auto* ep : m_endpoints)
    {
        names.push_back(ep->target()->name());
    }
    std::vector<mxsrs_endpoint_info> eps;
    for (size_t i = 0; i < m_endpoints.size(); i++)
    {
        eps.push_back({to_str(names[i]), m_endpoints[i]->target()->is_connectable()});
    }
    std::string user = m_pSession->user();
    std::string host = m_pSession->client_remote();
    std::string db = mses ? mses->current_db : "";
    mxsrs_session_info info {
        m_pSession->id(), to_str(user), to_str(host), to_str(db),
        mses ? mses->full_capabilities() : 0, eps.data(), eps.size()
    };
    m_rs = g_mod->session_new(rs, ctx_of(this), &info);
    return m_rs != nullptr;
}

Config::Config(const std::string& name, Router* router)
    : cfg::Configuration(name, g_spec)
    , m_router(router)
{
    for (auto [type, p] : g_params)
    {
        cfg::Type* v = nullptr;
        switch (type)
        {
        case MXSRS_PARAM_STRING:
            v = new cfg::String(this, static_cast<cfg::ParamString*>(p));
            break;

        case MXSRS_PARAM_ENUM:
            v = new cfg::Enum<EnumValue>(this, static_cast<cfg::ParamEnum<EnumValue>*>(p));
            break;

        case MXSRS_PARAM_TARGET:
            v = new cfg::Target(this, static_cast<cfg::ParamTarget*>(p));
            break;

        case MXSRS_PARAM_BOOL:
            v = new cfg::Bool(this, static_cast<cfg::ParamBool*>(p));
            break;

        case MXSRS_PARAM_SECONDS:
            v = new cfg::Seconds(this, static_cast<cfg::ParamSeconds*>(p));
            break;

        case MXSRS_PARAM_REGEX:
            v = new cfg::Regex(this, static_cast<cfg::ParamRegex*>(p));
            break;

        case MXSRS_PARAM_STRING_LIST:
            v = new cfg::StringList(this, static_cast<cfg::ParamStringList*>(p));
            break;
        }
        m_values.emplace_back(v);
    }
}

bool Config::post_configure(const std::map<std::string, mxs::ConfigParameters>&)
{
    KV kv;
    for (const auto& v : m_values)
    {
        kv.emplace_back(v->parameter().name(), v->to_string());
    }
    auto raw = to_kv(kv);
    std::string err = take(g_mod->router_configure(m_router->rs(), raw.data(), raw.size()));
    if (!err.empty())
    {
        MXB_ERROR("%s", err.c_str());
        return false;
    }
    return true;
}

mxs::Router* create_instance(SERVICE* service)
{
    try
    {
        return Router::create(service);
    }
    catch (const std::exception& e)
    {
        MXB_ERROR("Router creation failed: %s", e.what());
        return nullptr;
    }
}

mxs::MXS_ROUTER_API g_router_api = {&create_instance};

// ---- module commands ------------------------------------------------------------------------

constexpr size_t MAX_COMMANDS = 8;

#if MXSRS_MAXSCALE_VERSION >= 240800
using CommandArgsParam = const ModuleCmdArgs&;
using CommandFn = ModuleCmdFn;

SERVICE* command_service(CommandArgsParam argv)
{
    return argv.empty() ? nullptr : argv[0].service;
}
#else
using CommandArgsParam = const MODULECMD_ARG*;
using CommandFn = MODULECMDFN;

SERVICE* command_service(CommandArgsParam argv)
{
    return argv && argv->argc > 0 ? argv->argv[0].value.service : nullptr;
}
#endif

template<size_t N>
bool run_command(CommandArgsParam argv, json_t** output)
{
    SERVICE* service = command_service(argv);
    auto* router = service ? dynamic_cast<Router*>(service->router()) : nullptr;
    if (!router)
    {
        MXB_ERROR("Service is not using %s", mxsrs_module_name);
        return false;
    }
    const char* name = g_mod->commands[N].name;
    bool ok = false;
    std::string text = take(g_mod->router_command(router->rs(), {name, strlen(name)}, &ok));
    if (!ok)
    {
        MXB_ERROR("%s", text.c_str());
        return false;
    }
    if (!text.empty() && output)
    {
        *output = json_loads(text.c_str(), 0, nullptr);
    }
    return true;
}

template<size_t... N>
constexpr std::array<CommandFn, sizeof...(N)> command_table(std::index_sequence<N...>)
{
    return {&run_command<N>...};
}

void register_commands()
{
    static const auto fns = command_table(std::make_index_sequence<MAX_COMMANDS>());
    for (size_t i = 0; i < g_mod->n_commands && i < MAX_COMMANDS; i++)
    {
#if MXSRS_MAXSCALE_VERSION >= 240800
        using namespace mxs::modulecmd;
        modulecmd_register_command(mxsrs_module_name, g_mod->commands[i].name, CmdType::WRITE, fns[i],
                                   {{ArgType::SERVICE, ARG_NAME_MATCHES_DOMAIN, "Service name"}},
                                   g_mod->commands[i].description);
#else
        static modulecmd_arg_type_t args[] = {
            {MODULECMD_ARG_SERVICE | MODULECMD_ARG_NAME_MATCHES_DOMAIN, "Service name"}
        };
        modulecmd_register_command(mxsrs_module_name, g_mod->commands[i].name, MODULECMD_TYPE_ACTIVE,
                                   fns[i], 1, args, g_mod->commands[i].description);
#endif
    }
}
}

// Called from the Rust module's mxs_get_module_object: builds MaxScale's module description
// from the module's table.
extern "C" void* mxsrs_shim_module_object(const mxsrs_module* mod);
extern "C" void* mxsrs_shim_module_object(const mxsrs_module* mod)
{
    static MXS_MODULE info;
    if (g_mod)
    {
        return &info;
    }
    if (!mod || mod->abi_version != MXSRS_ABI_VERSION)
    {
        fprintf(stderr, "mxsrs: module ABI version mismatch\n");
        return nullptr;
    }
    g_mod = mod;
    // MaxScale requires a module's name to be its file name (lib<name>.so). Taking it from
    // the file lets one build be installed under another name, e.g. next to the native module
    // of the same name for a side-by-side comparison.
    static std::string name = mod->name;
    Dl_info dl;
    if (dladdr(reinterpret_cast<void*>(&mxsrs_shim_module_object), &dl) && dl.dli_fname)
    {
        std::string file = dl.dli_fname;
        file = file.substr(file.find_last_of('/') + 1);
        if (file.size() > 6 && file.compare(0, 3, "lib") == 0 && file.compare(file.size() - 3, 3, ".so") == 0)
        {
            name = file.substr(3, file.size() - 6);
        }
    }
    mxsrs_module_name = name.c_str();
    g_spec = new Spec(name.c_str(), cfg::Specification::ROUTER);
    for (size_t i = 0; i < mod->n_params; i++)
    {
        g_params.emplace_back(mod->params[i].type, make_param(mod->params[i]));
    }
    register_commands();

    info = {
        mxs::MODULE_INFO_VERSION,
        mxsrs_module_name,
        mxs::ModuleType::ROUTER,
        mxs::ModuleStatus::GA,
        MXS_ROUTER_VERSION,
        mod->description,
        mod->version,
        capabilities(),
        &g_router_api,
        nullptr,
        nullptr,
        nullptr,
        nullptr,
        g_spec,
    };
    return &info;
}
