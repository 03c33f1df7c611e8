//go:build !race

package treesync

const raceEnabled = false
