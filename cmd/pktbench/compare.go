package main

import (
	"context"
	"io"
)

func cmdCompare(ctx context.Context, args []string, stdout, stderr io.Writer) int { return 0 }
