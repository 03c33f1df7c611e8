// Command standin is a minimal stand-in for sandboxd used by the inject
// tests: `serve` handshakes as sandboxd and then echoes the carrier;
// `version --json` prints the build version and the sha256 of its own file.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/bohica-labs/darkshell/protocol"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: standin serve | version --json")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		rw := struct {
			io.Reader
			io.Writer
		}{os.Stdin, os.Stdout}
		if _, _, err := protocol.Handshake(rw, protocol.NewHello(protocol.RoleSandboxd, protocol.BuildVersion)); err != nil {
			fmt.Fprintln(os.Stderr, "standin:", err)
			os.Exit(1)
		}
		io.Copy(os.Stdout, os.Stdin)
	case "version":
		exe, err := os.Executable()
		if err != nil {
			panic(err)
		}
		b, err := os.ReadFile(exe)
		if err != nil {
			panic(err)
		}
		s := sha256.Sum256(b)
		json.NewEncoder(os.Stdout).Encode(map[string]string{
			"build_version": protocol.BuildVersion,
			"sha256":        hex.EncodeToString(s[:]),
		})
	default:
		fmt.Fprintln(os.Stderr, "standin: unknown command", os.Args[1])
		os.Exit(2)
	}
}
