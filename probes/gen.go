package probes

//go:generate go tool bpf2go -tags linux -target amd64,arm64 -type event Trace bpf/trace.c -- -O2 -g -Wall -Werror -Ibpf/headers
