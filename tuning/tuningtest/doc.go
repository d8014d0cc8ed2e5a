// Package tuningtest provides fakes for testing code that uses package tuning
// without touching the host: a fake /proc and /sys tree ([Tree]) that
// [tuning.Roots] points at, and an in-memory ethtool backend ([Ethtool]) that
// behaves like the kernel's ioctl layer for channels, rings, coalescing and
// features.
package tuningtest
