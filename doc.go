// Package darkshell is the root of the DarkShell module; see README.md.
package darkshell
