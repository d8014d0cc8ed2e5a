// Package archdoc holds the test that keeps docs/ARCHITECTURE.md true: the
// import edges the page lists between the module's packages are those `go
// list` finds, and the page lists every package after the packages it
// imports. It has no code of its own.
package archdoc
