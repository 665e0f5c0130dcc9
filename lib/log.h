/* log.h: leveled logging to stderr, one write(2) per line so lines from
 * several threads never interleave; journald picks stderr up under systemd.
 * Never pass message bodies here (DESIGN invariant 6). */
#ifndef MF_LOG_H
#define MF_LOG_H

#include "lib/lib.h"

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Sets the minimum level written; returns -1 for an unknown name. */
int log_set_level_name(const char *name);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* With systemd journal prefixes ("<3>") when stderr is the journal. */
void log_set_syslog_prefix(bool enable);

void log_msg(enum log_level level, const char *fmt, ...) MF_PRINTF(2, 3);
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
