// Command darkshell-core is the full DarkShell host controller and CLI:
// every command, the daemon and the drivers. Users run `darkshell`, the
// thin front (cmd/darkshell), which serves a fresh `exec` itself and hands
// everything else to this binary.
package main

import (
	"github.com/bohica-labs/darkshell/controller/cli"
	_ "github.com/bohica-labs/darkshell/controller/driver/enginedriver"
	_ "github.com/bohica-labs/darkshell/controller/driver/kubedriver"
	_ "github.com/bohica-labs/darkshell/controller/driver/localdriver"
	_ "github.com/bohica-labs/darkshell/controller/driver/openshelldriver"
	_ "github.com/bohica-labs/darkshell/controller/driver/sshdriver"
)

func main() { cli.Main() }
