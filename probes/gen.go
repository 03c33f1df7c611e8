package probes

//go:generate go tool bpf2go -tags linux -target amd64,arm64 -type event -type knobs Trace bpf/trace.c -- -O2 -g -Wall -Werror -Ibpf/headers
