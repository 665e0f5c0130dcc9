/* dir-state.c: the directory's in-memory state and the two steps of every
 * change: dir_state_check() (may refuse, changes nothing) and
 * dir_state_do() (cannot fail). Removing a user or alias also removes it
 * from every alias it was a member of, so no alias points at nothing; an
 * alias left without members disappears. */
#include "cluster/dir-private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR_ALIAS_MEMBERS_MAX 10000

struct dir_state *dir_state_new(void)
{
	struct dir_state *state = mf_calloc(1, sizeof(*state));

	state->domains = dir_hash_new();
	state->users = dir_hash_new();
	state->aliases = dir_hash_new();
	return state;
}

static void user_free(struct dir_user *user)
{
	free(user->address);
	if (user->password_hash != NULL)
		explicit_bzero(user->password_hash, strlen(user->password_hash));
	free(user->password_hash);
	free(user->archive_policy);
	free(user);
}

static void alias_free(struct dir_alias *alias)
{
	for (unsigned i = 0; i < alias->count; i++)
		free(alias->members[i]);
	free(alias->members);
	free(alias->address);
	free(alias);
}

static void domain_free(struct dir_domain *domain)
{
	free(domain->name);
	free(domain);
}

void dir_state_free(struct dir_state **_state)
{
	struct dir_state *state = *_state;
	size_t iter = 0;
	void *v;

	if (state == NULL)
		return;
	while ((v = dir_hash_next(state->users, &iter, NULL)) != NULL)
		user_free(v);
	iter = 0;
	while ((v = dir_hash_next(state->aliases, &iter, NULL)) != NULL)
		alias_free(v);
	iter = 0;
	while ((v = dir_hash_next(state->domains, &iter, NULL)) != NULL)
		domain_free(v);
	dir_hash_free(&state->users);
	dir_hash_free(&state->aliases);
	dir_hash_free(&state->domains);
	free(state);
	*_state = NULL;
}

struct dir_state *dir_state_clone(const struct dir_state *state)
{
	struct dir_state *copy = dir_state_new();
	struct dir_domain *d;
	struct dir_user *u;
	struct dir_alias *a;
	size_t iter = 0;

	while ((d = dir_hash_next(state->domains, &iter, NULL)) != NULL) {
		struct dir_domain *nd = mf_malloc(sizeof(*nd));
		*nd = *d;
		nd->name = mf_strdup(d->name);
		dir_hash_put(copy->domains, nd->name, nd);
	}
	for (iter = 0; (u = dir_hash_next(state->users, &iter, NULL)) != NULL;) {
		struct dir_user *nu = mf_malloc(sizeof(*nu));
		*nu = *u;
		nu->address = mf_strdup(u->address);
		nu->password_hash = mf_strdup(u->password_hash);
		nu->archive_policy = mf_strdup(u->archive_policy);
		dir_hash_put(copy->users, nu->address, nu);
	}
	for (iter = 0; (a = dir_hash_next(state->aliases, &iter, NULL)) != NULL;) {
		struct dir_alias *na = mf_malloc(sizeof(*na));
		na->address = mf_strdup(a->address);
		na->count = a->count;
		na->members = mf_malloc(sizeof(char *) * (a->count == 0 ? 1 : a->count));
		for (unsigned i = 0; i < a->count; i++)
			na->members[i] = mf_strdup(a->members[i]);
		dir_hash_put(copy->aliases, na->address, na);
	}
	return copy;
}

/* --- validation --- */

static int fail(char *err, size_t size, const char *fmt, ...) MF_PRINTF(3, 4);
static int fail(char *err, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, size, fmt, ap);
	va_end(ap);
	return -1;
}

static const char *domain_of(const char *address)
{
	const char *at = strchr(address, '@');

	return at == NULL ? "" : at + 1;
}

static int check_new_address(const struct dir_state *state, const char *address,
			     const char *what, char *err, size_t size)
{
	const char *error;

	if (dir_address_check(address, &error) < 0)
		return fail(err, size, "invalid %s address '%.64s': %s", what, address, error);
	if (dir_hash_get(state->domains, domain_of(address)) == NULL)
		return fail(err, size, "unknown domain '%s' of %s %s", domain_of(address),
			    what, address);
	return 0;
}

static int check_hash(const char *address, const char *hash, char *err, size_t size)
{
	char buf[200];
	const char *error;

	if (hash == NULL || hash[0] == '\0')
		return fail(err, size, "user %s: a password hash is required", address);
	if ((error = dir_password_scheme_error(hash, buf, sizeof(buf))) != NULL)
		return fail(err, size, "user %s: %s", address, error);
	return 0;
}

static int check_policy(const char *policy, char *err, size_t size)
{
	size_t len = policy == NULL ? 0 : strlen(policy);

	if (len > DIR_POLICY_MAX)
		return fail(err, size, "archive policy longer than %d characters", DIR_POLICY_MAX);
	for (size_t i = 0; i < len; i++) {
		char c = policy[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr("._:=,+-", c) != NULL))
			return fail(err, size, "archive policy may contain only letters, "
				    "digits and . _ : = , + -");
	}
	return 0;
}

static int check_domain(const struct dir_state *state, const struct dir_change *ch,
			char *err, size_t size)
{
	const struct dir_domain *domain = dir_hash_get(state->domains, ch->name);
	const char *error;

	if (ch->type == DIR_CH_DOMAIN_ADD) {
		if (dir_domain_check(ch->name, &error) < 0)
			return fail(err, size, "invalid domain '%.64s': %s", ch->name, error);
		if (domain != NULL)
			return fail(err, size, "domain %s already exists", ch->name);
		return 0;
	}
	if (domain == NULL)
		return fail(err, size, "unknown domain '%.253s'", ch->name);
	if (ch->type == DIR_CH_DOMAIN_DEL && (domain->user_count > 0 || domain->alias_count > 0))
		return fail(err, size, "domain %s still has %u users and %u aliases; "
			    "delete them first", ch->name, domain->user_count, domain->alias_count);
	return 0;
}

static int check_user(const struct dir_state *state, const struct dir_change *ch,
		      char *err, size_t size)
{
	if (ch->type == DIR_CH_USER_ADD) {
		if (check_new_address(state, ch->name, "user", err, size) < 0)
			return -1;
		if (dir_hash_get(state->users, ch->name) != NULL)
			return fail(err, size, "user %s already exists", ch->name);
		if (dir_hash_get(state->aliases, ch->name) != NULL)
			return fail(err, size, "%s already exists as an alias", ch->name);
		return check_hash(ch->name, ch->value, err, size);
	}
	if (dir_hash_get(state->users, ch->name) == NULL)
		return fail(err, size, "unknown user '%.320s'", ch->name);
	if (ch->type == DIR_CH_USER_PASSWD)
		return check_hash(ch->name, ch->value, err, size);
	if (ch->type == DIR_CH_USER_ARCHIVE)
		return check_policy(ch->value, err, size);
	return 0;
}

static int member_index(const struct dir_alias *alias, const char *member)
{
	for (unsigned i = 0; i < alias->count; i++) {
		if (strcmp(alias->members[i], member) == 0)
			return (int)i;
	}
	return -1;
}

static int check_alias_add(const struct dir_state *state, const struct dir_change *ch,
			   bool relaxed, char *err, size_t size)
{
	const struct dir_alias *alias = dir_hash_get(state->aliases, ch->name);
	const char *member = ch->value == NULL ? "" : ch->value, *error;

	if (check_new_address(state, ch->name, "alias", err, size) < 0)
		return -1;
	if (dir_hash_get(state->users, ch->name) != NULL)
		return fail(err, size, "%s already exists as a user", ch->name);
	if (dir_address_check(member, &error) < 0)
		return fail(err, size, "invalid member address '%.64s': %s", member, error);
	if (strcmp(member, ch->name) == 0)
		return fail(err, size, "alias %s cannot be its own member", ch->name);
	if (!relaxed && dir_hash_get(state->users, member) == NULL &&
	    dir_hash_get(state->aliases, member) == NULL)
		return fail(err, size, "member %s is neither a user nor an alias", member);
	if (alias != NULL && member_index(alias, member) >= 0)
		return fail(err, size, "%s is already a member of alias %s", member, ch->name);
	if (alias != NULL && alias->count >= DIR_ALIAS_MEMBERS_MAX)
		return fail(err, size, "alias %s has the maximum of %d members", ch->name,
			    DIR_ALIAS_MEMBERS_MAX);
	return 0;
}

static int check_alias_del(const struct dir_state *state, const struct dir_change *ch,
			   char *err, size_t size)
{
	const struct dir_alias *alias = dir_hash_get(state->aliases, ch->name);

	if (alias == NULL)
		return fail(err, size, "unknown alias '%.320s'", ch->name);
	if (ch->value == NULL || member_index(alias, ch->value) < 0)
		return fail(err, size, "%.320s is not a member of alias %s",
			    ch->value == NULL ? "" : ch->value, ch->name);
	return 0;
}

int dir_state_check(const struct dir_state *state, const struct dir_change *ch,
		    bool relaxed, char *err, size_t size)
{
	if (ch->name == NULL || ch->name[0] == '\0')
		return fail(err, size, "%s: missing name", dir_change_type_name(ch->type));
	if (strlen(ch->name) > DIR_ADDRESS_MAX)
		return fail(err, size, "%s: name too long", dir_change_type_name(ch->type));
	if (ch->value != NULL && strlen(ch->value) > DIR_RECORD_MAX - DIR_ADDRESS_MAX - 64)
		return fail(err, size, "%s: value too long", dir_change_type_name(ch->type));
	switch (ch->type) {
	case DIR_CH_DOMAIN_ADD:
	case DIR_CH_DOMAIN_DEL:
	case DIR_CH_DOMAIN_QUOTA:
		return check_domain(state, ch, err, size);
	case DIR_CH_USER_ADD:
	case DIR_CH_USER_DEL:
	case DIR_CH_USER_PASSWD:
	case DIR_CH_USER_QUOTA:
	case DIR_CH_USER_ACCESS:
	case DIR_CH_USER_ARCHIVE:
		return check_user(state, ch, err, size);
	case DIR_CH_ALIAS_ADD:
		return check_alias_add(state, ch, relaxed, err, size);
	case DIR_CH_ALIAS_DEL:
		return check_alias_del(state, ch, err, size);
	}
	return fail(err, size, "unknown change type %d", (int)ch->type);
}

/* --- applying --- */

static void remove_address(struct dir_state *state, const char *address);

static void alias_remove(struct dir_state *state, const char *address)
{
	struct dir_alias *alias = dir_hash_remove(state->aliases, address);
	struct dir_domain *domain;

	if (alias == NULL)
		return;
	domain = dir_hash_get(state->domains, domain_of(alias->address));
	if (domain != NULL)
		domain->alias_count--;
	remove_address(state, alias->address);
	alias_free(alias);
}

static void member_remove(struct dir_alias *alias, unsigned idx)
{
	free(alias->members[idx]);
	memmove(&alias->members[idx], &alias->members[idx + 1],
		sizeof(char *) * (alias->count - idx - 1));
	alias->count--;
}

/* Drops address from every alias; aliases left empty go too. */
static void remove_address(struct dir_state *state, const char *address)
{
	char **emptied = NULL;
	unsigned n_emptied = 0;
	struct dir_alias *alias;
	size_t iter = 0;
	int idx;

	while ((alias = dir_hash_next(state->aliases, &iter, NULL)) != NULL) {
		if ((idx = member_index(alias, address)) < 0)
			continue;
		member_remove(alias, (unsigned)idx);
		if (alias->count == 0) {
			emptied = mf_realloc(emptied, sizeof(char *) * (n_emptied + 1));
			emptied[n_emptied++] = mf_strdup(alias->address);
		}
	}
	for (unsigned i = 0; i < n_emptied; i++) {
		alias_remove(state, emptied[i]);
		free(emptied[i]);
	}
	free(emptied);
}

static void do_domain(struct dir_state *state, const struct dir_change *ch)
{
	struct dir_domain *domain = dir_hash_get(state->domains, ch->name);

	switch (ch->type) {
	case DIR_CH_DOMAIN_ADD:
		domain = mf_calloc(1, sizeof(*domain));
		domain->name = mf_strdup(ch->name);
		dir_hash_put(state->domains, domain->name, domain);
		break;
	case DIR_CH_DOMAIN_DEL:
		dir_hash_remove(state->domains, ch->name);
		domain_free(domain);
		break;
	default:
		domain->quota_bytes = ch->number;
		break;
	}
}

static void do_user_add(struct dir_state *state, const struct dir_change *ch)
{
	struct dir_user *user = mf_calloc(1, sizeof(*user));
	struct dir_domain *domain;

	user->address = mf_strdup(ch->name);
	user->at = (size_t)(strchr(user->address, '@') - user->address);
	user->password_hash = mf_strdup(ch->value);
	user->quota_bytes = ch->number;
	user->imap_enabled = user->pop3_enabled = true;
	user->archive_policy = mf_strdup("");
	dir_hash_put(state->users, user->address, user);
	domain = dir_hash_get(state->domains, domain_of(user->address));
	domain->user_count++;
}

static void do_user(struct dir_state *state, const struct dir_change *ch)
{
	struct dir_user *user = dir_hash_get(state->users, ch->name);

	switch (ch->type) {
	case DIR_CH_USER_DEL:
		dir_hash_remove(state->users, ch->name);
		((struct dir_domain *)dir_hash_get(state->domains, domain_of(ch->name)))->user_count--;
		remove_address(state, ch->name);
		user_free(user);
		break;
	case DIR_CH_USER_PASSWD:
		explicit_bzero(user->password_hash, strlen(user->password_hash));
		free(user->password_hash);
		user->password_hash = mf_strdup(ch->value);
		break;
	case DIR_CH_USER_QUOTA:
		user->quota_bytes = ch->number;
		break;
	case DIR_CH_USER_ACCESS:
		user->imap_enabled = ch->imap_enabled;
		user->pop3_enabled = ch->pop3_enabled;
		break;
	default:
		free(user->archive_policy);
		user->archive_policy = mf_strdup(ch->value == NULL ? "" : ch->value);
		break;
	}
}

static void do_alias(struct dir_state *state, const struct dir_change *ch)
{
	struct dir_alias *alias = dir_hash_get(state->aliases, ch->name);

	if (ch->type == DIR_CH_ALIAS_DEL) {
		member_remove(alias, (unsigned)member_index(alias, ch->value));
		if (alias->count == 0)
			alias_remove(state, ch->name);
		return;
	}
	if (alias == NULL) {
		alias = mf_calloc(1, sizeof(*alias));
		alias->address = mf_strdup(ch->name);
		dir_hash_put(state->aliases, alias->address, alias);
		((struct dir_domain *)dir_hash_get(state->domains, domain_of(ch->name)))->alias_count++;
	}
	alias->members = mf_realloc(alias->members, sizeof(char *) * (alias->count + 1));
	alias->members[alias->count++] = mf_strdup(ch->value);
}

void dir_state_do(struct dir_state *state, const struct dir_change *ch)
{
	switch (ch->type) {
	case DIR_CH_DOMAIN_ADD:
	case DIR_CH_DOMAIN_DEL:
	case DIR_CH_DOMAIN_QUOTA:
		do_domain(state, ch);
		break;
	case DIR_CH_USER_ADD:
		do_user_add(state, ch);
		break;
	case DIR_CH_USER_DEL:
	case DIR_CH_USER_PASSWD:
	case DIR_CH_USER_QUOTA:
	case DIR_CH_USER_ACCESS:
	case DIR_CH_USER_ARCHIVE:
		do_user(state, ch);
		break;
	case DIR_CH_ALIAS_ADD:
	case DIR_CH_ALIAS_DEL:
		do_alias(state, ch);
		break;
	}
}

int dir_state_apply(struct dir_state *state, const struct dir_change *ch,
		    bool relaxed, char *err, size_t err_size)
{
	if (dir_state_check(state, ch, relaxed, err, err_size) < 0)
		return -1;
	dir_state_do(state, ch);
	return 0;
}

/* --- dumping (snapshots) --- */

struct dump {
	char *data;
	size_t len, size;
	unsigned count;
};

static void dump_change(struct dump *d, const struct dir_change *ch)
{
	char *line = dir_change_encode(ch);
	size_t len;

	if (line == NULL)
		return;   /* cannot happen: the state holds only encodable values */
	len = strlen(line);
	if (d->len + len + 2 > d->size) {
		d->size = (d->len + len + 2) * 2;
		d->data = mf_realloc(d->data, d->size);
	}
	memcpy(d->data + d->len, line, len);
	d->data[d->len + len] = '\n';
	d->data[d->len + len + 1] = '\0';
	d->len += len + 1;
	d->count++;
	free(line);
}

static void dump_user(struct dump *d, const struct dir_user *u)
{
	struct dir_change ch = { .type = DIR_CH_USER_ADD, .name = u->address,
				 .value = u->password_hash, .number = u->quota_bytes };

	dump_change(d, &ch);
	if (!u->imap_enabled || !u->pop3_enabled) {
		ch = (struct dir_change){ .type = DIR_CH_USER_ACCESS, .name = u->address,
					  .imap_enabled = u->imap_enabled,
					  .pop3_enabled = u->pop3_enabled };
		dump_change(d, &ch);
	}
	if (u->archive_policy[0] != '\0') {
		ch = (struct dir_change){ .type = DIR_CH_USER_ARCHIVE, .name = u->address,
					  .value = u->archive_policy };
		dump_change(d, &ch);
	}
}

char *dir_state_dump(const struct dir_state *state, size_t *len_r, unsigned *count_r)
{
	struct dump d = { .data = NULL };
	const struct dir_domain *dom;
	const struct dir_user *u;
	const struct dir_alias *a;
	size_t iter = 0;

	while ((dom = dir_hash_next(state->domains, &iter, NULL)) != NULL) {
		struct dir_change ch = { .type = DIR_CH_DOMAIN_ADD, .name = dom->name };
		dump_change(&d, &ch);
		if (dom->quota_bytes != 0) {
			ch = (struct dir_change){ .type = DIR_CH_DOMAIN_QUOTA, .name = dom->name,
						  .number = dom->quota_bytes };
			dump_change(&d, &ch);
		}
	}
	for (iter = 0; (u = dir_hash_next(state->users, &iter, NULL)) != NULL;)
		dump_user(&d, u);
	for (iter = 0; (a = dir_hash_next(state->aliases, &iter, NULL)) != NULL;) {
		for (unsigned i = 0; i < a->count; i++) {
			struct dir_change ch = { .type = DIR_CH_ALIAS_ADD, .name = a->address,
						 .value = a->members[i] };
			dump_change(&d, &ch);
		}
	}
	*len_r = d.len;
	*count_r = d.count;
	return d.data == NULL ? mf_strdup("") : d.data;
}

void dir_user_to_info(const struct dir_state *state, const struct dir_user *user,
		      struct dir_user_info *info_r)
{
	const struct dir_domain *domain =
		dir_hash_get(state->domains, user->address + user->at + 1);

	memset(info_r, 0, sizeof(*info_r));
	snprintf(info_r->address, sizeof(info_r->address), "%s", user->address);
	snprintf(info_r->localpart, sizeof(info_r->localpart), "%.*s",
		 (int)user->at, user->address);
	snprintf(info_r->domain, sizeof(info_r->domain), "%s", user->address + user->at + 1);
	info_r->quota_bytes = user->quota_bytes;
	info_r->domain_quota_bytes = domain == NULL ? 0 : domain->quota_bytes;
	info_r->imap_enabled = user->imap_enabled;
	info_r->pop3_enabled = user->pop3_enabled;
	snprintf(info_r->archive_policy, sizeof(info_r->archive_policy), "%s",
		 user->archive_policy);
}
