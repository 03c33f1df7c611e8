//go:build race

package sandboxd_test

const raceEnabled = true
