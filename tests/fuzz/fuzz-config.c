/* fuzz-config.c: arbitrary text into config_parse_string(). A parse either
 * fails with an error naming a line, or yields a configuration whose printed
 * form parses again to the same printout. */
#include "frontend/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libconfig 1.5 leaks its string buffer when a syntax error interrupts a
 * quoted string (its scanner's strbuf); that is not ours to fix. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libconfig.so\n";
}

static char *print_config(const struct mf_config *cfg)
{
	char *text = NULL;
	size_t len = 0;
	int fds[2];

	/* config_print writes to an fd; a pipe is enough for a few KiB */
	if (pipe(fds) < 0)
		abort();
	config_print(cfg, fds[1]);
	close(fds[1]);
	text = malloc(65536);
	for (ssize_t n; (n = read(fds[0], text + len, 65535 - len)) > 0;)
		len += (size_t)n;
	close(fds[0]);
	text[len] = '\0';
	return text;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct mf_config cfg, again;
	const char *error = NULL;
	char *text = malloc(size + 1);

	memcpy(text, data, size);
	text[size] = '\0';
	config_defaults(&cfg);
	if (config_parse_string(text, &cfg, &error) < 0) {
		if (error == NULL || strncmp(error, "(string):", 9) != 0)
			abort();
	} else {
		char *first = print_config(&cfg);
		config_defaults(&again);
		if (config_parse_string(first, &again, &error) < 0)
			abort();
		char *second = print_config(&again);
		if (strcmp(first, second) != 0)
			abort();
		free(first);
		free(second);
		config_free(&again);
	}
	config_free(&cfg);
	free(text);
	return 0;
}
