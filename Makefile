# xdpshield: every target goes through the bootstrap (idempotent, quick when done).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CLANG ?= clang
ARCH_INC := /usr/include/$(shell uname -m)-linux-gnu
OBJDIR := src/xdpshield/_obj
BUILD := build
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -I$(ARCH_INC) -Ibpf/include -I$(BUILD)
BPF_HDRS := $(wildcard bpf/include/*.h)

SHIELD_OBJS := $(OBJDIR)/xdpshield.o $(OBJDIR)/xdpshield_debug.o
TEST_OBJS := $(patsubst bpf/test/%.bpf.c,$(OBJDIR)/test_%.o,$(wildcard bpf/test/*.bpf.c))
# Every other bpf/NAME.bpf.c (the product's probes) becomes _obj/NAME.o.
EXTRA_OBJS := $(patsubst bpf/%.bpf.c,$(OBJDIR)/%.o,$(filter-out bpf/xdpshield.bpf.c,$(wildcard bpf/*.bpf.c)))
# The lab's programs (generators, benchmark baselines): bpf/lab/NAME.bpf.c
# becomes _obj/NAME.o too, the name Python looks them up by.
LAB_OBJS := $(patsubst bpf/lab/%.bpf.c,$(OBJDIR)/%.o,$(wildcard bpf/lab/*.bpf.c))

.PHONY: all bootstrap build test check demo bench clean
all: build

bootstrap: $(VENV)/.xdpshield-stamp
$(VENV)/.xdpshield-stamp: pyproject.toml scripts/bootstrap.sh
	@bash scripts/bootstrap.sh

$(BUILD)/vmlinux.h:
	@mkdir -p $(BUILD)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(OBJDIR)/xdpshield.o: bpf/xdpshield.bpf.c $(BPF_HDRS) $(BUILD)/vmlinux.h | $(OBJDIR)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# The debug variant compiles bpf_printk tracing in; never loaded unless asked.
$(OBJDIR)/xdpshield_debug.o: bpf/xdpshield.bpf.c $(BPF_HDRS) $(BUILD)/vmlinux.h | $(OBJDIR)
	$(CLANG) $(BPF_CFLAGS) -DXDPSHIELD_DEBUG -c $< -o $@

# Test-only variants of the shield's object (tests/stand/test_upgrade.py,
# test_service.py), selected through XDPSHIELD_OBJ_DIR; never loaded otherwise:
#   _resha: the same code and maps, other bytes (the command line recorded in
#           its debug info): an upgrade that keeps every map;
#   _verified_small / _verified_big: xs_verified (a state map) shrunk or grown:
#           an upgrade that must refuse / can migrate;
#   _lists_small: smaller allow/deny tables: an upgrade that refills the policy;
#   _reject: a packet read the verifier refuses (bpf/xdpshield.bpf.c #ifdef).
VARIANT_OBJS := $(addprefix $(OBJDIR)/xdpshield_test_,resha.o verified_small.o verified_big.o \
	lists_small.o reject.o)
VARIANT_FLAGS_resha := -grecord-command-line -DXS_TEST_VARIANT_RESHA
VARIANT_FLAGS_verified_small := -DXS_VERIFIED_MAX=32768
VARIANT_FLAGS_verified_big := -DXS_VERIFIED_MAX=131072
VARIANT_FLAGS_lists_small := -DXS_LIST_MAX=65536
VARIANT_FLAGS_reject := -DXS_TEST_VERIFIER_REJECT

$(OBJDIR)/xdpshield_test_%.o: bpf/xdpshield.bpf.c $(BPF_HDRS) $(BUILD)/vmlinux.h | $(OBJDIR)
	$(CLANG) $(BPF_CFLAGS) $(VARIANT_FLAGS_$*) -c $< -o $@

$(OBJDIR)/%.o: bpf/%.bpf.c $(BPF_HDRS) $(BUILD)/vmlinux.h | $(OBJDIR)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OBJDIR)/%.o: bpf/lab/%.bpf.c $(BUILD)/vmlinux.h | $(OBJDIR)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(OBJDIR)/test_%.o: bpf/test/%.bpf.c $(BPF_HDRS) $(BUILD)/vmlinux.h | $(OBJDIR)
	$(CLANG) $(BPF_CFLAGS) $(if $(findstring bad_,$*),-Wno-error) -c $< -o $@

$(OBJDIR):
	@mkdir -p $@

build: bootstrap $(SHIELD_OBJS) $(VARIANT_OBJS) $(TEST_OBJS) $(EXTRA_OBJS) $(LAB_OBJS)

# The unit and in-kernel datapath tests on every CPU (each test loads its own
# object: the verifier's time is most of theirs); the stand's tests one at a
# time (floods and timings share the machine).
test: build
	$(PY) -m pytest -q -ra -n auto --ignore=tests/stand
	$(PY) -m pytest -q -ra tests/stand

check: build
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

demo: build
	$(VENV)/bin/xdpshield demo --out out/demo

bench: build
	$(VENV)/bin/xdpshield bench --out out/bench

clean:
	rm -rf $(BUILD) $(OBJDIR)
