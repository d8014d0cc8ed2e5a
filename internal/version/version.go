// Package version holds the build's version, set by the linker
// (-X github.com/xdpingest/xdpingest/internal/version.Version=...).
package version

import "runtime/debug"

// Version is the release or git description of this build.
var Version = "dev"

// String returns Version, or the module version recorded in the binary when
// the linker did not set it (go install).
func String() string {
	if Version != "dev" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return Version
}
