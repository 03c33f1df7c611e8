// Command darkshell is the DarkShell host controller and CLI.
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
