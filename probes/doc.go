// Package probes holds the eBPF programs of DarkShell, the Go bindings
// bpf2go generates for them, and their loader (Set). The generated
// trace_*_bpfel.go and .o files are committed, so building needs no clang;
// `make probes` regenerates them and `make probes-check` fails when the
// committed output is stale.
//
// One Set serves every sandbox of a host: the local driver's daemon loads
// it once and gives each sandbox its own ring buffer and knobs (Sandbox),
// which that sandbox's sandboxd reads (sandboxd/events). Elsewhere a
// privileged sandboxd loads a Set of its own. Nothing here logs.
package probes
