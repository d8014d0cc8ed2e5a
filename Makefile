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

APT_TEST     := tcpdump tshark ethtool iproute2 kcat systemd prometheus strace util-linux tmux procps
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

# Every Fuzz target in the module, for FUZZTIME each (3s here, 1m in make
# fuzz; make fuzz FUZZTIME=10m): see .ci/fuzz.
test-fuzz:
	GO=$(GO) ./.ci/fuzz $(or $(FUZZTIME),3s)

# Longer fuzzing than make test's, not part of CI.
fuzz:
	GO=$(GO) ./.ci/fuzz $(or $(FUZZTIME),1m)

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
	@# Linux only: elsewhere each command says so in one line (its files
	@# are //go:build linux) rather than failing deep in a dependency.
	@for c in $$(ls cmd); do \
		out=$$(GOOS=darwin $(GO) build ./cmd/$$c 2>&1); \
		echo "$$out" | grep -q 'build constraints exclude all Go files' || { \
			echo "GOOS=darwin go build ./cmd/$$c should say the command builds on Linux only:"; echo "$$out"; exit 1; }; \
	done
	@# deploy/ and examples/: systemd-analyze verify (package systemd) on
	@# copies of the units whose commands are the binaries just built (verify
	@# wants them to exist); any output fails, since verify exits 0 on an
	@# unknown key or a value it ignores. Then check every example.
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(GO) build -ldflags '$(LDFLAGS)' -o "$$tmp/" ./cmd/xdpingest ./cmd/nictune || exit 1; \
	sed "s#/usr/local/bin/#$$tmp/#g" deploy/xdpingest.service > "$$tmp/xdpingest.service"; \
	sed "s#/usr/local/bin/#$$tmp/#g" deploy/nictune@.service > "$$tmp/nictune@lo.service"; \
	out=$$(cd "$$tmp" && systemd-analyze verify ./xdpingest.service ./nictune@lo.service 2>&1) && [ -z "$$out" ] || { \
		echo "systemd-analyze verify deploy/*.service:"; echo "$$out"; exit 1; }; \
	out=$$(systemd-sysusers --dry-run $(CURDIR)/deploy/xdpingest.sysusers 2>&1) || { \
		echo "systemd-sysusers --dry-run deploy/xdpingest.sysusers:"; echo "$$out"; exit 1; }; \
	for f in examples/*.yaml; do \
		case $$f in examples/nictune*.yaml) "$$tmp/nictune" profiles "$$f" >/dev/null;; *) "$$tmp/xdpingest" check --config "$$f" >/dev/null;; esac || { \
			echo "$$f: not valid"; exit 1; }; \
	done

demo: deps-test build
	$(BIN)/xdpingest-demo

clean:
	rm -rf $(BIN)
