# tests/soak.mk: long runs, outside `make check`. Include it from the top
# Makefile with `-include tests/soak.mk`.
#
#   make soak                      ten minutes of upstream outage at 10,000
#                                  records/s (tests/e2e/test_soak.py); prints
#                                  the RSS and spool figures
#   make soak SOAK_SECONDS=120     a shorter run
#
# SOAK_RATE, SOAK_QUEUE_MAX_MB, SOAK_SPOOL_MAX_MB and SOAK_RSS_MARGIN_MB
# change the load and the bounds; SOAK_REPORT=FILE keeps the figures as JSON.
SOAK_SECONDS ?= 600

soak: all
	SOAK=1 SOAK_SECONDS=$(SOAK_SECONDS) AGENTD_BUILD=$(abspath $(BUILD)) \
		$(PYTHON) -m pytest -q -s -p no:cacheprovider tests/e2e/test_soak.py $(PYTEST_ARGS)
