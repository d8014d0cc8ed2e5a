package xdp

// The program is compiled with Debian's clang-16 (apt-get install clang-16
// libbpf-dev) and the output is committed, so building and testing need no
// clang. `make check-generate` regenerates and fails on any difference.
//go:generate go tool bpf2go -cc clang-16 -strip llvm-strip-16 -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package xdp ingest bpf/ingest.c
