# libagent/: the C shim. libagent.so (SONAME libagent.so.1, only agent_*
# exported: everything is compiled with -fvisibility=hidden and the public
# header marks the API), libagent.a (the same objects plus the codec, also
# hidden), libagent.pc, and the agent-log command linked with libagent.a.
LIBAGENT_SRCS := libagent/agent.c libagent/context.c libagent/crash.c
LIBAGENT_OBJS := $(LIBAGENT_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/libagent/agent_proto.o
LIBAGENT_A := $(BUILD)/libagent/libagent.a
LIBAGENT_SO := $(BUILD)/libagent/libagent.so
LIBAGENT_SONAME := libagent.so.$(SOVERSION)
LIBAGENT_SO_REAL := $(BUILD)/libagent/libagent.so.$(VERSION)
LIBAGENT_PC := $(BUILD)/libagent/libagent.pc
AGENT_LOG := $(BUILD)/bin/agent-log
LIBAGENT_LIBS := -pthread

all: $(LIBAGENT_SO) $(LIBAGENT_A) $(LIBAGENT_PC) $(AGENT_LOG)

$(LIBAGENT_OBJS): CFLAGS += -fvisibility=hidden

# The codec again, hidden, for the library (agentd links $(PROTO_OBJ)).
$(BUILD)/libagent/agent_proto.o: proto/agent_proto.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(LIBAGENT_A): $(LIBAGENT_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBAGENT_SO_REAL): $(LIBAGENT_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -Wl,-soname,$(LIBAGENT_SONAME) -o $@ $^ $(LIBAGENT_LIBS)

$(BUILD)/libagent/$(LIBAGENT_SONAME): $(LIBAGENT_SO_REAL)
	ln -sf $(notdir $<) $@

$(LIBAGENT_SO): $(BUILD)/libagent/$(LIBAGENT_SONAME)
	ln -sf $(notdir $<) $@

# Generated again at install time, so that PREFIX/LIBDIR given to
# `make install` land in it even when the build ran with other values.
LIBAGENT_PC_SED = sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' libagent/libagent.pc.in

$(LIBAGENT_PC): libagent/libagent.pc.in
	@mkdir -p $(dir $@)
	$(LIBAGENT_PC_SED) > $@

$(AGENT_LOG): $(BUILD)/libagent/agent-log.o $(LIBAGENT_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBAGENT_LIBS)

.PHONY: install-libagent uninstall-libagent
install-libagent: $(LIBAGENT_SO) $(LIBAGENT_A) $(LIBAGENT_PC) $(AGENT_LOG)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3
	install -m 0755 $(LIBAGENT_SO_REAL) $(DESTDIR)$(LIBDIR)/
	ln -sf libagent.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(LIBAGENT_SONAME)
	ln -sf $(LIBAGENT_SONAME) $(DESTDIR)$(LIBDIR)/libagent.so
	install -m 0644 $(LIBAGENT_A) $(DESTDIR)$(LIBDIR)/
	install -m 0644 libagent/include/agent.h $(DESTDIR)$(INCLUDEDIR)/
	$(LIBAGENT_PC_SED) > $(DESTDIR)$(LIBDIR)/pkgconfig/libagent.pc
	chmod 0644 $(DESTDIR)$(LIBDIR)/pkgconfig/libagent.pc
	install -m 0755 $(AGENT_LOG) $(DESTDIR)$(BINDIR)/
	install -m 0644 libagent/agent-log.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 libagent/libagent.3 $(DESTDIR)$(MANDIR)/man3/

uninstall-libagent:
	rm -f $(DESTDIR)$(LIBDIR)/libagent.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(LIBAGENT_SONAME) \
		$(DESTDIR)$(LIBDIR)/libagent.so $(DESTDIR)$(LIBDIR)/libagent.a \
		$(DESTDIR)$(INCLUDEDIR)/agent.h $(DESTDIR)$(LIBDIR)/pkgconfig/libagent.pc \
		$(DESTDIR)$(BINDIR)/agent-log $(DESTDIR)$(MANDIR)/man1/agent-log.1 \
		$(DESTDIR)$(MANDIR)/man3/libagent.3

install: install-libagent
uninstall: uninstall-libagent
