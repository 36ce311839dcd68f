# tests/bench/: benchmarks. `make bench` runs them all; each prints its
# figures. Add a bench-NAME target and list it under bench:.
#
#   make bench          everything: installs what is missing (as root), builds,
#                       runs the sweep of agentd and syslog-ng (tests/bench/run.py),
#                       writes tests/bench/results.md and tests/bench/chart.png
#   make bench-shim     the libagent call cost only
#   make bench-quick    a short sweep (2 s per run, fewer rates), for development
#
# Packages beyond `make deps`: the peer (syslog-ng with its http() module), the
# chart (gnuplot) and the profiler used when a goal is missed (perf).
BENCH_DEPS := syslog-ng-core syslog-ng-mod-http gnuplot-nox linux-perf
SHIM_BENCH := $(BUILD)/bench/shim_bench
BENCH_SINK := $(BUILD)/bench/sink
BENCH_PRODUCER := $(BUILD)/bench/producer
BENCH_BINS := $(SHIM_BENCH) $(BENCH_SINK) $(BENCH_PRODUCER)
BENCH_RUN = AGENTD_BUILD=$(abspath $(BUILD)) $(PYTHON) tests/bench/run.py

$(SHIM_BENCH): $(BUILD)/tests/bench/shim_bench.o $(LIBAGENT_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -pthread

$(BENCH_SINK): $(BUILD)/tests/bench/sink.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lz -lm

$(BENCH_PRODUCER): $(BUILD)/tests/bench/producer.o $(LIBAGENT_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -pthread

.PHONY: bench-shim bench-deps bench-build bench-run bench-quick
bench-shim: $(SHIM_BENCH)
	$(SHIM_BENCH)

bench-deps:
	@DEPS_EXTRA="$(BENCH_DEPS)" tests/tools/deps.sh

bench-build: all $(BENCH_BINS)

bench-run: bench-build
	$(BENCH_RUN)

bench-quick: bench-build
	$(BENCH_RUN) --quick --out $(BUILD)/bench/quick

bench: bench-deps
	$(MAKE) bench-run
