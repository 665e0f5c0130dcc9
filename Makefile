# mailfleet build. `make` builds the binaries into build/; `make test` builds
# everything again with AddressSanitizer + UndefinedBehaviorSanitizer into
# build/asan/ and runs unit, fuzz-smoke and integration tests; `make run`
# starts one node on the embedded default.

ifeq ($(origin CC),default)
CC := gcc
endif
CLANG ?= clang
PYTHON ?= /usr/bin/python3
BUILD ?= build
SAN ?=
NPROC := $(shell nproc 2>/dev/null || echo 2)

PKGS := openssl libnfs libconfig liblz4 libsystemd zlib
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS_COMMON := -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow \
	-Wno-unused-parameter -I. -g -MMD -MP
ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined
OPT := -O1 $(SANFLAGS) -fno-sanitize-recover=all -fno-omit-frame-pointer
else
OPT := -O2
endif
CFLAGS += $(CFLAGS_COMMON) $(OPT) $(PKG_CFLAGS)
LDLIBS += $(PKG_LIBS) -lcrypt -lpthread -lm
LDFLAGS += $(SANFLAGS)

MODULES := lib store cluster frontend lmtpd imapd pop3d lb-health
MAIN_SRCS := frontend/main.c cluster/mailfleetctl.c store/nasbench.c
LIB_SRCS := $(filter-out $(MAIN_SRCS),$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_SRCS := $(wildcard tests/unit/test-*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tools/%)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)

BINS := $(BUILD)/mailfleetd $(BUILD)/mailfleetctl \
	$(if $(wildcard store/nasbench.c),$(BUILD)/mailfleet-nasbench)

.SECONDARY:
.PHONY: all deps run test unit fuzz fuzz-smoke integration bench bench-lmtp clean
all: $(BINS)

deps:
	@sh packaging/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libmailfleet.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/mailfleetd: $(BUILD)/obj/frontend/main.o $(BUILD)/libmailfleet.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/mailfleetctl: $(BUILD)/obj/cluster/mailfleetctl.o $(BUILD)/libmailfleet.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/mailfleet-nasbench: $(BUILD)/obj/store/nasbench.o $(BUILD)/libmailfleet.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# nasbench-mount.c embeds packaging/nas-mount-options with .incbin.
$(BUILD)/obj/store/nasbench-mount.o build/fuzz/obj/store/nasbench-mount.o: packaging/nas-mount-options

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/libmailfleet.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/tools/%: $(BUILD)/obj/tests/tools/%.o $(BUILD)/libmailfleet.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit-bins: $(UNIT_BINS) $(TOOL_BINS)

# libFuzzer targets: clang, its own object set.
FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -I. -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer-no-link,address,undefined $(PKG_CFLAGS)
FUZZ_OBJS := $(LIB_SRCS:%.c=build/fuzz/obj/%.o)
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -c $< -o $@
build/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJS)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lcrypt -lpthread -lm
fuzz: deps $(FUZZ_BINS)

run: deps all
	$(BUILD)/mailfleetd

# The whole suite: sanitizer build, then pytest drives unit binaries, short
# fuzz runs over the seed corpora, and the integration tests with real clients.
test: deps
	$(MAKE) -j$(NPROC) BUILD=build/asan SAN=1 all unit-bins
	# the optimized build too: tests/test_imap_idle.py measures its memory
	$(MAKE) -j$(NPROC) all
	$(MAKE) -j$(NPROC) fuzz
	MF_BUILD=build/asan $(PYTHON) -m pytest -q -p no:cacheprovider tests

# LMTP delivery benchmark (normal -O2 build): mailfleet vs Dovecot vs the disk,
# on local disk and over libnfs. Options: make bench-lmtp BENCH_ARGS="--quick".
bench: bench-lmtp bench-pop3 bench-imap
bench-lmtp: deps all $(BUILD)/tools/lmtpload $(BUILD)/tools/physlimit
	$(PYTHON) tests/bench/bench_lmtp.py --build $(BUILD) $(BENCH_ARGS)

# POP3 benchmark: mailfleet vs Dovecot's pop3 (RETR everything of 5,000
# messages; login + UIDL of 50,000). Options: BENCH_ARGS="--quick".
.PHONY: bench-pop3
bench-pop3: deps all
	$(PYTHON) tests/bench/bench_pop3.py --build $(BUILD) $(BENCH_ARGS)

# IMAP benchmark: mailfleet vs Dovecot's imap, mixed workload with 10 and 50
# clients (build/tools/imapload), SELECT / FETCH 1:* on 50,000 messages, memory
# of 10,000 connections in IDLE. Options: BENCH_ARGS="--quick".
.PHONY: bench-imap
bench-imap: deps all $(BUILD)/tools/imapload
	$(PYTHON) tests/bench/bench_imap.py --build $(BUILD) $(BENCH_ARGS)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
