//go:build linux

// Command nictune shows, plans, applies and reverts NIC tuning profiles.
//
//	nictune show IFACE                      driver, channels, rings, coalescing,
//	                                        offloads, busy-poll sysctls, NAPI knobs,
//	                                        queue -> IRQ -> CPU map, CPU isolation
//	nictune plan --profile NAME IFACE       what the profile would change
//	nictune apply --profile NAME IFACE      change it, read back, save previous values
//	nictune revert IFACE                    restore the saved values
//	nictune profiles [NAME]                 print built-in profiles as YAML
//	nictune version                         print the version
//	nictune completion bash|zsh|fish        print a shell completion script
//
// Profiles: latency, throughput, afxdp, balanced, or a YAML file with the same
// keys (--profile ./mine.yaml); see docs/TUNING.md.
//
// Exit status: 0 everything took effect; 3 some settings did not (each is
// reported); 1 nothing could be done, or an error; 2 bad input (unknown
// interface, profile or key, a value out of range), found before anything
// changes.
//
// The work is done by package tuning; this command parses flags and prints.
package main
