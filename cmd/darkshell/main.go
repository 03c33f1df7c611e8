// Command darkshell is the DarkShell CLI. It is the thin front
// (controller/front): it serves `darkshell exec` while the daemon is up and
// runs darkshell-core, installed next to it, for everything else.
package main

import "github.com/bohica-labs/darkshell/controller/front"

func main() { front.Main() }
