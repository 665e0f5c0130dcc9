/* nasbench-capacity.c: turns the mail workload's measured file-system calls
 * per second into how many users the NAS carries, from per-user I/O figures
 * of mail servers (0.39 IOPS/user on the system volume, 0.2 on the mail
 * store, 0.1 on the archive), and the provisioning calculator: mail store =
 * users x quota + 20% headroom, archive per year = users x daily mails x
 * average size x 365 x 0.5 (compression). Also the free-space check. */
#include "store/nasbench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define STORE_HEADROOM 1.2
#define ARCHIVE_COMPRESSION 0.5

int nb_parse_size(const char *s, uint64_t *bytes_r)
{
	char *end;
	double v = strtod(s, &end), mult = 1;

	if (end == s || !isfinite(v) || v < 0)
		return -1;
	switch (*end) {
	case 'k': case 'K': mult = 1024.0; end++; break;
	case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
	case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
	case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
	default: break;
	}
	if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
		end += strlen(end);
	if (*end != '\0' || v * mult > 9.0e18)
		return -1;
	*bytes_r = (uint64_t)(v * mult);
	return 0;
}

const char *nb_format_bytes(double bytes, char *buf, size_t size)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	unsigned u = 0;

	while (bytes >= 1024 && u + 1 < MF_N_ELEMENTS(units)) {
		bytes /= 1024;
		u++;
	}
	snprintf(buf, size, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
	return buf;
}

void nb_provision_compute(const struct nb_provision *in, struct nb_provision_result *out)
{
	double users = (double)in->users;

	out->store_bytes = users * (double)in->quota_bytes * STORE_HEADROOM;
	out->archive_year_bytes = users * (double)in->daily_mails * (double)in->avg_size_bytes *
				  365.0 * ARCHIVE_COMPRESSION;
	out->archive_total_bytes = out->archive_year_bytes * in->archive_years;
	out->iops_store = users * NB_IOPS_PER_USER_STORE;
	out->iops_system = users * NB_IOPS_PER_USER_SYSTEM;
	out->iops_archive = users * NB_IOPS_PER_USER_ARCHIVE;
}

void nb_provision_report(struct nb_report *report, const struct nb_provision *in)
{
	struct nb_provision_result r;
	char a[32], b[32], c[32];

	nb_provision_compute(in, &r);
	struct nb_check *ck = nb_report_add(report, "provision.mail-store", NB_INFO, r.store_bytes, "B",
		"users x quota x 1.2", NULL, "%s (%llu users x %s quota + 20%%)",
		nb_format_bytes(r.store_bytes, a, sizeof(a)), (unsigned long long)in->users,
		nb_format_bytes((double)in->quota_bytes, b, sizeof(b)));
	char *extra = mf_asprintf("\"iops\":%.1f", r.iops_store);
	nb_check_set_extra(ck, extra);
	free(extra);
	nb_report_add(report, "provision.archive-per-year", NB_INFO, r.archive_year_bytes, "B",
		"users x daily x size x 365 x 0.5", NULL, "%s (%llu mails/day of %s, compressed to half)",
		nb_format_bytes(r.archive_year_bytes, a, sizeof(a)),
		(unsigned long long)in->daily_mails, nb_format_bytes((double)in->avg_size_bytes, b, sizeof(b)));
	nb_report_add(report, "provision.archive-total", NB_INFO, r.archive_total_bytes, "B",
		"per year x years", NULL, "%s for %u year%s",
		nb_format_bytes(r.archive_total_bytes, c, sizeof(c)), in->archive_years,
		in->archive_years == 1 ? "" : "s");
	nb_report_add(report, "provision.iops", NB_INFO, r.iops_store, "IOPS",
		"0.2 / 0.39 / 0.1 per user", NULL, "mail store %.0f, system volume %.0f, archive %.0f IOPS",
		r.iops_store, r.iops_system, r.iops_archive);
}

void nb_check_capacity(struct nb_ctx *ctx)
{
	double iops = ctx->mail_iops_ok;

	if (!ctx->mail_measured)
		return;
	double users = iops / NB_IOPS_PER_USER_STORE;
	enum nb_verdict v = iops <= 0 ? NB_FAIL : ctx->opt.plan_users == 0 ? NB_INFO :
		users >= (double)ctx->opt.plan_users ? NB_PASS : NB_FAIL;
	char *thr = ctx->opt.plan_users == 0 ? mf_strdup("0.2 IOPS per user") :
		mf_asprintf(">= %llu users planned", (unsigned long long)ctx->opt.plan_users);
	if (iops <= 0)
		nb_report_add(ctx->report, "capacity.mail-store-users", v, 0, "users", thr,
			      "no concurrency level kept every operation's p99 within its threshold",
			      "0 users");
	else
		nb_report_add(ctx->report, "capacity.mail-store-users", v, users, "users", thr,
			      v == NB_FAIL ? "this NAS is too slow for the planned users as a mail store" : NULL,
			      "~%.0f users (%.0f calls/s with %u threads / 0.2)", users, iops,
			      ctx->mail_level_ok);
	nb_report_add(ctx->report, "capacity.system-volume-users", NB_INFO,
		iops / NB_IOPS_PER_USER_SYSTEM, "users", "0.39 IOPS per user", NULL,
		"~%.0f users if it held the system volume", iops / NB_IOPS_PER_USER_SYSTEM);
	nb_report_add(ctx->report, "capacity.archive-users", NB_INFO,
		iops / NB_IOPS_PER_USER_ARCHIVE, "users", "0.1 IOPS per user", NULL,
		"~%.0f users if it held the archive", iops / NB_IOPS_PER_USER_ARCHIVE);
	free(thr);
}

/* What the run will write at most, with a margin. */
static uint64_t space_needed(const struct nb_options *opt)
{
	uint64_t need = 4ull << 20;
	unsigned max_level = 0;

	for (unsigned i = 0; i < opt->level_count; i++)
		max_level = MF_MAX(max_level, opt->levels[i]);
	if (opt->run_func)
		need += 2ull << 20;
	if (opt->run_seq)
		need += opt->seq_size;
	if (opt->run_mail)
		need += (uint64_t)opt->pool_messages * 65536 + (uint64_t)opt->readdir_entries * 4096 +
			(uint64_t)max_level * 33 * 65536;
	return need;
}

void nb_check_target(struct nb_ctx *ctx)
{
	struct io_statvfs st;
	uint64_t need = space_needed(&ctx->opt);
	char a[32], b[32];

	if (io_statvfs(ctx->io, ctx->scratch, &st) < 0) {
		char *note = nb_errstr("statvfs", errno);
		nb_report_add(ctx->report, "target.free-space", NB_WARN, NAN, NULL, "-", note, "unknown");
		free(note);
		return;
	}
	char *thr = mf_asprintf(">= %s", nb_format_bytes((double)need, b, sizeof(b)));
	if (st.free_bytes < need) {
		char *msg = mf_asprintf("not enough free space on the target: %s free, %s needed",
					nb_format_bytes((double)st.free_bytes, a, sizeof(a)), b);
		nb_report_add(ctx->report, "target.free-space", NB_FAIL, (double)st.free_bytes, "B",
			      thr, msg, "%s free", a);
		nb_fatal_set(ctx, msg);
		free(msg);
	} else {
		nb_report_add(ctx->report, "target.free-space", NB_PASS, (double)st.free_bytes, "B",
			      thr, NULL, "%s free of %s",
			      nb_format_bytes((double)st.free_bytes, a, sizeof(a)),
			      nb_format_bytes((double)st.total_bytes, b, sizeof(b)));
	}
	free(thr);
}
