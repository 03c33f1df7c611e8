// Command gen compresses a sandboxd build for embedding in darkshell:
//
//	go run ./controller/agentbin/gen -in bin/sandboxd-linux-amd64 -out controller/agentbin/bin/sandboxd-linux-amd64.zst
//
// It verifies the round trip and writes the output atomically.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bohica-labs/darkshell/controller/agentbin"
	"github.com/klauspost/compress/zstd"
)

func main() {
	in := flag.String("in", "", "sandboxd binary to compress")
	out := flag.String("out", "", "output .zst file")
	flag.Parse()
	if *in == "" || *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: gen -in SANDBOXD -out FILE.zst")
		os.Exit(2)
	}
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "agentbin/gen:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	bin, err := os.ReadFile(in)
	if err != nil {
		return fmt.Errorf("unable to read sandboxd build: %w", err)
	}
	if len(bin) > agentbin.MaxSize {
		return fmt.Errorf("%s is %d bytes, over the %d-byte limit", in, len(bin), agentbin.MaxSize)
	}
	var buf bytes.Buffer
	if err := agentbin.Compress(&buf, bin); err != nil {
		return fmt.Errorf("unable to compress %s: %w", in, err)
	}
	d, err := zstd.NewReader(nil)
	if err != nil {
		return err
	}
	back, err := d.DecodeAll(buf.Bytes(), nil)
	d.Close()
	if err != nil || !bytes.Equal(back, bin) {
		return fmt.Errorf("round trip of %s failed: %v", in, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".gen-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: %d -> %d bytes\n", out, len(bin), buf.Len())
	return nil
}
