# xdpingest. Every target runs on a fresh Debian machine with Go; the ones
# that need more install it first (make deps-*), as root.

GO        ?= go
BIN       ?= bin
# Packages with privileged tests share the machine's cores and the kernel's
# veth and BPF state; two at a time keeps them inside their time bounds.
TEST_P    ?= 2
FUZZTIME  ?= 20s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/xdpingest/xdpingest/internal/version.Version=$(VERSION)

APT_TEST     := tcpdump tshark ethtool iproute2
APT_GENERATE := clang-16 llvm-16 libbpf-dev

.PHONY: all build generate check-generate test test-unit test-fuzz bench lint demo deps-test deps-generate clean

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

# The whole suite, privileged tests included (run as root), then a short
# fuzz run of the XDP program.
test: deps-test test-unit test-fuzz

test-unit:
	$(GO) test -count=1 -p $(TEST_P) -timeout 8m ./...

test-fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzProgram$$' -fuzztime $(FUZZTIME) ./xdp

bench: deps-test
	$(GO) test -run '^$$' -bench . -benchmem -p 1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

demo: deps-test build
	$(BIN)/xdpingest-demo

clean:
	rm -rf $(BIN)
