# tests/: Check unit suites (tests/unit/test_*.c, one binary each, found by
# wildcard), end-to-end tests (tests/e2e, pytest against the real receiver and
# PostgreSQL), fuzz targets and benchmarks (their own fragments).
PYTHON := /usr/bin/python3
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(BUILD)/tests/%,$(TOOL_SRCS))

all: $(TOOL_BINS)

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(PROTO_OBJ) $(AGENTD_LIB) $(LIBAGENT_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(AGENTD_LIBS)

# the codec's suite compares decoded vectors in their JSON form
$(BUILD)/tests/test_proto: $(BUILD)/proto/vectors/vector_json.o

$(BUILD)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) $(CHECK_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: $(BUILD)/tests/tools/%.o $(LIBAGENT_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(AGENTD_LIBS)

# Run every unit suite; fail if any fails, after running them all.
unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do \
		echo "== $$t"; \
		CK_DEFAULT_TIMEOUT=60 PROTO_VECTORS=proto/vectors $$t || fail=1; \
	done; exit $$fail

e2e: all
	AGENTD_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e $(PYTEST_ARGS)

# The Python and Node.js shims' own suites (their end-to-end tests are in e2e).
.PHONY: shims
shims:
	$(PYTHON) -m pytest -q -p no:cacheprovider libagent/python/tests
	@command -v node >/dev/null 2>&1 || { echo "shims: no node on PATH: the Node.js shim's tests cannot run" \
		"(make deps installs Debian's nodejs)" >&2; exit 1; }
	node --test libagent/node/test/*.test.js

# The whole end-to-end suite again with agentd built with ASan+UBSan (the
# tools stay the normal build), and a part of it under valgrind's memcheck:
# no errors, no definite leaks.
.PHONY: e2e-asan e2e-valgrind
e2e-asan: all
	$(MAKE) BUILD=build-asan SAN=1 build-asan/bin/agentd
	AGENTD_BUILD=$(abspath $(BUILD)) AGENTD_BIN=$(abspath build-asan)/bin/agentd AGENTD_SANITIZED=1 \
		E2E_TIMEOUT_SCALE=2 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		$(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e $(PYTEST_ARGS)

e2e-valgrind: all
	AGENTD_BUILD=$(abspath $(BUILD)) \
		AGENTD_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite" \
		$(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e/test_ingest.py \
		"tests/e2e/test_upstream_faults.py::test_reset_in_the_middle_of_a_response"

check: deps
	$(MAKE) lint
	$(MAKE) all unit
	$(MAKE) BUILD=build-asan SAN=1 unit
	$(MAKE) shims
	$(MAKE) e2e
	$(MAKE) e2e-asan
	$(MAKE) e2e-valgrind
	$(MAKE) fuzz-regress

run: deps
	$(MAKE) all
	tests/tools/run-stack.sh

-include tests/fuzz/fuzz.mk
-include tests/bench/bench.mk
