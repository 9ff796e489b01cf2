# mlpipe -- container-native ML pipeline runner.
#
#   make            build ./mlpipe
#   make demo       install missing Debian packages, build, run the iris pipeline
#   make test       install missing packages, build, run every test (plain and
#                   under AddressSanitizer + UndefinedBehaviorSanitizer)
#   make bench      benchmarks against the reference tools (docs/BENCHMARKS.md)
#   make plugins    build examples/plugins/*.so
#   make install    PREFIX=/usr/local DESTDIR=
#
# Header dependencies come from -MMD.  Object files go under build/<variant>/.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc

# Debian packages the build, the tests and the demo need (checked by `make deps`).
DEB_PKGS = gcc libc6-dev make pkg-config libyaml-dev libcsv-dev libopenblas-dev \
           libsqlite3-dev libcmocka-dev libjansson-dev libssl-dev libmicrohttpd-dev \
           zlib1g-dev sqlite3 curl jq dataset-fashion-mnist

PKGS     = yaml-0.1 sqlite3 openblas jansson libcrypto libmicrohttpd zlib
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    = -Wall -Wextra -Werror -Wshadow
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(PKG_CFLAGS) -iquote runner -iquote stages -MMD -MP
LIBS    = $(PKG_LIBS) -lcsv -lm -ldl -lpthread
SAN     = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

RUNNER_SRC = $(wildcard runner/*.c)
STAGE_SRC  = $(wildcard stages/*.c)
LIB_SRC    = $(filter-out runner/main.c,$(RUNNER_SRC)) $(STAGE_SRC)
UNIT_SRC   = $(wildcard tests/unit/test_*.c)
UNIT_NAMES = $(basename $(notdir $(UNIT_SRC)))
PLUGIN_SRC = $(wildcard examples/plugins/*.c)
PLUGINS    = $(PLUGIN_SRC:.c=.so)

# Variants: rel (./mlpipe), asan (build/asan/mlpipe), unit and unit-asan
# (library objects built with -DUNIT_TESTING so mp_malloc uses cmocka's
# checked allocator).
REL_OBJ       = $(patsubst %.c,build/rel/%.o,$(RUNNER_SRC) $(STAGE_SRC))
ASAN_OBJ      = $(patsubst %.c,build/asan/%.o,$(RUNNER_SRC) $(STAGE_SRC))
UNIT_OBJ      = $(patsubst %.c,build/unit/%.o,$(LIB_SRC))
UNITASAN_OBJ  = $(patsubst %.c,build/unit-asan/%.o,$(LIB_SRC))
UNIT_BIN      = $(addprefix build/unit/,$(UNIT_NAMES))
UNITASAN_BIN  = $(addprefix build/unit-asan/,$(UNIT_NAMES))

.PHONY: all deps demo test test-run unit unit-asan e2e e2e-asan asan plugins bench \
        install clean image-test check-deps
.DEFAULT_GOAL := all
.SECONDARY:            # keep test objects between runs

all: mlpipe

mlpipe: $(REL_OBJ)
	$(CC) $(CFLAGS) -rdynamic -o $@ $^ $(LIBS)

build/asan/mlpipe: $(ASAN_OBJ)
	$(CC) $(CFLAGS) $(SAN) -rdynamic -o $@ $^ $(LIBS)

asan: build/asan/mlpipe

# Elementwise loops that no BLAS call expresses (the Adam update) are built to
# vectorise: sqrtf without errno, and the full vectoriser cost model instead
# of -O2's "very cheap" one, which leaves loops of unknown length scalar.
VEC_FILES  = stages/optim.c
VEC_CFLAGS = -fno-math-errno -fvect-cost-model=dynamic
$(foreach v,rel asan unit unit-asan,$(patsubst %.c,build/$(v)/%.o,$(VEC_FILES))): \
    ALL_CFLAGS += $(VEC_CFLAGS)

build/rel/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC  $@"
	@$(CC) $(ALL_CFLAGS) -c -o $@ $<

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC  $@"
	@$(CC) $(ALL_CFLAGS) $(SAN) -c -o $@ $<

build/unit/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC  $@"
	@$(CC) $(ALL_CFLAGS) -DUNIT_TESTING -c -o $@ $<

build/unit-asan/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC  $@"
	@$(CC) $(ALL_CFLAGS) $(SAN) -DUNIT_TESTING -c -o $@ $<

build/unit/libmlpipe.a: $(UNIT_OBJ)
	rm -f $@ && ar rcs $@ $^

build/unit-asan/libmlpipe.a: $(UNITASAN_OBJ)
	rm -f $@ && ar rcs $@ $^

build/unit/test_%: build/unit/tests/unit/test_%.o build/unit/libmlpipe.a
	$(CC) $(CFLAGS) -rdynamic -o $@ $^ $(LIBS) -lcmocka

build/unit-asan/test_%: build/unit-asan/tests/unit/test_%.o build/unit-asan/libmlpipe.a
	$(CC) $(CFLAGS) $(SAN) -rdynamic -o $@ $^ $(LIBS) -lcmocka

examples/plugins/%.so: examples/plugins/%.c stages/mp_stage.h
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -fPIC -shared -iquote stages -o $@ $< -lm

plugins: $(PLUGINS)

# ---------------------------------------------------------------- set-up

# Installs the Debian packages that are missing: apt-get as root, otherwise
# prints the exact command to run.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' \
	        || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "installing:$$missing"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	    else \
	        echo "missing Debian packages; run: sudo apt-get install -y$$missing" >&2; exit 1; \
	    fi; \
	fi

demo: deps
	$(MAKE) mlpipe
	./mlpipe run pipelines/iris-logreg.yaml
	./mlpipe runs list --limit 5

# ---------------------------------------------------------------- tests

test: deps
	$(MAKE) test-run

test-run: unit e2e unit-asan e2e-asan
	@echo "all tests passed (unit, e2e, and both again under ASan+UBSan)"

unit: $(UNIT_BIN)
	@tests/run-unit.sh $(UNIT_BIN)

unit-asan: $(UNITASAN_BIN)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    tests/run-unit.sh $(UNITASAN_BIN)

e2e: mlpipe plugins
	@MLPIPE=./mlpipe tests/e2e/run.sh

e2e-asan: build/asan/mlpipe plugins
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    MLPIPE=build/asan/mlpipe tests/e2e/run.sh

bench: deps mlpipe
	bench/run.sh

# The container image, built and run with podman (no Docker engine needed):
# base image, build (with make test inside), run, exit codes, SIGTERM, and the
# CronJob's pod under `podman kube play`.  Steps: tests/image/run.sh.
image-test:
	tests/image/run.sh

# ---------------------------------------------------------------- install

install: mlpipe
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include/mlpipe
	install -m 755 mlpipe $(DESTDIR)$(PREFIX)/bin/mlpipe
	install -m 644 stages/mp_stage.h $(DESTDIR)$(PREFIX)/include/mlpipe/mp_stage.h

clean:
	rm -rf build mlpipe examples/plugins/*.so

-include $(shell find build -name '*.d' 2>/dev/null)
