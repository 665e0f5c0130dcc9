/* log.c: see log.h. The level is process-wide configuration set once in main
 * before threads start, then only read. */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_LEVEL_INFO;
static bool syslog_prefix;

static const char *const level_names[] = { "debug", "info", "warn", "error" };
static const char *const level_prefix[] = { "<7>", "<6>", "<4>", "<3>" };

int log_set_level_name(const char *name)
{
	for (size_t i = 0; i < MF_N_ELEMENTS(level_names); i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			min_level = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void log_set_level(enum log_level level) { min_level = level; }
enum log_level log_get_level(void) { return min_level; }
void log_set_syslog_prefix(bool enable) { syslog_prefix = enable; }

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[2048];
	size_t pos = 0;
	va_list ap;
	int n;

	if (level < min_level)
		return;
	if (syslog_prefix) {
		n = snprintf(line, sizeof(line), "%s%s: ", level_prefix[level], level_names[level]);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: ",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
	}
	pos = n > 0 ? (size_t)n : 0;
	va_start(ap, fmt);
	n = vsnprintf(line + pos, sizeof(line) - pos - 1, fmt, ap);
	va_end(ap);
	if (n > 0)
		pos += MF_MIN((size_t)n, sizeof(line) - pos - 2);
	/* Control characters from peers must not forge log lines. */
	for (size_t i = 0; i < pos; i++) {
		if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
			line[i] = '?';
	}
	line[pos++] = '\n';
	ssize_t MF_UNUSED w = write(STDERR_FILENO, line, pos);
}
