/* nasbench-mount.c: compares a kernel NFS mount's options with the
 * recommended set of packaging/nas-mount-options (rule syntax described
 * there). The file is built into the binary so that the tool, the man page
 * and the fstab example share one source; --mount-options FILE overrides it. */
#include "store/nasbench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The assembler embeds the file; make runs from the tree's top directory. */
__asm__(".pushsection .rodata\n"
	".global nb_mount_rules_text\n"
	".hidden nb_mount_rules_text\n"
	".type nb_mount_rules_text, @object\n"
	"nb_mount_rules_text:\n"
	".incbin \"packaging/nas-mount-options\"\n"
	".byte 0\n"
	".popsection\n");
extern const char nb_mount_rules_text[];

const char *nb_mount_rules_builtin(void)
{
	return nb_mount_rules_text;
}

#define RULE_WORDS_MAX 64

struct rule {
	bool forbid;
	char *spec;          /* as written: "timeo>=600" */
	char *name;          /* "timeo" */
	char op;             /* 0 flag, '=' one of, '>' at least, '<' at most */
	const char *value;   /* after the operator */
	const char *deflt;   /* default=, or NULL */
	const char *implied_by;
	const char *unless;  /* the default does not hold when one of these is set */
	enum nb_verdict severity;
	const char *why;
};

/* Finds name in "a,b=c,d": returns the value ("" for a flag) or NULL. */
static char *option_get(const char *options, const char *name)
{
	size_t nlen = strlen(name);

	for (const char *p = options; *p != '\0';) {
		size_t len = strcspn(p, ",");
		if (len >= nlen && strncmp(p, name, nlen) == 0 && (len == nlen || p[nlen] == '='))
			return len == nlen ? mf_strdup("") : mf_strndup(p + nlen + 1, len - nlen - 1);
		p += len;
		if (*p == ',')
			p++;
	}
	return NULL;
}

static bool value_in(const char *value, const char *alternatives)
{
	size_t vlen = strlen(value);

	for (const char *p = alternatives; *p != '\0';) {
		size_t len = strcspn(p, "|");
		if (len == vlen && strncmp(p, value, len) == 0)
			return true;
		p += len;
		if (*p == '|')
			p++;
	}
	return false;
}

static int parse_spec(struct rule *r, char *spec)
{
	char *p = spec + strcspn(spec, "=<>");

	r->spec = mf_strdup(spec);
	r->op = 0;
	r->value = "";
	if (*p == '>' || *p == '<') {
		if (p[1] != '=')
			return -1;
		r->op = *p;
		*p = '\0';
		r->value = p + 2;
	} else if (*p == '=') {
		r->op = '=';
		*p = '\0';
		r->value = p + 1;
	}
	r->name = spec;
	return r->name[0] == '\0' || (r->op != 0 && r->value[0] == '\0') ? -1 : 0;
}

/* Splits one rules line in place; 0 with r filled, 1 for a blank line, -1 bad. */
static int parse_rule(char *line, struct rule *r)
{
	char *save = NULL, *w;

	memset(r, 0, sizeof(*r));
	line[strcspn(line, "#\r\n")] = '\0';
	w = strtok_r(line, " \t", &save);
	if (w == NULL)
		return 1;
	if (strcmp(w, "require") != 0 && strcmp(w, "forbid") != 0)
		return -1;
	r->forbid = w[0] == 'f';
	if ((w = strtok_r(NULL, " \t", &save)) == NULL || parse_spec(r, w) < 0)
		return -1;
	while ((w = strtok_r(NULL, " \t", &save)) != NULL) {
		if (strncmp(w, "default=", 8) == 0)
			r->deflt = w + 8;
		else if (strncmp(w, "implied-by=", 11) == 0)
			r->implied_by = w + 11;
		else if (strncmp(w, "unless=", 7) == 0)
			r->unless = w + 7;
		else
			break;
	}
	if (w == NULL)
		return -1;
	if (strcmp(w, "FAIL") == 0)
		r->severity = NB_FAIL;
	else if (strcmp(w, "WARN") == 0)
		r->severity = NB_WARN;
	else if (strcmp(w, "INFO") == 0)
		r->severity = NB_INFO;
	else
		return -1;
	r->why = save != NULL ? save + strspn(save, " \t") : "";
	return 0;
}

static bool rule_met(const struct rule *r, const char *value)
{
	if (r->op == 0)
		return r->forbid ? value == NULL : value != NULL;
	if (value == NULL)
		return r->forbid;
	if (r->op == '=')
		return value_in(value, r->value) != r->forbid;
	char *end;
	double have = strtod(value, &end), want = strtod(r->value, NULL);
	if (end == value || !isfinite(have))
		return false;
	return r->op == '>' ? have >= want : have <= want;
}

/* Is any of the '|'-separated options set? */
static bool any_set(const char *options, const char *alternatives)
{
	bool found = false;
	char *copy = mf_strdup(alternatives), *save = NULL;

	for (char *o = strtok_r(copy, "|", &save); o != NULL && !found; o = strtok_r(NULL, "|", &save)) {
		char *v = option_get(options, o);
		found = v != NULL;
		free(v);
	}
	free(copy);
	return found;
}

static void evaluate_rule(struct nb_report *report, const struct rule *r, const char *options)
{
	char *value = option_get(options, r->name);
	bool from_default = false;
	char *implied = r->implied_by == NULL ? NULL : option_get(options, r->implied_by);

	if (value == NULL && r->deflt != NULL && strcmp(r->deflt, "no") != 0 &&
	    (r->unless == NULL || !any_set(options, r->unless))) {
		value = mf_strdup(r->op == 0 ? "" : r->deflt);
		from_default = true;
	}
	bool met = rule_met(r, value) || (!r->forbid && implied != NULL);
	char *figure = value == NULL ? mf_strdup("not set") :
		value[0] == '\0' ? mf_asprintf("%s%s", r->name, from_default ? " (kernel default)" : "") :
		mf_asprintf("%s=%s%s", r->name, value, from_default ? " (kernel default)" : "");
	if (value == NULL && implied != NULL)
		mf_free(&figure), figure = mf_asprintf("implied by %s", r->implied_by);
	char *name = mf_asprintf("mount.%s", r->name);
	char *threshold = mf_asprintf("%s %s", r->forbid ? "forbid" : "require", r->spec);
	nb_report_add(report, name, met ? NB_PASS : r->severity, NAN, NULL, threshold,
		      met ? NULL : r->why, "%s", figure);
	free(name);
	free(threshold);
	free(figure);
	free(value);
	free(implied);
}

int nb_mount_evaluate(struct nb_report *report, const char *rules, const char *options,
		      const char **error_r)
{
	char *copy = mf_strdup(rules), *save = NULL;
	int ret = 0;

	for (char *line = strtok_r(copy, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		struct rule r;
		int pr = parse_rule(line, &r);
		if (pr < 0) {
			*error_r = "bad rule line in the mount options file";
			ret = -1;
		} else if (pr == 0) {
			evaluate_rule(report, &r, options);
		}
		free(r.spec);
		if (ret < 0)
			break;
	}
	free(copy);
	return ret;
}

static void check_local_fs(struct nb_ctx *ctx, const struct nb_mount *mnt)
{
	bool ram = strcmp(mnt->fstype, "tmpfs") == 0 || strcmp(mnt->fstype, "ramfs") == 0;

	nb_report_add(ctx->report, "mount.options", ram ? NB_WARN : NB_INFO, NAN, NULL,
		      "applies to NFS mounts",
		      ram ? "a RAM file system keeps nothing across a reboot: never a mail store" :
		      "not applicable: the target is on a local disk, not an NFS mount",
		      "local %s on %s", mnt->fstype, mnt->mount_point);
}

static char *load_rules(struct nb_ctx *ctx, const char **error_r)
{
	char *data = NULL;
	size_t len;
	FILE *f;

	if (ctx->opt.mount_rules_path == NULL)
		return mf_strdup(nb_mount_rules_builtin());
	f = fopen(ctx->opt.mount_rules_path, "r");
	if (f == NULL) {
		*error_r = "cannot read the --mount-options file";
		return NULL;
	}
	data = mf_malloc(65536);
	len = fread(data, 1, 65535, f);
	data[len] = '\0';
	fclose(f);
	return data;
}

void nb_check_mount(struct nb_ctx *ctx)
{
	struct nb_mount mnt;
	const char *error;

	if (ctx->is_nfs) {
		nb_report_add(ctx->report, "mount.options", NB_INFO, NAN, NULL,
			      "applies to kernel NFS mounts",
			      "not applicable: libnfs is a userspace client without mount options; "
			      "its directory cache is off (dircache=0) unless the URL sets it",
			      "libnfs (%s)", "no kernel mount");
		return;
	}
	if (nb_mount_find(ctx->opt.mountinfo_path, ctx->local_root, &mnt, &error) < 0) {
		nb_report_add(ctx->report, "mount.options", NB_WARN, NAN, NULL, "-", error,
			      "unknown mount");
		return;
	}
	if (strncmp(mnt.fstype, "nfs", 3) != 0) {
		check_local_fs(ctx, &mnt);
		nb_mount_free(&mnt);
		return;
	}
	nb_report_add(ctx->report, "mount.options", NB_INFO, NAN, NULL, "packaging/nas-mount-options",
		      NULL, "%s %s on %s", mnt.fstype, mnt.source, mnt.mount_point);
	char *rules = load_rules(ctx, &error);
	if (rules == NULL || nb_mount_evaluate(ctx->report, rules, mnt.options, &error) < 0)
		nb_report_add(ctx->report, "mount.rules", NB_WARN, NAN, NULL, "-", error,
			      "rules not checked");
	free(rules);
	nb_mount_free(&mnt);
}
