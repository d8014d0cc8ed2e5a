# xdpingest. Every target runs on a fresh Debian machine with Go; the ones
# that need more install it first (make deps-*), as root.

GO        ?= go
BIN       ?= bin
# Packages with privileged tests share the machine's cores and the kernel's
# veth and BPF state; two at a time keeps them inside their time bounds.
TEST_P    ?= 2
# Time per fuzz target: empty means 3s in `make test`, 1m in `make fuzz`.
FUZZTIME  ?=
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/xdpingest/xdpingest/internal/version.Version=$(VERSION)

APT_TEST     := tcpdump tshark ethtool iproute2
APT_GENERATE := clang-16 llvm-16 libbpf-dev

.PHONY: all build generate check-generate test test-unit test-fuzz fuzz bench soak lint demo deps-test deps-generate clean

all: build

CC        ?= cc

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...
	@# pktbench's afxdp-c path: a reference AF_XDP receiver in C, when a
	@# C compiler is installed (nothing else needs it).
	@if command -v $(CC) >/dev/null 2>&1; then \
		$(CC) -O2 -Wall -Wextra -pthread -o $(BIN)/xskdrop bench/cref/xskdrop.c; \
	else echo "no C compiler ($(CC)): bin/xskdrop (pktbench --paths afxdp-c) not built"; fi

# deps-*: install what is missing, with apt-get (needs root).
deps-test:
	@./.ci/apt-need $(APT_TEST)

deps-generate:
	@./.ci/apt-need $(APT_GENERATE)

generate: deps-generate
	$(GO) generate ./...

# Regenerate the BPF objects and fail when they differ from what is committed.
check-generate: generate
	@if ! git diff --quiet -- '*_bpfel.go' '*_bpfel.o' || [ -n "$$(git status --porcelain -- '*_bpfel.go' '*_bpfel.o')" ]; then \
		git status --short -- '*_bpfel.go' '*_bpfel.o'; \
		echo "generated BPF files differ from the committed ones: run 'make generate' and commit"; exit 1; \
	fi

# The whole suite, privileged tests included (run as root), then every fuzz
# target for a few seconds.
test: deps-test test-unit test-fuzz

test-unit:
	$(GO) test -count=1 -p $(TEST_P) -timeout 8m ./...

# Every Fuzz target in the module, found on each run (a new one needs no
# edit here): the packages whose test files declare a Fuzz function, asked
# with -list which targets their build includes. `go test -fuzz` takes one
# target in one package, so each runs on its own, for FUZZTIME (default 3s
# in test-fuzz, 1m in fuzz: make fuzz FUZZTIME=10m). Every target runs;
# make fails at the end if any did, naming them; a failing input is saved
# under the package's testdata/fuzz (commit it as a regression case).
FUZZ_DIRS = $$(grep -rl --include='*_test.go' --exclude-dir=.git --exclude-dir=testdata '^func Fuzz' . | xargs -r -n1 dirname | sort -u)

define fuzz-all
	@failed=""; n=0; \
	for dir in $(FUZZ_DIRS); do \
		if ! list=$$($(GO) test -list '^Fuzz' $$dir 2>&1); then \
			echo "$$list"; failed="$$failed $$dir"; continue; \
		fi; \
		for t in $$(echo "$$list" | grep '^Fuzz'); do \
			n=$$((n+1)); echo "== $$dir $$t, $(1)"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(1) $$dir || failed="$$failed $$dir:$$t"; \
		done; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzzing failed:$$failed"; exit 1; fi; \
	if [ $$n -eq 0 ]; then echo "no fuzz targets found"; exit 1; fi; \
	echo "$$n fuzz targets ran $(1) each"
endef

test-fuzz:
	$(call fuzz-all,$(or $(FUZZTIME),3s))

# Longer fuzzing than make test's, not part of CI.
fuzz:
	$(call fuzz-all,$(or $(FUZZTIME),1m))

bench: deps-test
	$(GO) test -run '^$$' -bench . -benchmem -p 1 ./...

# The soak (issue 10, cmd/xdpingest/soak_test.go, build tag soak): the
# server under full-rate bulk and hostile traffic with reloads for SOAK,
# then its memory, goroutines and accounting checked; not part of make test
# or CI. Needs root. SOAK_TIMEOUT must exceed SOAK by 5 minutes.
SOAK         ?= 10m
SOAK_TIMEOUT ?= 30m
soak:
	XDPINGEST_SOAK=$(SOAK) $(GO) test -tags soak -count=1 -v -run '^TestSoak' -timeout $(SOAK_TIMEOUT) ./cmd/xdpingest

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

demo: deps-test build
	$(BIN)/xdpingest-demo

clean:
	rm -rf $(BIN)
