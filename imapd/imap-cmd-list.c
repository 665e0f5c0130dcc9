/* imap-cmd-list.c: the mailbox hierarchy: LIST (RFC 3501 and the
 * LIST-EXTENDED form with selection and return options, SPECIAL-USE and
 * CHILDREN attributes), LSUB, CREATE, DELETE, RENAME, SUBSCRIBE,
 * UNSUBSCRIBE and STATUS. Names on the wire are modified UTF-7 and are kept
 * that way on disk; the hierarchy delimiter is "/". */
#include "imapd/imap-private.h"
#include "imapd/imap-quote.h"

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
};

struct list_data {
	char *patterns[LIST_PATTERNS_MAX];
	unsigned pattern_count;
	unsigned opts;
};

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

/* Reference + pattern, with any-case "INBOX" at the start made "INBOX". */
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

static const char *special_attr(const char *name)
{
	for (size_t i = 0; i < MF_N_ELEMENTS(special_use); i++) {
		if (strcmp(special_use[i].name, name) == 0)
			return special_use[i].attr;
	}
	return NULL;
}

static bool pattern_matches(const struct list_data *d, const char *name)
{
	for (unsigned i = 0; i < d->pattern_count; i++) {
		if (wildmatch(d->patterns[i], name))
			return true;
	}
	return false;
}

static void list_one(struct imap_job *job, const struct list_data *d, const char *name,
		     char **folders, char **subs, bool exists)
{
	struct buf *out = &job->out;
	const char *special = special_attr(name);
	bool subscribed = name_in(subs, name);
	bool first = true;

	if ((d->opts & LIST_SEL_SPECIAL_USE) != 0 && special == NULL)
		return;
	buf_printf(out, "* %s (", (d->opts & LIST_LSUB) != 0 ? "LSUB" : "LIST");
#define ATTR(text) do { buf_printf(out, "%s%s", first ? "" : " ", text); first = false; } while (0)
	if (!exists)
		ATTR((d->opts & LIST_LSUB) != 0 ? "\\Noselect" : "\\NonExistent");
	if ((d->opts & LIST_LSUB) == 0 && exists)
		ATTR(has_children(folders, name) ? "\\HasChildren" : "\\HasNoChildren");
	if (subscribed && (d->opts & (LIST_SEL_SUBSCRIBED | LIST_RET_SUBSCRIBED)) != 0)
		ATTR("\\Subscribed");
	if (special != NULL && (d->opts & LIST_LSUB) == 0)
		ATTR(special);
#undef ATTR
	buf_printf(out, ") \"/\" ");
	imap_append_string(out, name, strlen(name), 0);
	buf_printf(out, "\r\n");
}

static void list_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct list_data *d = job->data;
	char **folders = NULL, **subs = NULL;
	const char *error;
	const char *dom = s->user.domain, *user = s->user.localpart;

	if (mailbox_list_folders(s->ctx->store, dom, user, &folders, &error) < 0 ||
	    mailbox_subscriptions_get(s->ctx->store, dom, user, &subs, &error) < 0) {
		buf_printf(&job->out, "%s NO [SERVERBUG] %s\r\n", job->tag, error);
		goto out;
	}
	if ((d->opts & (LIST_SEL_SUBSCRIBED | LIST_LSUB)) != 0) {
		for (char **p = subs; *p != NULL; p++) {
			bool exists = strcmp(*p, "INBOX") == 0 || name_in(folders, *p);
			if (pattern_matches(d, *p))
				list_one(job, d, *p, folders, subs, exists);
		}
	} else {
		if (pattern_matches(d, "INBOX"))
			list_one(job, d, "INBOX", folders, subs, true);
		for (char **p = folders; *p != NULL; p++) {
			if (pattern_matches(d, *p))
				list_one(job, d, *p, folders, subs, true);
		}
	}
	buf_printf(&job->out, "%s OK %s completed\r\n", job->tag,
		   (d->opts & LIST_LSUB) != 0 ? "Lsub" : "List");
out:
	mailbox_names_free(&folders);
	mailbox_names_free(&subs);
}

static bool list_options(const struct imap_arg *arg, bool selection, unsigned *opts)
{
	const struct imap_arg *list;
	size_t count;
	const char *atom;

	if (!imap_arg_get_list(arg, &list, &count))
		return false;
	for (size_t i = 0; i < count; i++) {
		if (!imap_arg_get_atom(&list[i], &atom))
			return false;
		if (selection && strcasecmp(atom, "SUBSCRIBED") == 0)
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
		if (!list_options(&cmd->args[0], true, &d->opts))
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
		list_options(&cmd->args[i + 1], false, &d->opts);
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
};

static const char *op_code(int err)
{
	switch (err) {
	case EEXIST:
		return "[ALREADYEXISTS] ";
	case ENOENT:
		return "[NONEXISTENT] ";
	case ENOTEMPTY:
		return "[INUSE] ";
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
		ret = mailbox_create(store, dom, user, d->name, &error);
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
	bool ok = imap_mailbox_name(&trimmed, d->name, sizeof(d->name)) &&
		(op != OP_RENAME || imap_mailbox_name(&cmd->args[1], d->to, sizeof(d->to)));
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
	ST_UNSEEN = 1 << 3, ST_RECENT = 1 << 4, ST_SIZE = 1 << 5,
};

struct status_data {
	char name[MAILBOX_NAME_BUF];
	unsigned items;
};

static void status_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct status_data *d = job->data;
	struct mailbox_status st;
	const char *error;
	struct buf *out = &job->out;
	bool first = true;

	if (mailbox_status(s->ctx->store, s->user.domain, s->user.localpart, d->name, &st, &error) < 0) {
		buf_printf(out, "%s NO %s%s\r\n", job->tag, errno == ENOENT ? "[NONEXISTENT] " : "", error);
		return;
	}
	buf_printf(out, "* STATUS ");
	imap_append_string(out, d->name, strlen(d->name), 0);
	buf_printf(out, " (");
#define ITEM(flag, fmt, value) do { if ((d->items & (flag)) != 0) { \
	buf_printf(out, "%s" fmt, first ? "" : " ", value); first = false; } } while (0)
	ITEM(ST_MESSAGES, "MESSAGES %u", st.messages);
	ITEM(ST_UIDNEXT, "UIDNEXT %u", st.uid_next);
	ITEM(ST_UIDVALIDITY, "UIDVALIDITY %u", st.uid_validity);
	ITEM(ST_UNSEEN, "UNSEEN %u", st.unseen);
	ITEM(ST_RECENT, "RECENT %u", st.recent);
	ITEM(ST_SIZE, "SIZE %llu", (unsigned long long)st.size);
#undef ITEM
	buf_printf(out, ")\r\n%s OK Status completed\r\n", job->tag);
}

void imap_cmd_status(struct imap_session *s, const struct imap_command *cmd)
{
	static const struct { const char *name; unsigned item; } items[] = {
		{ "MESSAGES", ST_MESSAGES }, { "UIDNEXT", ST_UIDNEXT }, { "UIDVALIDITY", ST_UIDVALIDITY },
		{ "UNSEEN", ST_UNSEEN }, { "RECENT", ST_RECENT }, { "SIZE", ST_SIZE },
	};
	struct status_data *d = mf_calloc(1, sizeof(*d));
	const struct imap_arg *list;
	size_t count;
	const char *atom;
	struct imap_job *job;

	if (cmd->arg_count != 2 || !imap_mailbox_name(&cmd->args[0], d->name, sizeof(d->name)) ||
	    !imap_arg_get_list(&cmd->args[1], &list, &count) || count == 0)
		goto bad;
	for (size_t i = 0; i < count; i++) {
		unsigned found = 0;
		if (!imap_arg_get_atom(&list[i], &atom))
			goto bad;
		for (size_t k = 0; k < MF_N_ELEMENTS(items); k++) {
			if (strcasecmp(atom, items[k].name) == 0)
				found = items[k].item;
		}
		if (found == 0)
			goto bad;
		d->items |= found;
	}
	job = imap_job_new(s, cmd->tag, status_work);
	job->data = d;
	job->data_free = free;
	imap_job_start(job);
	return;
bad:
	free(d);
	imap_bad(s, cmd->tag, "Invalid STATUS arguments");
}
