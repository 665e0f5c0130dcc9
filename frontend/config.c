/* config.c: mailfleetd's configuration. The embedded default runs one node on
 * loopback with everything under ./var; a libconfig file overrides it setting
 * by setting. Each setting is described once in a table (name, type, range,
 * field offset) that drives both parsing and config_print(), so the printed
 * configuration always reads back to the same values. */
#include "frontend/config.h"
#include "pop3d/pop3-msg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#define KIB ((uint64_t)1024)
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

enum opt_type {
	OPT_STR,       /* required non-empty string */
	OPT_STR_NULL,  /* "" means unset (NULL) */
	OPT_BOOL,
	OPT_UINT,      /* unsigned field */
	OPT_SIZE,      /* size_t field; an integer or "64K", "50M", "1G" */
};

struct opt {
	const char *name;
	enum opt_type type;
	size_t offset;
	uint64_t min, max;
	bool (*check)(const char *value);
	const char *check_what;
};

struct opt_group {
	const char *name;       /* NULL for top-level settings */
	const struct opt *opts;
	size_t count;
};

struct parse_ctx {
	struct mf_config *cfg;
	const char *source;
	bool listeners_seen;
	char error[512];
};

static bool check_hostname(const char *value)
{
	size_t len = strlen(value);

	if (len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = value[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '-'))
			return false;
	}
	return value[0] != '.' && value[0] != '-';
}

static bool check_log_level(const char *value)
{
	static const char *const names[] = { "debug", "info", "warn", "error" };

	for (size_t i = 0; i < MF_N_ELEMENTS(names); i++) {
		if (strcmp(value, names[i]) == 0)
			return true;
	}
	return false;
}

static bool check_user_name(const char *value)
{
	if (strlen(value) > 32)
		return false;
	for (const char *p = value; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.'))
			return false;
	}
	return true;
}

static bool check_path(const char *value)
{
	return strlen(value) < 4096;
}

#define CFG_OFF(field) offsetof(struct mf_config, field)

static const struct opt top_opts[] = {
	{ "hostname", OPT_STR_NULL, CFG_OFF(hostname), 0, 0, check_hostname, "a host name" },
	{ "run_user", OPT_STR_NULL, CFG_OFF(run_user), 0, 0, check_user_name, "a user name" },
	{ "run_group", OPT_STR_NULL, CFG_OFF(run_group), 0, 0, check_user_name, "a group name" },
	{ "log_level", OPT_STR, CFG_OFF(log_level), 0, 0, check_log_level,
	  "one of debug, info, warn, error" },
	{ "watchdog_interval", OPT_UINT, CFG_OFF(watchdog_interval_secs), 0, 3600, NULL, NULL },
};

static const struct opt store_opts[] = {
	{ "location", OPT_STR, CFG_OFF(store_location), 0, 0, check_path, "a path or nfs:// URL" },
	{ "compress_lz4", OPT_BOOL, CFG_OFF(store_compress_lz4), 0, 0, NULL, NULL },
	{ "fsync", OPT_BOOL, CFG_OFF(store_fsync), 0, 0, NULL, NULL },
	{ "lock_timeout", OPT_UINT, CFG_OFF(store_lock_timeout_secs), 1, 86400, NULL, NULL },
	{ "fault_inject", OPT_STR_NULL, CFG_OFF(store_fault_inject), 0, 0, NULL, NULL },
};

static const struct opt directory_opts[] = {
	{ "path", OPT_STR, CFG_OFF(directory_path), 0, 0, check_path, "a path" },
	{ "create_demo_user", OPT_BOOL, CFG_OFF(create_demo_user), 0, 0, NULL, NULL },
};

static const struct opt tls_opts[] = {
	{ "cert", OPT_STR, CFG_OFF(tls_cert), 0, 0, check_path, "a path" },
	{ "key", OPT_STR, CFG_OFF(tls_key), 0, 0, check_path, "a path" },
	{ "self_signed", OPT_BOOL, CFG_OFF(tls_self_signed), 0, 0, NULL, NULL },
};

static const struct opt threads_opts[] = {
	{ "event", OPT_UINT, CFG_OFF(event_threads), 0, 256, NULL, NULL },
	{ "worker", OPT_UINT, CFG_OFF(worker_threads), 1, 1024, NULL, NULL },
};

static const struct opt limits_opts[] = {
	{ "line_max", OPT_SIZE, CFG_OFF(limits.line_max), 512, 16 * MIB, NULL, NULL },
	{ "message_size_max", OPT_SIZE, CFG_OFF(limits.message_size_max), KIB, 2 * GIB, NULL, NULL },
	{ "rcpt_max", OPT_UINT, CFG_OFF(limits.rcpt_max), 1, 100000, NULL, NULL },
	{ "connections_max", OPT_UINT, CFG_OFF(limits.connections_max), 1, 1000000, NULL, NULL },
	{ "connections_per_ip", OPT_UINT, CFG_OFF(limits.connections_per_ip), 0, 1000000, NULL, NULL },
	{ "idle_timeout", OPT_UINT, CFG_OFF(limits.idle_timeout_secs), 1, 86400, NULL, NULL },
	{ "data_timeout", OPT_UINT, CFG_OFF(limits.data_timeout_secs), 1, 86400, NULL, NULL },
	{ "output_queue_max", OPT_SIZE, CFG_OFF(limits.output_queue_max), 4 * KIB, GIB, NULL, NULL },
	{ "bad_commands_max", OPT_UINT, CFG_OFF(limits.bad_commands_max), 1, 1000, NULL, NULL },
};

static const struct opt lmtp_opts[] = {
	{ "quota_temporary", OPT_BOOL, CFG_OFF(lmtp_quota_temporary), 0, 0, NULL, NULL },
};

static bool check_uidl_format(const char *value)
{
	const char *error;

	return pop3_uidl_format_check(value, &error) == 0;
}

static const struct opt pop3_opts[] = {
	{ "uidl_format", OPT_STR, CFG_OFF(pop3_uidl_format), 0, 0, check_uidl_format,
	  "a UIDL format (%u %v %f %g with 0, width, X L U; must contain %u, %f or %g)" },
	{ "lock_timeout", OPT_UINT, CFG_OFF(pop3_lock_timeout_secs), 10, 86400, NULL, NULL },
	{ "require_tls", OPT_BOOL, CFG_OFF(pop3_require_tls), 0, 0, NULL, NULL },
};

static const struct opt imap_opts[] = {
	{ "require_tls", OPT_BOOL, CFG_OFF(imap_require_tls), 0, 0, NULL, NULL },
	{ "idle_keepalive", OPT_UINT, CFG_OFF(imap_idle_keepalive_secs), 10, 86400, NULL, NULL },
	{ "compress", OPT_BOOL, CFG_OFF(imap_compress), 0, 0, NULL, NULL },
	{ "utf8_accept", OPT_BOOL, CFG_OFF(imap_utf8_accept), 0, 0, NULL, NULL },
};

#define GROUP(name, opts) { name, opts, MF_N_ELEMENTS(opts) }
static const struct opt_group groups[] = {
	GROUP(NULL, top_opts),
	GROUP("store", store_opts),
	GROUP("directory", directory_opts),
	GROUP("tls", tls_opts),
	GROUP("threads", threads_opts),
	GROUP("limits", limits_opts),
	GROUP("lmtp", lmtp_opts),
	GROUP("pop3", pop3_opts),
	GROUP("imap", imap_opts),
};

static const char *const protocol_names[] = {
	[MF_PROTO_LMTP] = "lmtp", [MF_PROTO_IMAP] = "imap",
	[MF_PROTO_POP3] = "pop3", [MF_PROTO_HEALTH] = "health",
};

const char *config_protocol_name(enum mf_protocol proto)
{
	if ((unsigned)proto >= MF_N_ELEMENTS(protocol_names))
		return "unknown";
	return protocol_names[proto];
}

int config_protocol_parse(const char *name, enum mf_protocol *proto_r)
{
	for (size_t i = 0; i < MF_N_ELEMENTS(protocol_names); i++) {
		if (strcmp(name, protocol_names[i]) == 0) {
			*proto_r = (enum mf_protocol)i;
			return 0;
		}
	}
	return -1;
}

const char *config_listener_describe(const struct mf_listener_config *l, char *buf, size_t size)
{
	const char *proto = config_protocol_name(l->protocol);
	const char *s = l->tls ? "s" : "";

	if (l->path != NULL)
		snprintf(buf, size, "%s%s unix:%s", proto, s, l->path);
	else if (strchr(l->address, ':') != NULL)
		snprintf(buf, size, "%s%s [%s]:%u", proto, s, l->address, l->port);
	else
		snprintf(buf, size, "%s%s %s:%u", proto, s, l->address, l->port);
	return buf;
}

/* ---- defaults ---- */

static void add_default_listener(struct mf_config *cfg, enum mf_protocol proto,
				 unsigned port, bool tls)
{
	struct mf_listener_config *l = &cfg->listeners[cfg->listener_count++];

	l->protocol = proto;
	l->address = mf_strdup("127.0.0.1");
	l->port = port;
	l->path = NULL;
	l->tls = tls;
}

void config_defaults(struct mf_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->source = mf_strdup("(embedded default)");
	cfg->run_user = mf_strdup("mail");
	cfg->log_level = mf_strdup("info");
	cfg->store_location = mf_strdup("./var/mail");
	cfg->store_fsync = true;
	cfg->store_lock_timeout_secs = 120;
	cfg->directory_path = mf_strdup("./var/directory");
	cfg->create_demo_user = true;
	cfg->tls_cert = mf_strdup("./var/tls/cert.pem");
	cfg->tls_key = mf_strdup("./var/tls/key.pem");
	cfg->tls_self_signed = true;
	cfg->event_threads = 0;
	cfg->worker_threads = 16;
	cfg->watchdog_interval_secs = 0;
	cfg->limits.line_max = 8192;
	cfg->limits.message_size_max = 50 * MIB;
	cfg->limits.rcpt_max = 1000;
	cfg->limits.connections_max = 20000;
	cfg->limits.connections_per_ip = 200;
	cfg->limits.idle_timeout_secs = 300;
	cfg->limits.data_timeout_secs = 300;
	cfg->limits.output_queue_max = MIB;
	cfg->limits.bad_commands_max = 10;
	cfg->pop3_uidl_format = mf_strdup(POP3_UIDL_FORMAT_DEFAULT);
	cfg->pop3_lock_timeout_secs = 120;
	cfg->pop3_require_tls = false;
	cfg->imap_require_tls = false;
	cfg->imap_idle_keepalive_secs = 29 * 60;
	cfg->imap_compress = true;
	cfg->imap_utf8_accept = false;
	add_default_listener(cfg, MF_PROTO_IMAP, 1143, false);
	add_default_listener(cfg, MF_PROTO_IMAP, 1993, true);
	add_default_listener(cfg, MF_PROTO_POP3, 1110, false);
	add_default_listener(cfg, MF_PROTO_POP3, 1995, true);
	add_default_listener(cfg, MF_PROTO_LMTP, 2424, false);
	add_default_listener(cfg, MF_PROTO_HEALTH, 8080, false);
}

static void free_listeners(struct mf_config *cfg)
{
	for (unsigned i = 0; i < cfg->listener_count; i++) {
		mf_free(&cfg->listeners[i].address);
		mf_free(&cfg->listeners[i].path);
	}
	cfg->listener_count = 0;
}

static void free_strings(struct mf_config *cfg)
{
	for (size_t g = 0; g < MF_N_ELEMENTS(groups); g++) {
		for (size_t i = 0; i < groups[g].count; i++) {
			const struct opt *o = &groups[g].opts[i];
			if (o->type == OPT_STR || o->type == OPT_STR_NULL)
				mf_free((char *)cfg + o->offset);
		}
	}
}

void config_free(struct mf_config *cfg)
{
	free_strings(cfg);
	free_listeners(cfg);
	mf_free(&cfg->source);
	mf_free(&cfg->error);
}

/* ---- parsing ---- */

static int fail(struct parse_ctx *ctx, const config_setting_t *s, const char *fmt, ...)
	MF_PRINTF(3, 4);

static int fail(struct parse_ctx *ctx, const config_setting_t *s, const char *fmt, ...)
{
	const char *file = s != NULL ? config_setting_source_file(s) : NULL;
	int line = s != NULL ? config_setting_source_line(s) : 0;
	int n = snprintf(ctx->error, sizeof(ctx->error), "%s:%d: ",
			 file != NULL ? file : ctx->source, line);
	va_list ap;

	if (n < 0 || (size_t)n >= sizeof(ctx->error))
		return -1;
	va_start(ap, fmt);
	vsnprintf(ctx->error + n, sizeof(ctx->error) - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static const char *setting_path(const char *group, const char *name, char *buf, size_t size)
{
	if (group == NULL)
		snprintf(buf, size, "%s", name);
	else
		snprintf(buf, size, "%s.%s", group, name);
	return buf;
}

/* An integer, or for sizes also a string such as "64K", "50M", "1G". */
static int parse_number(const config_setting_t *s, bool size_suffix, int64_t *value_r)
{
	int type = config_setting_type(s);

	if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) {
		*value_r = config_setting_get_int64(s);
		return 0;
	}
	if (type != CONFIG_TYPE_STRING || !size_suffix)
		return -1;

	const char *str = config_setting_get_string(s);
	char *end;
	errno = 0;
	long long v = strtoll(str, &end, 10);
	if (errno != 0 || end == str || v < 0)
		return -1;
	int64_t mult = 1;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': mult = (int64_t)KIB; end++; break;
	case 'm': case 'M': mult = (int64_t)MIB; end++; break;
	case 'g': case 'G': mult = (int64_t)GIB; end++; break;
	default: return -1;
	}
	if (*end != '\0' || v > INT64_MAX / mult)
		return -1;
	*value_r = v * mult;
	return 0;
}

static int parse_string_opt(struct parse_ctx *ctx, const config_setting_t *s,
			    const struct opt *o, const char *path)
{
	char **field = (char **)((char *)ctx->cfg + o->offset);
	const char *value = config_setting_get_string(s);

	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(ctx, s, "%s: expected a string", path);
	if (value[0] == '\0' && o->type == OPT_STR)
		return fail(ctx, s, "%s: must not be empty", path);
	if (value[0] != '\0' && o->check != NULL && !o->check(value))
		return fail(ctx, s, "%s: \"%.64s\" is not %s", path, value, o->check_what);
	mf_free(field);
	if (value[0] != '\0')
		*field = mf_strdup(value);
	return 0;
}

static int parse_opt(struct parse_ctx *ctx, const config_setting_t *s,
		     const struct opt *o, const char *path)
{
	void *field = (char *)ctx->cfg + o->offset;
	int64_t v;

	switch (o->type) {
	case OPT_STR:
	case OPT_STR_NULL:
		return parse_string_opt(ctx, s, o, path);
	case OPT_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			return fail(ctx, s, "%s: expected true or false", path);
		*(bool *)field = config_setting_get_bool(s) != 0;
		return 0;
	case OPT_UINT:
	case OPT_SIZE:
		if (parse_number(s, o->type == OPT_SIZE, &v) < 0) {
			return fail(ctx, s, "%s: expected %s", path, o->type == OPT_SIZE ?
				    "a size (bytes, or a number with K, M or G)" : "an integer");
		}
		if (v < (int64_t)o->min || (uint64_t)v > o->max) {
			return fail(ctx, s, "%s: %" PRId64 " is out of range (%" PRIu64 "..%" PRIu64 ")",
				    path, v, o->min, o->max);
		}
		if (o->type == OPT_UINT)
			*(unsigned *)field = (unsigned)v;
		else
			*(size_t *)field = (size_t)v;
		return 0;
	}
	return -1;
}

static const struct opt *find_opt(const struct opt_group *g, const char *name)
{
	for (size_t i = 0; i < g->count; i++) {
		if (strcmp(g->opts[i].name, name) == 0)
			return &g->opts[i];
	}
	return NULL;
}

static int parse_group(struct parse_ctx *ctx, const config_setting_t *group,
		       const struct opt_group *g)
{
	char path[128];
	int n = config_setting_length(group);

	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct opt *o = find_opt(g, name);

		setting_path(g->name, name, path, sizeof(path));
		if (o == NULL)
			return fail(ctx, s, "unknown setting %s", path);
		if (parse_opt(ctx, s, o, path) < 0)
			return -1;
	}
	return 0;
}

static int listener_string(struct parse_ctx *ctx, const config_setting_t *s,
			   const char *name, char **value_r)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(ctx, s, "listeners.%s: expected a string", name);
	mf_free(value_r);
	*value_r = mf_strdup(config_setting_get_string(s));
	return 0;
}

static bool address_valid(const char *address)
{
	unsigned char sa[sizeof(struct in6_addr)];

	return strcmp(address, "*") == 0 || inet_pton(AF_INET, address, sa) == 1 ||
		inet_pton(AF_INET6, address, sa) == 1;
}

static int listener_field(struct parse_ctx *ctx, const config_setting_t *s,
			  struct mf_listener_config *l, bool *port_seen)
{
	const char *name = config_setting_name(s);
	char *proto = NULL;
	int64_t port;

	if (strcmp(name, "protocol") == 0) {
		if (listener_string(ctx, s, name, &proto) < 0)
			return -1;
		int ret = config_protocol_parse(proto, &l->protocol);
		mf_free(&proto);
		if (ret < 0)
			return fail(ctx, s, "listeners.protocol: expected lmtp, imap, pop3 or health");
		return 0;
	}
	if (strcmp(name, "address") == 0) {
		if (listener_string(ctx, s, name, &l->address) < 0)
			return -1;
		if (!address_valid(l->address))
			return fail(ctx, s, "listeners.address: \"%.64s\" is not \"*\" or an IP address", l->address);
		return 0;
	}
	if (strcmp(name, "path") == 0) {
		if (listener_string(ctx, s, name, &l->path) < 0)
			return -1;
		if (l->path[0] == '\0' || strlen(l->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return fail(ctx, s, "listeners.path: empty or too long for a unix socket");
		return 0;
	}
	if (strcmp(name, "port") == 0) {
		if (parse_number(s, false, &port) < 0)
			return fail(ctx, s, "listeners.port: expected an integer");
		if (port < 0 || port > 65535)
			return fail(ctx, s, "listeners.port: %" PRId64 " is out of range (0..65535)", port);
		l->port = (unsigned)port;
		*port_seen = true;
		return 0;
	}
	if (strcmp(name, "tls") == 0) {
		if (config_setting_type(s) != CONFIG_TYPE_BOOL)
			return fail(ctx, s, "listeners.tls: expected true or false");
		l->tls = config_setting_get_bool(s) != 0;
		return 0;
	}
	return fail(ctx, s, "unknown setting listeners.%s", name);
}

static int parse_listener(struct parse_ctx *ctx, const config_setting_t *group,
			  struct mf_listener_config *l)
{
	bool port_seen = false;
	int n = config_setting_length(group);

	if (config_setting_type(group) != CONFIG_TYPE_GROUP)
		return fail(ctx, group, "listeners: each entry must be a group { ... }");
	if (config_setting_get_member(group, "protocol") == NULL)
		return fail(ctx, group, "listeners: entry without protocol");
	for (int i = 0; i < n; i++) {
		if (listener_field(ctx, config_setting_get_elem(group, (unsigned)i), l, &port_seen) < 0)
			return -1;
	}
	if (l->path != NULL) {
		if (l->address != NULL || port_seen)
			return fail(ctx, group, "listeners: path excludes address and port");
		return 0;
	}
	if (!port_seen)
		return fail(ctx, group, "listeners: entry needs a port (or a unix socket path)");
	if (l->address == NULL)
		l->address = mf_strdup("*");
	return 0;
}

static int parse_listeners(struct parse_ctx *ctx, const config_setting_t *list)
{
	struct mf_config *cfg = ctx->cfg;
	int type = config_setting_type(list);
	int n = config_setting_length(list);

	if (type != CONFIG_TYPE_LIST && !(type == CONFIG_TYPE_ARRAY && n == 0))
		return fail(ctx, list, "listeners: expected a list ( { ... }, ... )");
	if (n > MF_LISTENERS_MAX)
		return fail(ctx, list, "listeners: more than %d entries", MF_LISTENERS_MAX);
	free_listeners(cfg);
	ctx->listeners_seen = true;
	for (int i = 0; i < n; i++) {
		struct mf_listener_config *l = &cfg->listeners[cfg->listener_count++];
		memset(l, 0, sizeof(*l));
		if (parse_listener(ctx, config_setting_get_elem(list, (unsigned)i), l) < 0)
			return -1;
	}
	return 0;
}

static const struct opt_group *find_group(const char *name)
{
	for (size_t g = 1; g < MF_N_ELEMENTS(groups); g++) {
		if (strcmp(groups[g].name, name) == 0)
			return &groups[g];
	}
	return NULL;
}

static int parse_root(struct parse_ctx *ctx, const config_setting_t *root)
{
	int n = config_setting_length(root);

	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct opt_group *g = find_group(name);
		const struct opt *o = find_opt(&groups[0], name);
		int ret;

		if (strcmp(name, "listeners") == 0) {
			ret = parse_listeners(ctx, s);
		} else if (g != NULL) {
			if (config_setting_type(s) != CONFIG_TYPE_GROUP)
				return fail(ctx, s, "%s: expected a group { ... }", name);
			ret = parse_group(ctx, s, g);
		} else if (o != NULL) {
			ret = parse_opt(ctx, s, o, name);
		} else {
			ret = fail(ctx, s, "unknown setting %s", name);
		}
		if (ret < 0)
			return -1;
	}
	return 0;
}

/* Settings that are valid one by one but not together. */
static int check_consistency(struct parse_ctx *ctx)
{
	const struct mf_config *cfg = ctx->cfg;

	if (cfg->limits.connections_per_ip > cfg->limits.connections_max)
		return fail(ctx, NULL, "limits.connections_per_ip exceeds limits.connections_max");
	for (unsigned i = 0; i < cfg->listener_count; i++) {
		for (unsigned j = 0; j < i; j++) {
			const struct mf_listener_config *a = &cfg->listeners[i], *b = &cfg->listeners[j];
			bool same = a->path != NULL ? (b->path != NULL && strcmp(a->path, b->path) == 0) :
				(b->path == NULL && a->port == b->port && a->port != 0 &&
				 strcmp(a->address, b->address) == 0);
			if (same)
				return fail(ctx, NULL, "listeners: entries %u and %u use the same address", j + 1, i + 1);
		}
	}
	return 0;
}

static void set_error(struct mf_config *cfg, const char *text, const char **error_r)
{
	mf_free(&cfg->error);
	cfg->error = mf_strdup(text);
	*error_r = cfg->error;
}

/* Parses into a fresh default configuration and swaps it in only on success. */
static int parse_common(config_t *lc, int read_ret, const char *source,
			struct mf_config *cfg, const char **error_r)
{
	struct parse_ctx ctx;
	struct mf_config next;
	int ret;

	memset(&ctx, 0, sizeof(ctx));
	ctx.source = source;
	if (read_ret != CONFIG_TRUE) {
		const char *file = config_error_file(lc);
		snprintf(ctx.error, sizeof(ctx.error), "%s:%d: %s", file != NULL ? file : source,
			 config_error_line(lc), config_error_text(lc));
		set_error(cfg, ctx.error, error_r);
		return -1;
	}
	config_defaults(&next);
	ctx.cfg = &next;
	ret = parse_root(&ctx, config_root_setting(lc));
	if (ret == 0)
		ret = check_consistency(&ctx);
	if (ret < 0) {
		config_free(&next);
		set_error(cfg, ctx.error, error_r);
		return -1;
	}
	mf_free(&next.source);
	next.source = mf_strdup(source);
	config_free(cfg);
	*cfg = next;
	return 0;
}

int config_load(const char *path, struct mf_config *cfg, const char **error_r)
{
	config_t lc;
	int ret;

	config_init(&lc);
	ret = parse_common(&lc, config_read_file(&lc, path), path, cfg, error_r);
	config_destroy(&lc);
	return ret;
}

/* Text has no file to be relative to, so @include is refused (it would let
 * a fuzzer, or a caller passing untrusted text, read arbitrary files). */
static bool has_include(const char *text)
{
	for (const char *p = text; (p = strchr(p, '@')) != NULL; p++) {
		if (strncasecmp(p, "@include", 8) == 0)
			return true;
	}
	return false;
}

int config_parse_string(const char *text, struct mf_config *cfg, const char **error_r)
{
	config_t lc;
	int ret;

	if (has_include(text)) {
		set_error(cfg, "(string):0: @include is only allowed in configuration files", error_r);
		return -1;
	}
	config_init(&lc);
	ret = parse_common(&lc, config_read_string(&lc, text), "(string)", cfg, error_r);
	config_destroy(&lc);
	return ret;
}

/* ---- printing ---- */

static void print_string(FILE *f, const char *value)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)(value != NULL ? value : ""); *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\x%02x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void print_opt(FILE *f, const struct mf_config *cfg, const struct opt *o, const char *indent)
{
	const void *field = (const char *)cfg + o->offset;

	fprintf(f, "%s%s = ", indent, o->name);
	switch (o->type) {
	case OPT_STR:
	case OPT_STR_NULL:
		print_string(f, *(char *const *)field);
		break;
	case OPT_BOOL:
		fputs(*(const bool *)field ? "true" : "false", f);
		break;
	case OPT_UINT:
		fprintf(f, "%u", *(const unsigned *)field);
		break;
	case OPT_SIZE:
		fprintf(f, "%zu", *(const size_t *)field);
		break;
	}
	fputs(";\n", f);
}

static void print_listener(FILE *f, const struct mf_listener_config *l, bool last)
{
	fprintf(f, "  { protocol = \"%s\"; ", config_protocol_name(l->protocol));
	if (l->path != NULL) {
		fputs("path = ", f);
		print_string(f, l->path);
		fputs("; ", f);
	} else {
		fprintf(f, "address = \"%s\"; port = %u; ", l->address, l->port);
	}
	fprintf(f, "tls = %s; }%s\n", l->tls ? "true" : "false", last ? "" : ",");
}

static void print_config(FILE *f, const struct mf_config *cfg)
{
	fprintf(f, "# mailfleetd configuration (from %s)\n", cfg->source);
	for (size_t i = 0; i < groups[0].count; i++)
		print_opt(f, cfg, &groups[0].opts[i], "");
	for (size_t g = 1; g < MF_N_ELEMENTS(groups); g++) {
		fprintf(f, "\n%s = {\n", groups[g].name);
		for (size_t i = 0; i < groups[g].count; i++)
			print_opt(f, cfg, &groups[g].opts[i], "  ");
		fputs("};\n", f);
	}
	fputs("\nlisteners = (\n", f);
	for (unsigned i = 0; i < cfg->listener_count; i++)
		print_listener(f, &cfg->listeners[i], i + 1 == cfg->listener_count);
	fputs(");\n", f);
}

void config_print(const struct mf_config *cfg, int fd)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return;
	print_config(f, cfg);
	fclose(f);
	for (size_t pos = 0; pos < len;) {
		ssize_t n = write(fd, text + pos, len - pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		pos += (size_t)n;
	}
	free(text);
}
