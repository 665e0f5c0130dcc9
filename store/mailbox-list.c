/* mailbox-list.c: a user's folders (maildir++ ".a.b" directories under
 * Maildir, "a/b" above) and subscriptions (Maildir/subscriptions, one name a
 * line, written as temp file + rename). */
#include "store/mailbox-private.h"
#include "store/maildir.h"
#include "store/store-private.h"
#include "lib/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FOLDERS_MAX 10000

struct names {
	char **v;
	size_t count, cap;
};

static void names_add(struct names *n, char *name)
{
	if (n->count + 1 >= n->cap) {
		n->cap = n->cap == 0 ? 16 : n->cap * 2;
		n->v = mf_realloc(n->v, n->cap * sizeof(*n->v));
	}
	n->v[n->count++] = name;
	n->v[n->count] = NULL;
}

static int names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void mailbox_names_free(char ***names)
{
	if (*names == NULL)
		return;
	for (char **p = *names; *p != NULL; p++)
		free(*p);
	mf_free(names);
}

static char *user_root(const char *domain, const char *user)
{
	return maildir_mailbox_path(domain, user, NULL);
}

static int list_cb(void *ctx, const char *name)
{
	struct names *n = ctx;

	if (name[0] != '.' || name[1] == '\0' || strcmp(name, "..") == 0 || n->count >= FOLDERS_MAX)
		return 0;
	char *folder = mf_strdup(name + 1);
	for (char *p = folder; *p != '\0'; p++) {
		if (*p == '.')
			*p = '/';
	}
	if (store_folder_name_valid(folder))
		names_add(n, folder);
	else
		free(folder);
	return 0;
}

int mailbox_list_folders(struct store *store, const char *domain, const char *user,
			 char ***names_r, const char **error_r)
{
	char *root = user_root(domain, user);
	struct names n = { 0 };

	if (root == NULL) {
		*error_r = "invalid user name";
		return -1;
	}
	names_add(&n, NULL);
	n.count = 0;
	if (io_readdir(store_io(store), root, list_cb, &n) < 0 && errno != ENOENT) {
		free(root);
		mailbox_names_free(&n.v);
		*error_r = "cannot list folders";
		return -1;
	}
	free(root);
	qsort(n.v, n.count, sizeof(*n.v), names_cmp);
	*names_r = n.v;
	return 0;
}

static void forget_path(struct store *store, const char *path)
{
	pthread_mutex_lock(&store->lock);
	scache_remove(&store->mailboxes, path);
	pthread_mutex_unlock(&store->lock);
}

int mailbox_create(struct store *store, const char *domain, const char *user, const char *name,
		   const char **error_r)
{
	char *prefix;

	if (maildir_folder_is_inbox(name) || !store_folder_name_valid(name)) {
		*error_r = maildir_folder_is_inbox(name) ? "INBOX exists" : "invalid mailbox name";
		errno = maildir_folder_is_inbox(name) ? EEXIST : EINVAL;
		return -1;
	}
	if (store_folder_exists(store, domain, user, name) == 1) {
		*error_r = "mailbox exists";
		errno = EEXIST;
		return -1;
	}
	/* superiors first, so the hierarchy shows in LIST */
	prefix = mf_strdup(name);
	for (char *p = strchr(prefix, '/'); p != NULL; p = strchr(p + 1, '/')) {
		*p = '\0';
		if (store_folder_exists(store, domain, user, prefix) != 1 &&
		    store_folder_create(store, domain, user, prefix) < 0) {
			free(prefix);
			*error_r = "cannot create the mailbox";
			return -1;
		}
		*p = '/';
	}
	free(prefix);
	if (store_folder_create(store, domain, user, name) < 0) {
		*error_r = "cannot create the mailbox";
		return -1;
	}
	return 0;
}

/* ---- lines files (subscriptions, special-use) ---- */

static char *user_file(const char *domain, const char *user, const char *file)
{
	char *root = user_root(domain, user);
	char *path = root == NULL ? NULL : mf_asprintf("%s/%s", root, file);

	free(root);
	return path;
}

/* The non-empty lines of a small file under Maildir (none when absent). */
static int lines_read(struct store *store, const char *path, struct names *n)
{
	char *data, *save = NULL;
	size_t len;

	names_add(n, NULL);
	n->count = 0;
	if (io_read_file(store_io(store), path, 1024 * 1024, &data, &len) < 0)
		return errno == ENOENT ? 0 : -1;
	for (char *line = strtok_r(data, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] != '\0' && n->count < FOLDERS_MAX)
			names_add(n, mf_strdup(line));
	}
	free(data);
	return 0;
}

/* Writes the lines as temp file + rename. */
static int lines_write(struct store *store, const char *path, char **lines)
{
	struct mf_io *io = store_io(store);
	char *tmp = mf_asprintf("%s.tmp.%llu", path, (unsigned long long)store_next_counter(store));
	struct buf out;
	struct io_file *file;
	int ret;

	buf_init(&out, 0);
	for (char **p = lines; *p != NULL; p++)
		buf_printf(&out, "%s\n", *p);
	ret = io_open(io, tmp, IO_O_WRONLY | IO_O_CREAT | IO_O_TRUNC, 0600, &file);
	if (ret == 0) {
		ret = io_write_all(file, out.data != NULL ? out.data : (const unsigned char *)"", out.len);
		if (io_close(&file) < 0)
			ret = -1;
		if (ret == 0)
			ret = io_rename(io, tmp, path);
		if (ret < 0)
			io_unlink(io, tmp);
	}
	buf_free(&out);
	free(tmp);
	return ret;
}

/* ---- special-use attributes (Maildir/mailfleet-special-use) ---- */

/* Rewrites the entries ("name<TAB>attrs"): the entry of name (and with
 * children set, those of "name/...") is renamed to new_name + the rest, or
 * dropped when new_name is NULL; then add_attrs (if not NULL) is added as
 * name's entry. */
static int special_use_edit(struct store *store, const char *domain, const char *user,
			    const char *name, bool children, const char *new_name,
			    const char *add_attrs)
{
	char *path = user_file(domain, user, MAILBOX_SPECIAL_USE_FILE);
	struct names n = { 0 }, out = { 0 };
	size_t len = strlen(name);
	int ret;

	if (path == NULL)
		return -1;
	ret = lines_read(store, path, &n);
	names_add(&out, NULL);
	out.count = 0;
	for (size_t i = 0; i < n.count && ret == 0; i++) {
		char *line = n.v[i], *tab = strchr(line, '\t');
		if (tab == NULL)
			continue;
		size_t nlen = (size_t)(tab - line);
		bool same = nlen == len && strncmp(line, name, len) == 0;
		bool child = children && nlen > len && line[len] == '/' && strncmp(line, name, len) == 0;
		if (!same && !child)
			names_add(&out, mf_strdup(line));
		else if (new_name != NULL)
			names_add(&out, mf_asprintf("%s%s", new_name, line + len));
	}
	if (ret == 0 && add_attrs != NULL)
		names_add(&out, mf_asprintf("%s\t%s", name, add_attrs));
	if (ret == 0)
		ret = lines_write(store, path, out.v);
	mailbox_names_free(&n.v);
	mailbox_names_free(&out.v);
	free(path);
	return ret;
}

int mailbox_special_use_get(struct store *store, const char *domain, const char *user,
			    char ***entries_r, const char **error_r)
{
	char *path = user_file(domain, user, MAILBOX_SPECIAL_USE_FILE);
	struct names n = { 0 };

	if (path == NULL) {
		*error_r = "invalid user name";
		return -1;
	}
	int ret = lines_read(store, path, &n);
	free(path);
	if (ret < 0) {
		mailbox_names_free(&n.v);
		*error_r = "cannot read the special-use attributes";
		return -1;
	}
	*entries_r = n.v;
	return 0;
}

int mailbox_special_use_set(struct store *store, const char *domain, const char *user,
			    const char *name, const char *attrs, const char **error_r)
{
	if (strchr(name, '\t') != NULL || strchr(name, '\n') != NULL ||
	    (attrs != NULL && (strchr(attrs, '\n') != NULL || attrs[0] == '\0'))) {
		*error_r = "invalid special-use attributes";
		errno = EINVAL;
		return -1;
	}
	if (special_use_edit(store, domain, user, name, false, NULL, attrs) < 0) {
		*error_r = "cannot write the special-use attributes";
		return -1;
	}
	return 0;
}

/* After a delete: the folder's own entry goes (a failure is ignored: an
 * entry for a missing folder is never listed). */
static void special_use_forget(struct store *store, const char *domain, const char *user,
			       const char *name)
{
	(void)special_use_edit(store, domain, user, name, false, NULL, NULL);
}

/* ---- delete ---- */

struct rm_ctx {
	struct names files;
};

static int rm_cb(void *ctx, const char *name)
{
	struct rm_ctx *r = ctx;

	names_add(&r->files, mf_strdup(name));
	return 0;
}

/* Removes the files in dir (and, for each of tmp/new/cur, their files). */
static int rm_dir(struct mf_io *io, const char *dir, int depth)
{
	struct rm_ctx r = { { 0 } };
	int ret = 0;

	if (io_readdir(io, dir, rm_cb, &r) < 0)
		return errno == ENOENT ? 0 : -1;
	for (size_t i = 0; i < r.files.count && ret == 0; i++) {
		char *path = mf_asprintf("%s/%s", dir, r.files.v[i]);
		bool sub = depth == 0 && (strcmp(r.files.v[i], "cur") == 0 ||
					  strcmp(r.files.v[i], "new") == 0 ||
					  strcmp(r.files.v[i], "tmp") == 0);
		if (sub)
			ret = rm_dir(io, path, 1);
		else if (io_unlink(io, path) < 0 && errno != ENOENT)
			ret = -1;
		free(path);
	}
	mailbox_names_free(&r.files.v);
	if (ret == 0 && io_rmdir(io, dir) < 0 && errno != ENOENT)
		ret = -1;
	return ret;
}

static int has_children(struct store *store, const char *domain, const char *user, const char *name,
			bool *children_r, const char **error_r)
{
	char **names;
	size_t len = strlen(name);

	if (mailbox_list_folders(store, domain, user, &names, error_r) < 0)
		return -1;
	*children_r = false;
	for (char **p = names; *p != NULL; p++) {
		if (strncmp(*p, name, len) == 0 && (*p)[len] == '/')
			*children_r = true;
	}
	mailbox_names_free(&names);
	return 0;
}

int mailbox_delete(struct store *store, const char *domain, const char *user, const char *name,
		   const char **error_r)
{
	bool children;
	char *path;
	int ret;

	if (maildir_folder_is_inbox(name) || !store_folder_name_valid(name)) {
		*error_r = maildir_folder_is_inbox(name) ? "INBOX cannot be deleted" : "invalid mailbox name";
		errno = EINVAL;
		return -1;
	}
	if (store_folder_exists(store, domain, user, name) != 1) {
		/* a name that only its children keep is \Noselect: not deletable
		   (RFC 3501 6.3.4) */
		if (has_children(store, domain, user, name, &children, error_r) < 0)
			return -1;
		*error_r = children ? "mailbox is not selectable and has children" : "no such mailbox";
		errno = children ? ENOTEMPTY : ENOENT;
		return -1;
	}
	/* the children's directories are siblings (".a.b" next to ".a"): they
	   stay, and "a" lives on as their \Noselect superior until the last
	   of them goes */
	path = maildir_mailbox_path(domain, user, name);
	forget_path(store, path);
	ret = rm_dir(store_io(store), path, 0);
	free(path);
	if (ret < 0) {
		*error_r = "cannot delete the mailbox";
		return ret;
	}
	special_use_forget(store, domain, user, name);
	return 0;
}

/* ---- rename ---- */

static int rename_dir(struct store *store, const char *domain, const char *user,
		      const char *from, const char *to)
{
	char *p_from = maildir_mailbox_path(domain, user, from);
	char *p_to = maildir_mailbox_path(domain, user, to);
	int ret = -1;

	if (p_from != NULL && p_to != NULL) {
		forget_path(store, p_from);
		ret = io_rename(store_io(store), p_from, p_to);
	}
	free(p_from);
	free(p_to);
	return ret;
}

static int copy_small_file(struct mf_io *io, const char *from, const char *to)
{
	char *data;
	size_t len;
	struct io_file *file;
	int ret;

	if (io_read_file(io, from, 1024 * 1024, &data, &len) < 0)
		return errno == ENOENT ? 0 : -1;
	ret = io_open(io, to, IO_O_WRONLY | IO_O_CREAT | IO_O_TRUNC, 0600, &file);
	if (ret == 0) {
		ret = io_write_all(file, data, len);
		if (io_close(&file) < 0)
			ret = -1;
	}
	free(data);
	return ret;
}

static int move_cb(void *ctx, const char *name)
{
	struct names *n = ctx;

	names_add(n, mf_strdup(name));
	return 0;
}

/* RENAME INBOX (RFC 3501 6.3.5): the messages move to the new folder,
 * INBOX stays and is empty. Keyword names go along; UIDs are new. */
static int rename_inbox(struct store *store, const char *domain, const char *user, const char *to,
			const char **error_r)
{
	static const char *const dirs[] = { "new", "cur" };
	struct mf_io *io = store_io(store);
	char *src = maildir_mailbox_path(domain, user, NULL);
	char *dst = maildir_mailbox_path(domain, user, to);
	int ret = mailbox_create(store, domain, user, to, error_r);

	if (ret == 0) {
		char *kf = mf_asprintf("%s/%s", src, MAILBOX_KEYWORDS_FILE);
		char *kt = mf_asprintf("%s/%s", dst, MAILBOX_KEYWORDS_FILE);
		ret = copy_small_file(io, kf, kt);
		free(kf);
		free(kt);
	}
	for (size_t d = 0; d < MF_N_ELEMENTS(dirs) && ret == 0; d++) {
		struct names n = { 0 };
		char *dir = mf_asprintf("%s/%s", src, dirs[d]);
		names_add(&n, NULL);
		n.count = 0;
		ret = io_readdir(io, dir, move_cb, &n);
		for (size_t i = 0; i < n.count && ret == 0; i++) {
			char *a = mf_asprintf("%s/%s", dir, n.v[i]);
			char *b = mf_asprintf("%s/%s/%s", dst, dirs[d], n.v[i]);
			if (io_rename(io, a, b) < 0 && errno != ENOENT)
				ret = -1;
			free(a);
			free(b);
		}
		mailbox_names_free(&n.v);
		free(dir);
	}
	if (ret < 0)
		*error_r = "cannot move the INBOX messages";
	free(src);
	free(dst);
	return ret;
}

int mailbox_rename(struct store *store, const char *domain, const char *user, const char *from,
		   const char *to, const char **error_r)
{
	char **names;
	size_t len = strlen(from);
	int ret = 0;

	if (maildir_folder_is_inbox(from) && !maildir_folder_is_inbox(to) && store_folder_name_valid(to)) {
		if (store_folder_exists(store, domain, user, to) == 1) {
			*error_r = "target mailbox exists";
			errno = EEXIST;
			return -1;
		}
		return rename_inbox(store, domain, user, to, error_r);
	}
	if (maildir_folder_is_inbox(from) || maildir_folder_is_inbox(to) ||
	    !store_folder_name_valid(from) || !store_folder_name_valid(to)) {
		*error_r = "invalid mailbox name";
		errno = EINVAL;
		return -1;
	}
	/* a \Noselect name (only its children exist) is renamed by renaming
	   the children */
	bool from_exists = store_folder_exists(store, domain, user, from) == 1;
	bool children = false;
	if (!from_exists && (has_children(store, domain, user, from, &children, error_r) < 0 ||
			     !children)) {
		*error_r = "no such mailbox";
		errno = ENOENT;
		return -1;
	}
	if (store_folder_exists(store, domain, user, to) == 1) {
		*error_r = "target mailbox exists";
		errno = EEXIST;
		return -1;
	}
	if (mailbox_list_folders(store, domain, user, &names, error_r) < 0)
		return -1;
	/* superiors of the target, then the folder and its children */
	char *parent = mf_strdup(to);
	char *slash = strrchr(parent, '/');
	if (slash != NULL) {
		*slash = '\0';
		if (store_folder_exists(store, domain, user, parent) != 1)
			ret = mailbox_create(store, domain, user, parent, error_r);
	}
	free(parent);
	if (ret == 0 && from_exists)
		ret = rename_dir(store, domain, user, from, to);
	for (char **p = names; *p != NULL && ret == 0; p++) {
		if (strncmp(*p, from, len) != 0 || (*p)[len] != '/')
			continue;
		char *child_to = mf_asprintf("%s%s", to, *p + len);
		ret = rename_dir(store, domain, user, *p, child_to);
		free(child_to);
	}
	mailbox_names_free(&names);
	if (ret < 0)
		*error_r = "cannot rename the mailbox";
	else
		(void)special_use_edit(store, domain, user, from, true, to, NULL);
	return ret;
}

/* ---- subscriptions ---- */

static char *subs_path(const char *domain, const char *user)
{
	char *root = user_root(domain, user);
	char *path = root == NULL ? NULL : mf_asprintf("%s/%s", root, MAILBOX_SUBSCRIPTIONS_FILE);

	free(root);
	return path;
}

int mailbox_subscriptions_get(struct store *store, const char *domain, const char *user,
			      char ***names_r, const char **error_r)
{
	char *path = subs_path(domain, user);
	struct names n = { 0 };
	char *data, *save = NULL;
	size_t len;

	if (path == NULL) {
		*error_r = "invalid user name";
		return -1;
	}
	names_add(&n, NULL);
	n.count = 0;
	int ret = io_read_file(store_io(store), path, 1024 * 1024, &data, &len);
	free(path);
	if (ret < 0) {
		if (errno == ENOENT) {
			*names_r = n.v;
			return 0;
		}
		mailbox_names_free(&n.v);
		*error_r = "cannot read subscriptions";
		return -1;
	}
	for (char *line = strtok_r(data, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] != '\0' && n.count < FOLDERS_MAX)
			names_add(&n, mf_strdup(line));
	}
	free(data);
	*names_r = n.v;
	return 0;
}

static int subs_write(struct store *store, const char *domain, const char *user, char **names)
{
	char *path = subs_path(domain, user);
	int ret = lines_write(store, path, names);

	free(path);
	return ret;
}

int mailbox_subscription_set(struct store *store, const char *domain, const char *user,
			     const char *name, bool subscribe, const char **error_r)
{
	char **names;
	size_t n = 0, found = SIZE_MAX;

	if (store_folder_create(store, domain, user, NULL) < 0 ||
	    mailbox_subscriptions_get(store, domain, user, &names, error_r) < 0) {
		*error_r = "cannot read subscriptions";
		return -1;
	}
	for (; names[n] != NULL; n++) {
		if (strcmp(names[n], name) == 0)
			found = n;
	}
	if ((found != SIZE_MAX) == subscribe) {
		mailbox_names_free(&names);
		return 0;
	}
	if (subscribe) {
		names = mf_realloc(names, (n + 2) * sizeof(*names));
		names[n] = mf_strdup(name);
		names[n + 1] = NULL;
	} else {
		free(names[found]);
		memmove(&names[found], &names[found + 1], (n - found) * sizeof(*names));
	}
	int ret = subs_write(store, domain, user, names);
	mailbox_names_free(&names);
	if (ret < 0)
		*error_r = "cannot write subscriptions";
	return ret;
}

/* ---- first login ---- */

int mailbox_user_init(struct store *store, const char *domain, const char *user,
		      const char *const *folders, unsigned count, const char **error_r)
{
	char *path = subs_path(domain, user);
	struct io_stat st;
	int ret = 0;

	if (path == NULL) {
		*error_r = "invalid user name";
		return -1;
	}
	if (store_folder_create(store, domain, user, NULL) < 0) {
		free(path);
		*error_r = "cannot create the Maildir";
		return -1;
	}
	if (io_stat(store_io(store), path, &st) == 0 || errno != ENOENT) {
		free(path);
		return 0;
	}
	free(path);
	char **names = mf_calloc(count + 2, sizeof(*names));
	names[0] = mf_strdup("INBOX");
	for (unsigned i = 0; i < count && ret == 0; i++) {
		names[i + 1] = mf_strdup(folders[i]);
		if (store_folder_exists(store, domain, user, folders[i]) != 1 &&
		    store_folder_create(store, domain, user, folders[i]) < 0)
			ret = -1;
	}
	if (ret == 0)
		ret = subs_write(store, domain, user, names);
	mailbox_names_free(&names);
	if (ret < 0)
		*error_r = "cannot create the default folders";
	return ret;
}
