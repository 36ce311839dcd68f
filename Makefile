# agentd: top-level build. `make` builds everything into $(BUILD)/.
# Each part keeps its rules in its own fragment: proto/module.mk,
# libagent/module.mk, agentd/module.mk, tests/module.mk.

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
SYSCTLDIR ?= $(PREFIX)/lib/sysctl.d

VERSION := 1.0.0
SOVERSION := 1

BUILD ?= build
CC ?= cc
SAN ?=
PKGS := libuv libcurl jansson zlib inih libdeflate
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
	-Wno-unused-parameter -Wvla -Wpointer-arith
OPT ?= -O2 -g
ifeq ($(SAN),1)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDSAN := -fsanitize=address,undefined
endif
CPPFLAGS += -D_GNU_SOURCE -DAGENTD_VERSION=\"$(VERSION)\" -Iproto -Ilibagent/include -Iagentd
CFLAGS += -std=c11 $(WARN) $(OPT) -fPIC -fstack-protector-strong
LDFLAGS += $(LDSAN) -Wl,-z,relro,-z,now

.PHONY: all check unit e2e run install uninstall lint bench fuzz deps clean soak
all:

include proto/module.mk
include libagent/module.mk
include agentd/module.mk
include tests/module.mk
-include systemd/module.mk
-include tests/soak.mk

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP -c -o $@ $<

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

deps:
	@tests/tools/deps.sh

clean:
	rm -rf build build-asan build-fuzz run

lint:
	@tests/tools/lint.sh
