# tests/bench/: benchmarks. `make bench` runs them all; each prints its
# figures. Add a bench-NAME target and list it under bench:.
SHIM_BENCH := $(BUILD)/bench/shim_bench

$(SHIM_BENCH): $(BUILD)/tests/bench/shim_bench.o $(LIBAGENT_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -pthread

.PHONY: bench-shim
bench-shim: $(SHIM_BENCH)
	$(SHIM_BENCH)

bench: bench-shim
