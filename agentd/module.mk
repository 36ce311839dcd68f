# agentd/: the daemon and agentctl. Every agentd/*.c but main.c and
# agentctl.c goes into libagentd.a, which the unit tests link too.
AGENTD_LIB_SRCS := $(filter-out agentd/main.c agentd/agentctl.c,$(wildcard agentd/*.c))
AGENTD_LIB := $(BUILD)/agentd/libagentd.a
AGENTD := $(BUILD)/bin/agentd
AGENTCTL := $(BUILD)/bin/agentctl
AGENTD_LIBS = $(PKG_LIBS) -lpthread -lm

$(AGENTD_LIB): $(AGENTD_LIB_SRCS:%.c=$(BUILD)/%.o)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

ifneq ($(wildcard agentd/main.c),)
all: $(AGENTD)
$(AGENTD): $(BUILD)/agentd/main.o $(AGENTD_LIB) $(PROTO_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(AGENTD_LIBS)
endif

ifneq ($(wildcard agentd/agentctl.c),)
all: $(AGENTCTL)
$(AGENTCTL): $(BUILD)/agentd/agentctl.o $(AGENTD_LIB) $(PROTO_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(AGENTD_LIBS)
endif

install-agentd: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/agentd $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(AGENTD) $(DESTDIR)$(SBINDIR)/agentd
	install -m 0755 $(AGENTCTL) $(DESTDIR)$(BINDIR)/agentctl
	install -m 0644 conf/agentd.conf $(DESTDIR)$(SYSCONFDIR)/agentd/agentd.conf
	for m in agentd/*.8; do [ -f "$$m" ] && install -m 0644 $$m $(DESTDIR)$(MANDIR)/man8/; done; true

uninstall-agentd:
	rm -f $(DESTDIR)$(SBINDIR)/agentd $(DESTDIR)$(BINDIR)/agentctl $(DESTDIR)$(MANDIR)/man8/agentd.8 $(DESTDIR)$(MANDIR)/man8/agentctl.8
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/agentd/agentd.conf"

install: install-agentd
uninstall: uninstall-agentd
