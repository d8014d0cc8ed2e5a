package testbed

// For the tests of package testbed_test, which use testutil's bed and so
// can't be in package testbed.
var (
	NamePrefix = namePrefix
	NewNamedNS = newNamedNS
)
