// Package testutil is what the tests of several packages share: skipping
// (failing under XDPINGEST_STRICT=1) when privilege or a feature is
// missing, a test bed per test, waiting for a condition, a buffer a test
// reads while a process writes it, the ethtool program run in a namespace,
// building the commands, counting descriptors.
//
// Only tests import it: it imports testing, which no command may
// (TestNoTestingInCommands checks).
package testutil
