# systemd/: the service and socket units, sysusers.d, tmpfiles.d and sysctl.d
# files. `make install` puts them under $(DESTDIR): the units in $(UNITDIR),
# the rest as agentd.conf / 60-agentd.conf in their .d directories.
# agentd.service names /usr/sbin/agentd and /etc/agentd/agentd.conf; they are
# rewritten to $(SBINDIR) and $(SYSCONFDIR) on the way.
SYSTEMD_SOCKETS := systemd/agentd.socket systemd/agentd-stream.socket

.PHONY: install-systemd uninstall-systemd

install-systemd:
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCTLDIR)
	sed -e 's|/usr/sbin/agentd|$(SBINDIR)/agentd|g' -e 's|/etc/agentd/|$(SYSCONFDIR)/agentd/|g' \
		systemd/agentd.service > $(DESTDIR)$(UNITDIR)/agentd.service.tmp
	chmod 0644 $(DESTDIR)$(UNITDIR)/agentd.service.tmp
	mv -f $(DESTDIR)$(UNITDIR)/agentd.service.tmp $(DESTDIR)$(UNITDIR)/agentd.service
	install -m 0644 $(SYSTEMD_SOCKETS) $(DESTDIR)$(UNITDIR)/
	install -m 0644 systemd/agentd.sysusers $(DESTDIR)$(SYSUSERSDIR)/agentd.conf
	install -m 0644 systemd/agentd.tmpfiles $(DESTDIR)$(TMPFILESDIR)/agentd.conf
	install -m 0644 systemd/60-agentd.conf $(DESTDIR)$(SYSCTLDIR)/60-agentd.conf
	@if [ -z "$(DESTDIR)" ]; then \
		echo "systemd: now run: systemd-sysusers; systemd-tmpfiles --create agentd.conf;" \
			"sysctl --system; systemctl daemon-reload; systemctl enable --now agentd.socket agentd-stream.socket agentd.service"; \
	fi

uninstall-systemd:
	rm -f $(DESTDIR)$(UNITDIR)/agentd.service $(DESTDIR)$(UNITDIR)/agentd.socket \
		$(DESTDIR)$(UNITDIR)/agentd-stream.socket $(DESTDIR)$(SYSUSERSDIR)/agentd.conf \
		$(DESTDIR)$(TMPFILESDIR)/agentd.conf $(DESTDIR)$(SYSCTLDIR)/60-agentd.conf

install: install-systemd
uninstall: uninstall-systemd
