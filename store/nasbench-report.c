/* nasbench-report.c: the result rows of a mailfleet-nasbench run, their
 * rendering as a table or as JSON, the named thresholds, and the progress bar
 * on stderr. */
#include "store/nasbench.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const struct nb_threshold_def nb_threshold_defs[NB_THR_COUNT] = {
	[NB_THR_SEQ_WRITE_S] = { "seq-write-s", 5.0, "s",
		"flushed sequential write, seconds per 256 MiB (FAIL above)" },
	[NB_THR_SEQ_READ_S] = { "seq-read-s", 0.2, "s",
		"read back right after writing, seconds per 256 MiB (WARN above)" },
	[NB_THR_COLD_READ_S] = { "cold-read-s", 5.0, "s",
		"read bypassing the client cache, seconds per 256 MiB (WARN above)" },
	[NB_THR_CLOCK_SKEW_S] = { "clock-skew-s", 1.0, "s",
		"NAS clock against this machine's (FAIL above, WARN above half)" },
	[NB_THR_FSYNC_MS] = { "fsync-ms", 100.0, "ms",
		"fsync of 1 MiB of fresh data (WARN above)" },
	[NB_THR_DELIVER_P99_MS] = { "deliver-p99-ms", 100.0, "ms",
		"p99 of a maildir delivery (FAIL above, WARN above half)" },
	[NB_THR_FLAG_P99_MS] = { "flag-p99-ms", 50.0, "ms",
		"p99 of a flag rename within cur/ (FAIL above, WARN above half)" },
	[NB_THR_READ_P99_MS] = { "read-p99-ms", 50.0, "ms",
		"p99 of reading one message file (FAIL above, WARN above half)" },
	[NB_THR_UNLINK_P99_MS] = { "unlink-p99-ms", 50.0, "ms",
		"p99 of an unlink (FAIL above, WARN above half)" },
	[NB_THR_READDIR_P99_MS] = { "readdir-p99-ms", 2000.0, "ms",
		"p99 of listing the 10,000-entry folder (FAIL above, WARN above half)" },
};

int nb_threshold_parse(double values[NB_THR_COUNT], const char *spec, const char **error_r)
{
	const char *eq = strchr(spec, '=');
	char *end;

	if (eq == NULL) {
		*error_r = "--threshold wants NAME=VALUE";
		return -1;
	}
	for (size_t i = 0; i < NB_THR_COUNT; i++) {
		const char *name = nb_threshold_defs[i].name;
		if (strlen(name) != (size_t)(eq - spec) || strncmp(spec, name, strlen(name)) != 0)
			continue;
		double v = strtod(eq + 1, &end);
		if (end == eq + 1 || *end != '\0' || !isfinite(v) || v <= 0) {
			*error_r = "--threshold VALUE must be a positive number";
			return -1;
		}
		values[i] = v;
		return 0;
	}
	*error_r = "unknown threshold name (see --help for the list)";
	return -1;
}

void nb_report_init(struct nb_report *report)
{
	memset(report, 0, sizeof(*report));
	pthread_mutex_init(&report->lock, NULL);
}

void nb_report_deinit(struct nb_report *report)
{
	for (size_t i = 0; i < report->count; i++) {
		struct nb_check *c = &report->checks[i];
		free(c->name);
		free(c->figure);
		free(c->unit);
		free(c->threshold);
		free(c->note);
		free(c->extra_json);
	}
	free(report->checks);
	pthread_mutex_destroy(&report->lock);
}

static char *dup_or_null(const char *s)
{
	return s == NULL ? NULL : mf_strdup(s);
}

struct nb_check *nb_report_add(struct nb_report *report, const char *name,
			       enum nb_verdict verdict, double value, const char *unit,
			       const char *threshold, const char *note,
			       const char *figure_fmt, ...)
{
	va_list ap;
	char *figure;

	va_start(ap, figure_fmt);
	if (vasprintf(&figure, figure_fmt, ap) < 0)
		figure = mf_strdup("?");
	va_end(ap);

	pthread_mutex_lock(&report->lock);
	if (report->count == report->cap) {
		report->cap = report->cap == 0 ? 32 : report->cap * 2;
		report->checks = mf_realloc(report->checks, report->cap * sizeof(*report->checks));
	}
	struct nb_check *c = &report->checks[report->count++];
	memset(c, 0, sizeof(*c));
	c->name = mf_strdup(name);
	c->verdict = verdict;
	c->figure = figure;
	c->value = value;
	c->unit = mf_strdup(unit == NULL ? "" : unit);
	c->threshold = mf_strdup(threshold == NULL ? "-" : threshold);
	c->note = dup_or_null(note);
	pthread_mutex_unlock(&report->lock);
	return c;
}

void nb_check_set_extra(struct nb_check *check, const char *json_members)
{
	free(check->extra_json);
	check->extra_json = dup_or_null(json_members);
}

const char *nb_verdict_name(enum nb_verdict verdict)
{
	static const char *const names[] = { "PASS", "WARN", "FAIL", "INFO", "SKIP" };
	return names[verdict];
}

size_t nb_report_count(const struct nb_report *report, enum nb_verdict verdict)
{
	size_t n = 0;
	for (size_t i = 0; i < report->count; i++)
		n += report->checks[i].verdict == verdict ? 1 : 0;
	return n;
}

/* --- table --- */

static void print_summary(const struct nb_report *report, const struct nb_run_info *info, FILE *out)
{
	fprintf(out, "\nsummary: %zu PASS, %zu WARN, %zu FAIL, %zu INFO, %zu SKIP -> %s (exit %d)\n",
		nb_report_count(report, NB_PASS), nb_report_count(report, NB_WARN),
		nb_report_count(report, NB_FAIL), nb_report_count(report, NB_INFO),
		nb_report_count(report, NB_SKIP),
		info->interrupted ? "INTERRUPTED" : info->error != NULL ? "ERROR" :
		nb_report_count(report, NB_FAIL) > 0 ? "FAIL" : "PASS", info->exit_status);
	if (info->error != NULL)
		fprintf(out, "error: %s\n", info->error);
}

void nb_report_print_table(const struct nb_report *report, const struct nb_run_info *info, FILE *out)
{
	int wname = 5, wfig = 8;

	for (size_t i = 0; i < report->count; i++) {
		wname = MF_MAX(wname, (int)strlen(report->checks[i].name));
		wfig = MF_MAX(wfig, (int)strlen(report->checks[i].figure));
	}
	wfig = MF_MIN(wfig, 48);
	if (strcmp(info->backend, "none") == 0)
		fprintf(out, "mailfleet-nasbench: provisioning calculator\n\n");
	else
		fprintf(out, "mailfleet-nasbench: target %s (%s backend), scratch %s\n\n",
			info->target, info->backend, info->scratch != NULL ? info->scratch : "-");
	fprintf(out, "%-*s  %-6s  %-*s  %s\n", wname, "CHECK", "RESULT", wfig, "MEASURED", "THRESHOLD");
	for (size_t i = 0; i < report->count; i++) {
		const struct nb_check *c = &report->checks[i];
		fprintf(out, "%-*s  %-6s  %-*s  %s\n", wname, c->name, nb_verdict_name(c->verdict),
			wfig, c->figure, c->threshold);
		if (c->note != NULL)
			fprintf(out, "%-*s    %s\n", wname, "", c->note);
	}
	print_summary(report, info, out);
}

/* --- JSON --- */

void nb_json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

static void print_json_check(const struct nb_check *c, FILE *out)
{
	const char *dot = strchr(c->name, '.');
	char *group = mf_strndup(c->name, dot == NULL ? strlen(c->name) : (size_t)(dot - c->name));

	fputs("{\"name\":", out);
	nb_json_string(out, c->name);
	fputs(",\"group\":", out);
	nb_json_string(out, group);
	fprintf(out, ",\"verdict\":\"%s\",\"figure\":", nb_verdict_name(c->verdict));
	nb_json_string(out, c->figure);
	if (isfinite(c->value))
		fprintf(out, ",\"value\":%.6g", c->value);
	else
		fputs(",\"value\":null", out);
	fputs(",\"unit\":", out);
	nb_json_string(out, c->unit);
	fputs(",\"threshold\":", out);
	nb_json_string(out, c->threshold);
	fputs(",\"note\":", out);
	if (c->note != NULL)
		nb_json_string(out, c->note);
	else
		fputs("null", out);
	if (c->extra_json != NULL)
		fprintf(out, ",%s", c->extra_json);
	fputc('}', out);
	free(group);
}

void nb_report_print_json(const struct nb_report *report, const struct nb_run_info *info, FILE *out)
{
	fputs("{\"tool\":\"mailfleet-nasbench\",\"target\":", out);
	nb_json_string(out, info->target);
	fputs(",\"backend\":", out);
	nb_json_string(out, info->backend);
	fputs(",\"scratch\":", out);
	if (info->scratch != NULL)
		nb_json_string(out, info->scratch);
	else
		fputs("null", out);
	fputs(",\"checks\":[", out);
	for (size_t i = 0; i < report->count; i++) {
		if (i > 0)
			fputc(',', out);
		fputs("\n ", out);
		print_json_check(&report->checks[i], out);
	}
	fprintf(out, "\n],\"summary\":{\"pass\":%zu,\"warn\":%zu,\"fail\":%zu,\"info\":%zu,\"skip\":%zu},",
		nb_report_count(report, NB_PASS), nb_report_count(report, NB_WARN),
		nb_report_count(report, NB_FAIL), nb_report_count(report, NB_INFO),
		nb_report_count(report, NB_SKIP));
	fputs("\"error\":", out);
	if (info->error != NULL)
		nb_json_string(out, info->error);
	else
		fputs("null", out);
	fprintf(out, ",\"interrupted\":%s,\"exit_status\":%d}\n",
		info->interrupted ? "true" : "false", info->exit_status);
}

/* --- progress bar --- */

void nb_progress_init(struct nb_progress *progress, bool enabled)
{
	memset(progress, 0, sizeof(*progress));
	pthread_mutex_init(&progress->lock, NULL);
	progress->enabled = enabled;
}

void nb_progress_update(struct nb_progress *progress, const char *phase, double fraction)
{
	enum { WIDTH = 30 };
	char bar[WIDTH + 1];

	if (!progress->enabled)
		return;
	uint64_t now = mf_now_us();
	pthread_mutex_lock(&progress->lock);
	if (progress->drawn && now - progress->last_draw_us < 100000 && fraction < 1.0) {
		pthread_mutex_unlock(&progress->lock);
		return;
	}
	fraction = fraction < 0 ? 0 : fraction > 1 ? 1 : fraction;
	int filled = (int)(fraction * WIDTH);
	for (int i = 0; i < WIDTH; i++)
		bar[i] = i < filled ? '#' : '.';
	bar[WIDTH] = '\0';
	fprintf(stderr, "\r\033[K%-22.22s [%s] %3d%%", phase, bar, (int)(fraction * 100));
	fflush(stderr);
	progress->drawn = true;
	progress->last_draw_us = now;
	pthread_mutex_unlock(&progress->lock);
}

void nb_progress_clear(struct nb_progress *progress)
{
	if (!progress->enabled)
		return;
	pthread_mutex_lock(&progress->lock);
	if (progress->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		progress->drawn = false;
	}
	pthread_mutex_unlock(&progress->lock);
}
