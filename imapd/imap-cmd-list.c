/* imap-cmd-list.c: the mailbox hierarchy: LIST (RFC 3501 and the
 * LIST-EXTENDED form with selection and return options, SPECIAL-USE and
 * CHILDREN attributes, RFC 5819 LIST-STATUS), LSUB, CREATE (with RFC 6154
 * CREATE-SPECIAL-USE), DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE and STATUS.
 * Names on the wire are modified UTF-7 (UTF-8 once the client enables
 * UTF8=ACCEPT or IMAP4rev2) and are kept as modified UTF-7 on disk; the
 * hierarchy delimiter is "/". A superior that has no folder of its own
 * (made so by DELETE of a folder with children) is listed \Noselect. */
#include "imapd/imap-private.h"
#include "imapd/imap-quote.h"
#include "imapd/imap-utf7.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LIST_PATTERNS_MAX 16

static const struct {
	const char *name, *attr;
} special_use[] = {
	{ "Drafts", "\\Drafts" }, { "Sent", "\\Sent" }, { "Trash", "\\Trash" },
	{ "Junk", "\\Junk" }, { "Archive", "\\Archive" },
};

enum list_sel {
	LIST_SEL_SUBSCRIBED = 1 << 0,
	LIST_SEL_SPECIAL_USE = 1 << 1,
	LIST_SEL_RECURSIVE = 1 << 2,
	LIST_RET_SUBSCRIBED = 1 << 3,
	LIST_RET_CHILDREN = 1 << 4,
	LIST_RET_SPECIAL_USE = 1 << 5,
	LIST_LSUB = 1 << 6,
	LIST_RET_STATUS = 1 << 7,
};

struct list_data {
	char *patterns[LIST_PATTERNS_MAX];
	unsigned pattern_count;
	unsigned opts;
	unsigned status_items;     /* RETURN (STATUS (...)): enum status_item */
	bool utf8;                 /* patterns sent in UTF-8 */
};

/* What list_work knows while it writes the lines. */
struct list_ctx {
	char **folders;            /* existing folders, sorted */
	size_t folder_count;
	char **subs;               /* subscriptions */
	char **specials;           /* "name<TAB>attrs" from CREATE (USE ...) */
	bool childinfo;            /* list_one adds CHILDINFO ("SUBSCRIBED") */
};

/* STATUS section below */
static bool status_items_parse(const struct imap_arg *list, size_t count, unsigned *items_r);
static void status_write(struct imap_job *job, const char *name, unsigned items);

static void list_data_free(void *data)
{
	struct list_data *d = data;

	for (unsigned i = 0; i < d->pattern_count; i++)
		free(d->patterns[i]);
	free(d);
}

/* '*' matches anything, '%' anything but the delimiter. */
static bool wildmatch(const char *pat, const char *name)
{
	for (; *pat != '\0'; pat++, name++) {
		if (*pat == '*' || *pat == '%') {
			for (const char *n = name;; n++) {
				if (wildmatch(pat + 1, n))
					return true;
				if (*n == '\0' || (*pat == '%' && *n == '/'))
					return false;
			}
		}
		if (*name != *pat)
			return false;
	}
	return *name == '\0';
}

static bool utf8_names(const struct imap_session *s)
{
	return s->utf8_accept || s->imap4rev2;
}

/* A UTF-8 name as modified UTF-7 (mf_malloc'ed), NULL when not UTF-8. */
static char *utf8_to_store(const char *str)
{
	struct buf b;
	char *ret = NULL;

	buf_init(&b, MAILBOX_NAME_BUF * 4);
	if (imap_utf8_to_utf7(str, &b) == 0)
		ret = mf_strndup(b.data != NULL ? (const char *)b.data : "", b.len);
	buf_free(&b);
	return ret;
}

/* Net-Unicode (RFC 5198 2) without the characters RFC 6855 3 and RFC 9051
 * 5.1 forbid in a mailbox name: controls U+0000-001F, U+007F-009F, and the
 * line and paragraph separators U+2028, U+2029. */
static bool utf8_name_allowed(const unsigned char *p)
{
	for (; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) ||
		    (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)))
			return false;
	}
	return true;
}

/* The store's (modified UTF-7) name holds no forbidden character. */
static bool store_name_allowed(const char *name)
{
	struct buf utf8;
	bool ok;

	if (imap_utf7_is_plain(name))
		return utf8_name_allowed((const unsigned char *)name);
	buf_init(&utf8, 0);
	ok = imap_utf7_to_utf8(name, &utf8) == 0 && buf_append(&utf8, "", 1) == 0 &&
		utf8_name_allowed(utf8.data);
	buf_free(&utf8);
	return ok;
}

bool imap_client_mailbox_name(const struct imap_session *s, const struct imap_arg *arg,
			      char *name, size_t size)
{
	struct imap_arg conv = *arg;
	const char *str;
	char *utf7;
	bool ok;

	if (!utf8_names(s))
		return imap_mailbox_name(arg, name, size) && store_name_allowed(name);
	if (!imap_arg_get_astring(arg, &str) || (utf7 = utf8_to_store(str)) == NULL)
		return false;
	conv.type = IMAP_ARG_STRING;
	conv.str = utf7;
	conv.len = strlen(utf7);
	ok = imap_mailbox_name(&conv, name, size) && store_name_allowed(name);
	free(utf7);
	return ok;
}

void imap_append_mailbox_name(const struct imap_session *s, struct buf *out, const char *name)
{
	struct buf utf8;

	if (!utf8_names(s) || imap_utf7_is_plain(name)) {
		imap_append_string(out, name, strlen(name), 0);
		return;
	}
	buf_init(&utf8, 0);
	if (imap_utf7_to_utf8(name, &utf8) == 0)
		imap_append_string(out, (const char *)utf8.data, utf8.len, IMAP_QUOTE_UTF8);
	else
		imap_append_string(out, name, strlen(name), 0);
	buf_free(&utf8);
}

/* Reference + pattern, with any-case "INBOX" at the start made "INBOX".
 * A UTF-8 pattern stays UTF-8 and is matched against the names in UTF-8
 * (pattern_matches): wildcards then stand for characters, not for parts
 * of a modified UTF-7 base64 run. */
static char *list_pattern(const char *ref, const char *pattern)
{
	char *p = mf_asprintf("%s%s", ref, pattern);

	if (strncasecmp(p, "INBOX", 5) == 0 && (p[5] == '\0' || p[5] == '/'))
		memcpy(p, "INBOX", 5);
	return p;
}

static bool name_in(char **names, const char *name)
{
	for (char **p = names; *p != NULL; p++) {
		if (strcmp(*p, name) == 0)
			return true;
	}
	return false;
}

static bool has_children(char **folders, const char *name)
{
	size_t len = strlen(name);

	for (char **p = folders; *p != NULL; p++) {
		if (strncmp(*p, name, len) == 0 && (*p)[len] == '/')
			return true;
	}
	return false;
}

/* The special-use attributes of name: those given at its CREATE, else
 * the default ones of the folders made on first login. */
static const char *special_attr(char **specials, const char *name)
{
	size_t len = strlen(name);

	for (char **p = specials; p != NULL && *p != NULL; p++) {
		if (strncmp(*p, name, len) == 0 && (*p)[len] == '\t')
			return *p + len + 1;
	}
	for (size_t i = 0; i < MF_N_ELEMENTS(special_use); i++) {
		if (strcmp(special_use[i].name, name) == 0)
			return special_use[i].attr;
	}
	return NULL;
}

static int names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The folders (sorted, as mailbox_list_folders gives them) plus their
 * superiors that have no folder of their own, sorted; mailbox_names_free(). */
static char **with_superiors(char **folders)
{
	size_t n = 0, cap = 16, n_folders = 0;
	char **all = mf_calloc(cap, sizeof(*all));

	while (folders[n_folders] != NULL)
		n_folders++;

	for (char **p = folders; *p != NULL; p++) {
		for (char *slash = strchr(*p, '/');; slash = strchr(slash + 1, '/')) {
			char *name = slash == NULL ? mf_strdup(*p) : mf_strndup(*p, (size_t)(slash - *p));
			if (slash != NULL && bsearch(&name, folders, n_folders, sizeof(*folders),
						     names_cmp) != NULL) {
				free(name);
			} else {
				if (n + 2 > cap) {
					cap *= 2;
					all = mf_realloc(all, cap * sizeof(*all));
				}
				all[n++] = name;
				all[n] = NULL;
			}
			if (slash == NULL)
				break;
		}
	}
	qsort(all, n, sizeof(*all), names_cmp);
	/* superiors shared by several folders were added once per folder run */
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		if (w > 0 && strcmp(all[w - 1], all[i]) == 0)
			free(all[i]);
		else
			all[w++] = all[i];
	}
	all[w] = NULL;
	return all;
}

static bool pattern_matches(const struct list_data *d, const char *name)
{
	struct buf utf8;
	bool found = false;

	buf_init(&utf8, 0);
	if (d->utf8 && !imap_utf7_is_plain(name) && imap_utf7_to_utf8(name, &utf8) == 0 &&
	    buf_append(&utf8, "", 1) == 0)
		name = (const char *)utf8.data;
	for (unsigned i = 0; i < d->pattern_count && !found; i++)
		found = wildmatch(d->patterns[i], name);
	buf_free(&utf8);
	return found;
}

static void list_one(struct imap_job *job, const struct list_data *d, const char *name,
		     const struct list_ctx *lc, bool exists)
{
	struct buf *out = &job->out;
	char **folders = lc->folders;
	bool selectable = strcmp(name, "INBOX") == 0 ||
		bsearch(&name, folders, lc->folder_count, sizeof(*folders), names_cmp) != NULL;
	const char *special = selectable ? special_attr(lc->specials, name) : NULL;
	bool subscribed = name_in(lc->subs, name);
	bool first = true;

	if ((d->opts & LIST_SEL_SPECIAL_USE) != 0 && special == NULL)
		return;
	buf_printf(out, "* %s (", (d->opts & LIST_LSUB) != 0 ? "LSUB" : "LIST");
#define ATTR(text) do { buf_printf(out, "%s%s", first ? "" : " ", text); first = false; } while (0)
	if (!exists)
		ATTR((d->opts & LIST_LSUB) != 0 ? "\\Noselect" : "\\NonExistent");
	else if (!selectable)
		ATTR("\\Noselect");
	if ((d->opts & LIST_LSUB) == 0 && exists)
		ATTR(has_children(folders, name) ? "\\HasChildren" : "\\HasNoChildren");
	if (subscribed && (d->opts & (LIST_SEL_SUBSCRIBED | LIST_RET_SUBSCRIBED)) != 0)
		ATTR("\\Subscribed");
	if (special != NULL && (d->opts & LIST_LSUB) == 0)
		ATTR(special);
#undef ATTR
	buf_printf(out, ") \"/\" ");
	imap_append_mailbox_name(job->s, out, name);
	if (lc->childinfo)
		buf_printf(out, " (CHILDINFO (\"SUBSCRIBED\"))");
	buf_printf(out, "\r\n");
	/* RFC 5819: STATUS right after, only for selectable mailboxes */
	if ((d->opts & LIST_RET_STATUS) != 0 && exists && selectable)
		status_write(job, name, d->status_items);
}

/* The unsubscribed superiors that match the patterns of subscriptions that
 * do not: LSUB "%" gives them \Noselect (RFC 3501 6.3.9), LIST (SUBSCRIBED
 * RECURSIVEMATCH) gives them CHILDINFO (RFC 5258 3.5). */
static void list_subscribed_parents(struct imap_job *job, const struct list_data *d,
				    struct list_ctx *lc)
{
	char **done = mf_calloc(1, sizeof(*done));
	size_t n = 0;

	for (char **p = lc->subs; *p != NULL; p++) {
		if (pattern_matches(d, *p))
			continue;
		for (char *slash = strchr(*p, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
			char *parent = mf_strndup(*p, (size_t)(slash - *p));
			if (!pattern_matches(d, parent) || name_in(lc->subs, parent) || name_in(done, parent)) {
				free(parent);
				continue;
			}
			bool exists = (d->opts & LIST_LSUB) == 0 &&
				(strcmp(parent, "INBOX") == 0 || name_in(lc->folders, parent));
			lc->childinfo = (d->opts & LIST_LSUB) == 0;
			list_one(job, d, parent, lc, exists);
			lc->childinfo = false;
			done = mf_realloc(done, (n + 2) * sizeof(*done));
			done[n++] = parent;
			done[n] = NULL;
		}
	}
	mailbox_names_free(&done);
}

static void list_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct list_data *d = job->data;
	struct list_ctx lc = { 0 };
	char **all = NULL;
	const char *error;
	const char *dom = s->user.domain, *user = s->user.localpart;

	if (mailbox_list_folders(s->ctx->store, dom, user, &lc.folders, &error) < 0 ||
	    mailbox_subscriptions_get(s->ctx->store, dom, user, &lc.subs, &error) < 0 ||
	    mailbox_special_use_get(s->ctx->store, dom, user, &lc.specials, &error) < 0) {
		buf_printf(&job->out, "%s NO [SERVERBUG] %s\r\n", job->tag, error);
		goto out;
	}
	all = with_superiors(lc.folders);
	while (lc.folders[lc.folder_count] != NULL)
		lc.folder_count++;
	if ((d->opts & (LIST_SEL_SUBSCRIBED | LIST_LSUB)) != 0) {
		for (char **p = lc.subs; *p != NULL; p++) {
			bool exists = strcmp(*p, "INBOX") == 0 || name_in(lc.folders, *p);
			if (pattern_matches(d, *p))
				list_one(job, d, *p, &lc, exists);
		}
		if ((d->opts & (LIST_LSUB | LIST_SEL_RECURSIVE)) != 0)
			list_subscribed_parents(job, d, &lc);
	} else {
		if (pattern_matches(d, "INBOX"))
			list_one(job, d, "INBOX", &lc, true);
		for (char **p = all; *p != NULL; p++) {
			if (pattern_matches(d, *p))
				list_one(job, d, *p, &lc, true);
		}
	}
	buf_printf(&job->out, "%s OK %s completed\r\n", job->tag,
		   (d->opts & LIST_LSUB) != 0 ? "Lsub" : "List");
out:
	mailbox_names_free(&all);
	mailbox_names_free(&lc.folders);
	mailbox_names_free(&lc.subs);
	mailbox_names_free(&lc.specials);
}

static bool list_options(const struct imap_arg *arg, bool selection, unsigned *opts,
			 unsigned *status_items)
{
	const struct imap_arg *list, *items;
	size_t count, item_count;
	const char *atom;

	if (!imap_arg_get_list(arg, &list, &count))
		return false;
	for (size_t i = 0; i < count; i++) {
		if (!imap_arg_get_atom(&list[i], &atom))
			return false;
		if (!selection && strcasecmp(atom, "STATUS") == 0) {
			/* RFC 5819: STATUS (item ...) */
			if ((*opts & LIST_RET_STATUS) != 0 || i + 1 >= count ||
			    !imap_arg_get_list(&list[i + 1], &items, &item_count) ||
			    !status_items_parse(items, item_count, status_items))
				return false;
			*opts |= LIST_RET_STATUS;
			i++;
		} else if (selection && strcasecmp(atom, "SUBSCRIBED") == 0)
			*opts |= LIST_SEL_SUBSCRIBED | LIST_RET_SUBSCRIBED;
		else if (selection && strcasecmp(atom, "SPECIAL-USE") == 0)
			*opts |= LIST_SEL_SPECIAL_USE;
		else if (selection && strcasecmp(atom, "RECURSIVEMATCH") == 0)
			*opts |= LIST_SEL_RECURSIVE;
		else if (selection && strcasecmp(atom, "REMOTE") == 0)
			continue;
		else if (!selection && strcasecmp(atom, "SUBSCRIBED") == 0)
			*opts |= LIST_RET_SUBSCRIBED;
		else if (!selection && strcasecmp(atom, "CHILDREN") == 0)
			*opts |= LIST_RET_CHILDREN;
		else if (!selection && strcasecmp(atom, "SPECIAL-USE") == 0)
			*opts |= LIST_RET_SPECIAL_USE;
		else
			return false;
	}
	/* RECURSIVEMATCH alone is an error (RFC 5258 3) */
	return (*opts & LIST_SEL_RECURSIVE) == 0 || (*opts & LIST_SEL_SUBSCRIBED) != 0;
}

static bool list_patterns(const struct imap_arg *arg, const char *ref, struct list_data *d)
{
	const struct imap_arg *list;
	size_t count;
	const char *pattern;

	if (imap_arg_get_list(arg, &list, &count)) {
		if (count == 0 || count > LIST_PATTERNS_MAX)
			return false;
		for (size_t i = 0; i < count; i++) {
			if (!imap_arg_get_astring(&list[i], &pattern))
				return false;
			d->patterns[d->pattern_count++] = list_pattern(ref, pattern);
		}
		return true;
	}
	if (!imap_arg_get_astring(arg, &pattern))
		return false;
	d->patterns[d->pattern_count++] = list_pattern(ref, pattern);
	return true;
}

static bool list_parse(const struct imap_command *cmd, struct list_data *d)
{
	size_t i = 0;
	const char *ref;

	if (cmd->arg_count > 0 && cmd->args[0].type == IMAP_ARG_LIST) {
		if (!list_options(&cmd->args[0], true, &d->opts, &d->status_items))
			return false;
		i++;
	}
	if (cmd->arg_count < i + 2 || !imap_arg_get_astring(&cmd->args[i], &ref) ||
	    !list_patterns(&cmd->args[i + 1], ref, d))
		return false;
	i += 2;
	if (i == cmd->arg_count)
		return true;
	return i + 2 == cmd->arg_count && imap_arg_atom_equals(&cmd->args[i], "RETURN") &&
		list_options(&cmd->args[i + 1], false, &d->opts, &d->status_items);
}

static void list_start(struct imap_session *s, const struct imap_command *cmd, struct list_data *d)
{
	struct imap_job *job = imap_job_new(s, cmd->tag, list_work);

	job->data = d;
	job->data_free = list_data_free;
	imap_job_start(job);
}

void imap_cmd_list(struct imap_session *s, const struct imap_command *cmd)
{
	struct list_data *d = mf_calloc(1, sizeof(*d));

	d->utf8 = utf8_names(s);
	if (!list_parse(cmd, d)) {
		list_data_free(d);
		imap_bad(s, cmd->tag, "Invalid LIST arguments");
		return;
	}
	if (d->pattern_count == 1 && d->patterns[0][0] == '\0' && d->opts == 0) {
		/* the hierarchy delimiter query */
		list_data_free(d);
		imap_printf(s, "* LIST (\\Noselect) \"/\" \"\"\r\n");
		imap_tagged(s, cmd->tag, "OK List completed");
		return;
	}
	list_start(s, cmd, d);
}

void imap_cmd_lsub(struct imap_session *s, const struct imap_command *cmd)
{
	struct list_data *d = mf_calloc(1, sizeof(*d));
	const char *ref;

	d->utf8 = utf8_names(s);
	if (cmd->arg_count != 2 || !imap_arg_get_astring(&cmd->args[0], &ref) ||
	    !list_patterns(&cmd->args[1], ref, d)) {
		list_data_free(d);
		imap_bad(s, cmd->tag, "Invalid LSUB arguments");
		return;
	}
	d->opts = LIST_LSUB;
	list_start(s, cmd, d);
}

/* ---- CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE ---- */

enum mbox_op { OP_CREATE, OP_DELETE, OP_RENAME, OP_SUBSCRIBE, OP_UNSUBSCRIBE };

struct mbox_op_data {
	enum mbox_op op;
	char name[MAILBOX_NAME_BUF], to[MAILBOX_NAME_BUF];
	char use[64];              /* CREATE (USE (...)): "\\Archive ..." or "" */
};

/* The special uses CREATE can give (RFC 6154; \All and \Flagged would
 * need virtual mailboxes). */
static const char *const create_uses[] = { "\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash" };

/* CREATE's "(USE (\Archive ...))" (RFC 4466 create-params, RFC 6154 3):
 * -1 for bad syntax, 0 with *unsupported set for a use not offered. */
static int create_params(const struct imap_arg *arg, char *use, size_t size, bool *unsupported)
{
	const struct imap_arg *params, *uses;
	size_t count, use_count, len = 0;
	const char *flag;

	*unsupported = false;
	if (!imap_arg_get_list(arg, &params, &count) || count != 2 ||
	    !imap_arg_atom_equals(&params[0], "USE") ||
	    !imap_arg_get_list(&params[1], &uses, &use_count) || use_count == 0 ||
	    use_count > MF_N_ELEMENTS(create_uses))
		return -1;
	for (size_t i = 0; i < use_count; i++) {
		bool known = false;
		if (!imap_arg_get_atom(&uses[i], &flag) || flag[0] != '\\')
			return -1;
		for (size_t k = 0; k < MF_N_ELEMENTS(create_uses); k++) {
			if (strcasecmp(flag, create_uses[k]) == 0 && strstr(use, create_uses[k]) == NULL) {
				len += (size_t)snprintf(use + len, size - len, "%s%s", len > 0 ? " " : "",
							create_uses[k]);
				known = true;
			}
		}
		if (!known)
			*unsupported = true;
	}
	return 0;
}

static int create_with_use(struct store *store, const char *dom, const char *user,
			   const struct mbox_op_data *d, const char **error_r)
{
	if (mailbox_create(store, dom, user, d->name, error_r) < 0)
		return -1;
	if (d->use[0] == '\0' ||
	    mailbox_special_use_set(store, dom, user, d->name, d->use, error_r) == 0)
		return 0;
	/* RFC 6154 3: no mailbox without the use asked for */
	const char *ignored;
	(void)mailbox_delete(store, dom, user, d->name, &ignored);
	errno = EIO;
	return -1;
}

static const char *op_code(int err)
{
	switch (err) {
	case EEXIST:
		return "[ALREADYEXISTS] ";
	case ENOENT:
		return "[NONEXISTENT] ";
	case ENOTEMPTY:
		return "[CANNOT] ";
	case EINVAL:
		return "[CANNOT] ";
	default:
		return "[SERVERBUG] ";
	}
}

static void op_work(struct imap_job *job)
{
	static const char *const names[] = { "Create", "Delete", "Rename", "Subscribe", "Unsubscribe" };
	struct imap_session *s = job->s;
	struct mbox_op_data *d = job->data;
	const char *dom = s->user.domain, *user = s->user.localpart, *error = NULL;
	struct store *store = s->ctx->store;
	int ret = 0;

	switch (d->op) {
	case OP_CREATE:
		ret = create_with_use(store, dom, user, d, &error);
		break;
	case OP_DELETE:
		ret = mailbox_delete(store, dom, user, d->name, &error);
		break;
	case OP_RENAME:
		ret = mailbox_rename(store, dom, user, d->name, d->to, &error);
		break;
	case OP_SUBSCRIBE:
	case OP_UNSUBSCRIBE:
		ret = mailbox_subscription_set(store, dom, user, d->name, d->op == OP_SUBSCRIBE, &error);
		break;
	}
	if (ret < 0)
		buf_printf(&job->out, "%s NO %s%s\r\n", job->tag, op_code(errno), error);
	else
		buf_printf(&job->out, "%s OK %s completed\r\n", job->tag, names[d->op]);
}

static void op_start(struct imap_session *s, const struct imap_command *cmd, enum mbox_op op)
{
	struct mbox_op_data *d = mf_calloc(1, sizeof(*d));
	size_t want = op == OP_RENAME ? 2 : 1;
	struct imap_job *job;
	const char *raw;

	d->op = op;
	if (op == OP_CREATE && cmd->arg_count == 2) {
		bool unsupported;
		if (create_params(&cmd->args[1], d->use, sizeof(d->use), &unsupported) < 0) {
			free(d);
			imap_bad(s, cmd->tag, "Invalid CREATE parameters");
			return;
		}
		if (unsupported) {
			free(d);
			imap_tagged(s, cmd->tag, "NO [USEATTR] Unsupported special use");
			return;
		}
		want = 2;
	}
	if (cmd->arg_count != want || !imap_arg_get_astring(&cmd->args[0], &raw)) {
		free(d);
		imap_bad(s, cmd->tag, "Invalid arguments");
		return;
	}
	/* CREATE "a/b/" creates "a/b" (RFC 3501 6.3.3) */
	struct imap_arg trimmed = cmd->args[0];
	char *copy = mf_strdup(raw);
	size_t len = strlen(copy);
	if (op == OP_CREATE && len > 1 && copy[len - 1] == '/')
		copy[len - 1] = '\0';
	trimmed.type = IMAP_ARG_STRING;
	trimmed.str = copy;
	trimmed.len = strlen(copy);
	bool ok = imap_client_mailbox_name(s, &trimmed, d->name, sizeof(d->name)) &&
		(op != OP_RENAME || imap_client_mailbox_name(s, &cmd->args[1], d->to, sizeof(d->to)));
	free(copy);
	if (!ok) {
		free(d);
		imap_tagged(s, cmd->tag, "NO [CANNOT] Invalid mailbox name");
		return;
	}
	if (s->box != NULL && op == OP_DELETE && strcmp(s->box->name, d->name) == 0) {
		free(d);
		imap_tagged(s, cmd->tag, "NO [INUSE] Mailbox is selected");
		return;
	}
	job = imap_job_new(s, cmd->tag, op_work);
	job->data = d;
	job->data_free = free;
	imap_job_start(job);
}

void imap_cmd_create(struct imap_session *s, const struct imap_command *cmd)
{
	op_start(s, cmd, OP_CREATE);
}

void imap_cmd_delete(struct imap_session *s, const struct imap_command *cmd)
{
	op_start(s, cmd, OP_DELETE);
}

void imap_cmd_rename(struct imap_session *s, const struct imap_command *cmd)
{
	op_start(s, cmd, OP_RENAME);
}

void imap_cmd_subscribe(struct imap_session *s, const struct imap_command *cmd)
{
	op_start(s, cmd, OP_SUBSCRIBE);
}

void imap_cmd_unsubscribe(struct imap_session *s, const struct imap_command *cmd)
{
	op_start(s, cmd, OP_UNSUBSCRIBE);
}

/* ---- STATUS ---- */

enum status_item {
	ST_MESSAGES = 1 << 0, ST_UIDNEXT = 1 << 1, ST_UIDVALIDITY = 1 << 2,
	ST_UNSEEN = 1 << 3, ST_RECENT = 1 << 4, ST_SIZE = 1 << 5, ST_HIGHESTMODSEQ = 1 << 6,
	ST_DELETED = 1 << 7, ST_DELETED_STORAGE = 1 << 8,
};

/* STATUS values: the store's counts plus what DELETED (RFC 9051) and
 * DELETED-STORAGE (RFC 9208 4.2.2, KiB like the STORAGE resource) ask. */
struct status_values {
	struct mailbox_status st;
	uint32_t deleted;
	uint64_t deleted_bytes;
};

struct status_data {
	char name[MAILBOX_NAME_BUF];
	unsigned items;
};

static const struct { const char *name; unsigned item; } status_names[] = {
	{ "MESSAGES", ST_MESSAGES }, { "UIDNEXT", ST_UIDNEXT }, { "UIDVALIDITY", ST_UIDVALIDITY },
	{ "UNSEEN", ST_UNSEEN }, { "RECENT", ST_RECENT }, { "SIZE", ST_SIZE },
	{ "HIGHESTMODSEQ", ST_HIGHESTMODSEQ }, { "DELETED", ST_DELETED },
	{ "DELETED-STORAGE", ST_DELETED_STORAGE },
};

/* The values for items; the \Deleted ones need the mailbox opened
 * (read-only: nothing moves from new/). */
static int status_get(struct imap_session *s, const char *name, unsigned items,
		      struct status_values *v, const char **error_r)
{
	const char *dom = s->user.domain, *user = s->user.localpart;
	struct mailbox *box;

	memset(v, 0, sizeof(*v));
	if (mailbox_status(s->ctx->store, dom, user, name, &v->st, error_r) < 0)
		return -1;
	if ((items & (ST_DELETED | ST_DELETED_STORAGE)) == 0)
		return 0;
	if (mailbox_open(s->ctx->store, dom, user, name, true, &box, error_r) < 0)
		return -1;
	for (unsigned i = 0; i < box->count; i++) {
		if ((box->msgs[i].flags & MAILBOX_FLAG_DELETED) != 0) {
			v->deleted++;
			v->deleted_bytes += box->msgs[i].size;
		}
	}
	mailbox_free(&box);
	return 0;
}

/* The status-att list of STATUS and of LIST's RETURN (STATUS (...)). */
static bool status_items_parse(const struct imap_arg *list, size_t count, unsigned *items_r)
{
	const char *atom;

	*items_r = 0;
	if (count == 0)
		return false;
	for (size_t i = 0; i < count; i++) {
		unsigned found = 0;
		if (!imap_arg_get_atom(&list[i], &atom))
			return false;
		for (size_t k = 0; k < MF_N_ELEMENTS(status_names); k++) {
			if (strcasecmp(atom, status_names[k].name) == 0)
				found = status_names[k].item;
		}
		if (found == 0)
			return false;
		*items_r |= found;
	}
	return true;
}

static void status_line(const struct imap_session *s, struct buf *out, const char *name,
			unsigned items, const struct status_values *v)
{
	const struct mailbox_status *st = &v->st;
	bool first = true;

	buf_printf(out, "* STATUS ");
	imap_append_mailbox_name(s, out, name);
	buf_printf(out, " (");
#define ITEM(flag, fmt, value) do { if ((items & (flag)) != 0) { \
	buf_printf(out, "%s" fmt, first ? "" : " ", value); first = false; } } while (0)
	ITEM(ST_MESSAGES, "MESSAGES %u", st->messages);
	ITEM(ST_UIDNEXT, "UIDNEXT %u", st->uid_next);
	ITEM(ST_UIDVALIDITY, "UIDVALIDITY %u", st->uid_validity);
	ITEM(ST_UNSEEN, "UNSEEN %u", st->unseen);
	ITEM(ST_RECENT, "RECENT %u", st->recent);
	ITEM(ST_SIZE, "SIZE %llu", (unsigned long long)st->size);
	ITEM(ST_HIGHESTMODSEQ, "HIGHESTMODSEQ %llu", (unsigned long long)st->highest_modseq);
	ITEM(ST_DELETED, "DELETED %u", v->deleted);
	ITEM(ST_DELETED_STORAGE, "DELETED-STORAGE %llu",
	     (unsigned long long)(v->deleted_bytes / 1024 + (v->deleted_bytes % 1024 != 0)));
#undef ITEM
	buf_printf(out, ")\r\n");
}

/* LIST-STATUS: the STATUS line of a listed mailbox; a mailbox that cannot
 * be opened (gone meanwhile) gets none (RFC 5819 2). */
static void status_write(struct imap_job *job, const char *name, unsigned items)
{
	struct imap_session *s = job->s;
	struct status_values v;
	const char *error;

	if (status_get(s, name, items, &v, &error) == 0)
		status_line(s, &job->out, name, items, &v);
}

static void status_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct status_data *d = job->data;
	struct status_values v;
	const char *error;
	struct buf *out = &job->out;

	if (status_get(s, d->name, d->items, &v, &error) < 0) {
		buf_printf(out, "%s NO %s%s\r\n", job->tag, errno == ENOENT ? "[NONEXISTENT] " : "", error);
		return;
	}
	status_line(s, out, d->name, d->items, &v);
	buf_printf(out, "%s OK Status completed\r\n", job->tag);
}

void imap_cmd_status(struct imap_session *s, const struct imap_command *cmd)
{
	struct status_data *d = mf_calloc(1, sizeof(*d));
	const struct imap_arg *list;
	size_t count;
	struct imap_job *job;

	if (cmd->arg_count != 2 || !imap_client_mailbox_name(s, &cmd->args[0], d->name, sizeof(d->name)) ||
	    !imap_arg_get_list(&cmd->args[1], &list, &count) ||
	    !status_items_parse(list, count, &d->items)) {
		free(d);
		imap_bad(s, cmd->tag, "Invalid STATUS arguments");
		return;
	}
	job = imap_job_new(s, cmd->tag, status_work);
	job->data = d;
	job->data_free = free;
	imap_job_start(job);
}
