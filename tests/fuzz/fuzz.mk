# tests/fuzz/: libFuzzer targets, built with clang into build-fuzz/, apart
# from the gcc objects.
#
# Every tests/fuzz/fuzz_NAME.c is a target (LLVMFuzzerTestOneInput), linked
# with the codec and every agentd library source, all compiled with clang and
# the fuzzer, address and undefined sanitizers.
#
#   make fuzz              build all targets, replay tests/fuzz/regressions/NAME/
#                          through each, then fuzz each for FUZZ_SECONDS (60);
#                          fails on any crash, leak, timeout or sanitizer report
#   make fuzz-build        build the targets only
#   make fuzz-regress      build and replay the regression inputs only
#   make vectors           regenerate proto/vectors/ (commit the result)
#
# The corpus of NAME lives in build-fuzz/corpus/NAME, seeded from
# proto/vectors/*.bin and tests/fuzz/seeds/NAME/ (if present); crash inputs
# land in build-fuzz/artifacts/NAME/. Copy one into tests/fuzz/regressions/NAME/
# once its bug is fixed, so that it is replayed from then on.

FUZZ_BUILD := build-fuzz
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 140000
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
# clang sees a few things gcc does not: warnings are errors here too.
FUZZ_CFLAGS := -std=c11 $(WARN) -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRCS))
FUZZ_BINS := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_LIB_OBJS := $(patsubst %.c,$(FUZZ_BUILD)/%.o,proto/agent_proto.c $(AGENTD_LIB_SRCS))
FUZZ_LIB := $(FUZZ_BUILD)/libfuzzlib.a

.PHONY: fuzz fuzz-build fuzz-regress vectors

fuzz-build: $(FUZZ_BINS)

# Library objects get coverage instrumentation but no fuzzer main.
$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -MMD -MP -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lpthread -lm

# Keep the targets' objects (make would delete them as intermediates).
.SECONDARY: $(FUZZ_SRCS:%.c=$(FUZZ_BUILD)/%.o)

-include $(shell find $(FUZZ_BUILD) -name '*.d' 2>/dev/null)

# Replay each target's regression inputs (a target without any is fine).
fuzz-regress: $(FUZZ_BINS)
	@fail=0; for n in $(FUZZ_NAMES); do \
		d=tests/fuzz/regressions/$$n; \
		[ -d $$d ] && [ -n "$$(ls -A $$d)" ] || continue; \
		echo "== fuzz_$$n: replaying $$(ls -A $$d | wc -l) regression inputs"; \
		mkdir -p $(FUZZ_BUILD)/logs; \
		$(FUZZ_BUILD)/fuzz_$$n $$d/* >$(FUZZ_BUILD)/logs/$$n.regress.log 2>&1 || \
			{ fail=1; tail -n 40 $(FUZZ_BUILD)/logs/$$n.regress.log; echo "FAIL fuzz_$$n regressions"; }; \
	done; exit $$fail

fuzz: fuzz-regress
	@fail=0; summary=""; for n in $(FUZZ_NAMES); do \
		c=$(FUZZ_BUILD)/corpus/$$n; a=$(FUZZ_BUILD)/artifacts/$$n; \
		log=$(FUZZ_BUILD)/logs/$$n.log; \
		mkdir -p $$c $$a $(FUZZ_BUILD)/logs; \
		cp proto/vectors/*.bin $$c/ 2>/dev/null; \
		[ -d tests/fuzz/seeds/$$n ] && cp tests/fuzz/seeds/$$n/* $$c/ 2>/dev/null; \
		echo "== fuzz_$$n for $(FUZZ_SECONDS) s"; \
		if $(FUZZ_BUILD)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN) \
			-timeout=25 -print_final_stats=1 -artifact_prefix=$$a/ $$c >$$log 2>&1; then \
			st=ok; \
		else \
			st=FAIL; fail=1; tail -n 60 $$log; \
		fi; \
		ex=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log); \
		summary="$$summary$$(printf '%-12s %-4s executions %-10s corpus %s files, %s bytes' \
			$$n $$st "$${ex:-?}" $$(ls -A $$c | wc -l) $$(cat $$c/* 2>/dev/null | wc -c))\n"; \
	done; printf "== fuzz summary ($(FUZZ_SECONDS) s per target)\n$$summary"; exit $$fail

# Regenerate the golden frames. The generator is not part of the build.
vectors: $(BUILD)/proto/gen_vectors
	$(BUILD)/proto/gen_vectors proto/vectors

$(BUILD)/proto/gen_vectors: proto/vectors/gen_vectors.c proto/vectors/vector_json.c proto/vectors/vector_json.h \
		proto/agent_proto.c proto/agent_proto.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -o $@ proto/vectors/gen_vectors.c proto/vectors/vector_json.c \
		proto/agent_proto.c \
		$(LDFLAGS) $(PKG_LIBS) -lm
