# ckptkit -- build, test, demo, bench, fuzz, install. GNU make.
#
#   make            build/libckptkit.a, build/libckptkit.so, build/ckptkit
#   make check      unit tests, CLI tests, fuzz-corpus replay, interop tests
#                   (real PyTorch), then the unit tests under ASan + UBSan
#   make demo       convert a bundled checkpoint and show the result
#   make bench      benchmarks against cp and the PyTorch way (BENCH_SIZE=1GiB)
#   make fuzz       libFuzzer targets for FUZZ_SECONDS each (clang)
#   make lint       cppcheck + clang-tidy
#   make install    PREFIX=/usr/local DESTDIR=
#   make web        build/web/ckptkit.html: the browser page, one self-contained
#                   file (Debian's emscripten; zlib from Debian's source)
#   make web-test   the page's tests in headless Chromium (Playwright)

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
PYTHON  ?= /usr/bin/python3
FUZZ_SECONDS ?= 60
VENV_PY ?= $(B)/venv/bin/python
BENCH_SIZE ?= 1GiB

SOVERSION := 0
VERSION   := 0.1.0

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
BASE    := -std=c11 -D_GNU_SOURCE -g $(WARN)
OPT     ?= -O2
CFLAGS_LIB := $(BASE) $(OPT) -fPIC -fvisibility=hidden -Iinclude $(CFLAGS)
CFLAGS_CLI := $(BASE) $(OPT) -Iinclude $(CFLAGS)
LDLIBS  := -lz -lm

B := build
LIB_SRC := $(shell find src -name '*.c' | sort)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o)
CLI_SRC := $(sort $(wildcard tools/ckptkit/*.c))
CLI_OBJ := $(CLI_SRC:%.c=$(B)/obj/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/%.c=%)

SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ASAN_OBJ := $(LIB_SRC:%.c=$(B)/asan/%.o)

.PHONY: all check venv unit cli interop asan fuzz-replay demo bench fuzz lint install clean deps \
        check-deps

all: $(B)/libckptkit.a $(B)/libckptkit.so $(B)/ckptkit

$(B)/obj/%.o: %.c $(shell find include src -name '*.h')
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_LIB) -c $< -o $@

# ggml's block codecs: results must not depend on FMA contraction
STRICT_FP_OBJ := src/tensor/ggml_quant.o src/tensor/ggml_kquant.o src/tensor/ggml_dequant.o \
                 src/tensor/ggml_quant_x86.o
$(STRICT_FP_OBJ:%=$(B)/obj/%): CFLAGS_LIB += -ffp-contract=off
$(STRICT_FP_OBJ:%=$(B)/asan/%): BASE += -ffp-contract=off

$(B)/obj/tools/%.o: tools/%.c include/ckptkit.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_CLI) -c $< -o $@

$(B)/libckptkit.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/libckptkit.so: $(LIB_OBJ) src/ckptkit.map
	$(CC) -shared -Wl,-soname,libckptkit.so.$(SOVERSION) -Wl,--version-script=src/ckptkit.map \
	    -o $(B)/libckptkit.so.$(VERSION) $(LIB_OBJ) $(LDLIBS)
	ln -sf libckptkit.so.$(VERSION) $(B)/libckptkit.so.$(SOVERSION)
	ln -sf libckptkit.so.$(VERSION) $@

$(B)/ckptkit: $(CLI_OBJ) $(B)/libckptkit.a
	$(CC) -o $@ $(CLI_OBJ) $(B)/libckptkit.a $(LDLIBS)

# ---- tests -------------------------------------------------------------------

$(B)/unit_tests: $(UNIT_SRC) $(B)/libckptkit.a $(shell find src tests/unit -name '*.h')
	$(CC) $(BASE) -O1 -Iinclude -Isrc -o $@ $(UNIT_SRC) $(B)/libckptkit.a $(LDLIBS)

$(B)/asan/%.o: %.c $(shell find include src -name '*.h')
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -O1 $(SAN) -Iinclude -c $< -o $@

$(B)/unit_tests_asan: $(UNIT_SRC) $(ASAN_OBJ)
	$(CC) $(BASE) -O1 $(SAN) -Iinclude -Isrc -o $@ $(UNIT_SRC) $(ASAN_OBJ) $(LDLIBS)

$(B)/fuzz/%: tests/fuzz/%.c tests/fuzz/replay.c $(ASAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -O1 $(SAN) -Iinclude -Isrc -o $@ $< tests/fuzz/replay.c $(ASAN_OBJ) $(LDLIBS)

check-deps:
	@scripts/install-deps.sh --check-or-install

unit: $(B)/unit_tests
	$(B)/unit_tests

cli: all
	tests/cli/run.sh $(B)/ckptkit

asan: $(B)/unit_tests_asan
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $(B)/unit_tests_asan

fuzz-replay: $(FUZZ_NAMES:%=$(B)/fuzz/%)
	tests/fuzz/replay.sh $(B)/fuzz $(FUZZ_NAMES)

# The pinned environment (torch 2.13, safetensors, Lightning, ...): build/venv.
venv:
	@scripts/venv.sh >/dev/null

# Two lanes: the pinned environment (current PyTorch and the tools people run
# today), then Debian's python3 with PyTorch 1.13, the oldest PyTorch we support.
# Tests that need a package the old lane lacks skip themselves there.
interop: all venv
	@$(VENV_PY) tests/interop/render_compat.py --clean
	CKPTKIT_LANE=current $(VENV_PY) -m pytest -q -p no:cacheprovider tests/interop
	CKPTKIT_LANE=oldest $(PYTHON) -m pytest -q -p no:cacheprovider tests/interop
	@$(VENV_PY) tests/interop/render_compat.py

check: check-deps all unit cli fuzz-replay interop python asan web unit-websrc web-test
	@echo "make check: all suites passed"

# The Python package (python/): one abi3 wheel built from this checkout's
# sources, installed into the test environment, then its pytest suite (which
# also imports the wheel in Debian's /usr/bin/python3).
.PHONY: python python-wheel
python-wheel: venv
	rm -rf $(B)/wheel python/build
	$(VENV_PY) -m pip wheel -q --no-build-isolation --no-deps -w $(B)/wheel ./python
	$(VENV_PY) -m pip install -q --no-deps --force-reinstall $(B)/wheel/ckptkit-*.whl

python: python-wheel
	CKPTKIT_WHEEL_DIR=$(CURDIR)/$(B)/wheel $(VENV_PY) -m pytest -q -p no:cacheprovider python/tests

demo: all
	@scripts/demo.sh $(B)/ckptkit

bench: all python-wheel
	@$(PYTHON) bench/run.py --ckptkit $(B)/ckptkit --size $(BENCH_SIZE)
	@$(PYTHON) bench/scale.py --ckptkit $(B)/ckptkit --torch-save
	@$(PYTHON) bench/batch.py --ckptkit $(B)/ckptkit
	@$(VENV_PY) bench/python_api.py --size $(BENCH_SIZE)
	@$(VENV_PY) bench/gguf_bench.py --ckptkit $(B)/ckptkit --size $(BENCH_SIZE)

# GGUF quantisation and conversion against gguf-py and cp (needs the pinned venv)
.PHONY: bench-gguf
bench-gguf: all venv
	@$(VENV_PY) bench/gguf_bench.py --ckptkit $(B)/ckptkit --size $(BENCH_SIZE)

fuzz:
	tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)

lint:
	scripts/lint.sh

# ---- install -------------------------------------------------------------------

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	    $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(B)/ckptkit $(DESTDIR)$(PREFIX)/bin/ckptkit
	install -m 644 $(B)/libckptkit.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/libckptkit.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libckptkit.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libckptkit.so.$(SOVERSION)
	ln -sf libckptkit.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libckptkit.so
	install -m 644 include/ckptkit.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 docs/ckptkit.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' ckptkit.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/ckptkit.pc

clean:
	rm -rf $(B)

# ---- the browser page (make web, make web-test) ---------------------------------
# The library compiled to WebAssembly with Debian's emscripten 3.1.6 (the web
# source backend, src/io/source_web.c, reads with lseek + read only), zlib
# compiled from Debian's source package (scripts/install-deps.sh unpacks it;
# emscripten's zlib port would download it), and web/ inlined into one page.

EMCC     ?= emcc
WEB_ZLIB ?= /usr/local/src/ckptkit-web/zlib
WB       := $(B)/web
WEB_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -O2 -Iinclude -I$(WEB_ZLIB)
WEB_ZLIB_C := adler32 crc32 deflate inffast inflate inftrees trees zutil
WEB_OBJ := $(LIB_SRC:%.c=$(WB)/obj/%.o) $(WEB_ZLIB_C:%=$(WB)/zlib/%.o) $(WB)/obj/web/ckweb.o
WEB_EXPORTS := _ckw_formats,_ckw_scan,_ckw_open,_ckw_stats,_ckw_convert,_ckw_close,_malloc,_free
WEB_LDFLAGS := -O2 -sENVIRONMENT=worker -sFORCE_FILESYSTEM=1 -lworkerfs.js \
    -sALLOW_MEMORY_GROWTH=1 -sINITIAL_MEMORY=33554432 -sMAXIMUM_MEMORY=2147483648 \
    -sDYNAMIC_EXECUTION=0 -sEXPORTED_FUNCTIONS=$(WEB_EXPORTS) \
    -sEXPORTED_RUNTIME_METHODS=FS,ccall,UTF8ToString -sINCOMING_MODULE_JS_API=wasmBinary,onRuntimeInitialized,print,printErr

.PHONY: web web-test unit-websrc

web: $(WB)/ckptkit.html

$(WB)/obj/%.o: %.c $(shell find include src -name '*.h')
	@mkdir -p $(dir $@)
	$(EMCC) $(WEB_CFLAGS) -c $< -o $@

$(WB)/zlib/%.o: | $(WEB_ZLIB)/inflate.c
	@mkdir -p $(dir $@)
	$(EMCC) -O2 -I$(WEB_ZLIB) -c $(WEB_ZLIB)/$*.c -o $@

$(WEB_ZLIB)/inflate.c:
	@scripts/install-deps.sh --check-or-install

$(WB)/ckw.js: $(WEB_OBJ)
	NODE_PATH=/usr/share/nodejs $(EMCC) $(WEB_LDFLAGS) -o $@ $(WEB_OBJ)

$(WB)/ckptkit.html: $(WB)/ckw.js web/index.html web/style.css web/app.js web/worker.js \
                    web/build_page.py
	$(PYTHON) web/build_page.py web $(WB)/ckw.js $(WB)/ckw.wasm $@

web-test: web all venv
	$(VENV_PY) -m pytest -q -p no:cacheprovider tests/web

# The unit tests again over the web build's source backend (lseek + read, a
# window over files larger than 1 GiB), compiled natively with -DCKI_SOURCE_WEB.
WS_OBJ := $(LIB_SRC:%.c=$(B)/websrc/%.o)

$(B)/websrc/%.o: %.c $(shell find include src -name '*.h')
	@mkdir -p $(dir $@)
	$(CC) $(BASE) -O1 -DCKI_SOURCE_WEB -Iinclude -c $< -o $@

$(B)/unit_tests_websrc: $(UNIT_SRC) $(WS_OBJ)
	$(CC) $(BASE) -O1 -Iinclude -Isrc -o $@ $(UNIT_SRC) $(WS_OBJ) $(LDLIBS)

unit-websrc: $(B)/unit_tests_websrc
	$(B)/unit_tests_websrc
