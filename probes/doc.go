// Package probes holds the eBPF programs of DarkShell and the Go bindings
// bpf2go generates for them. The generated trace_*_bpfel.go and .o files are
// committed, so building needs no clang; `make probes` regenerates them and
// `make probes-check` fails when the committed output is stale.
//
// The package only embeds the objects; loading, attaching and reading them
// is sandboxd/events's job. Nothing here logs or does I/O.
package probes
