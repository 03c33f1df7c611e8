package treesync

import "testing"

func TestExcluded(t *testing.T) {
	pats := []string{"node_modules", "*.o", "build/out", ".git"}
	yes := []string{"node_modules", "a/node_modules", "a/node_modules/x", "x.o", "d/x.o", "build/out", ".git/config"}
	no := []string{"a", "node_modules2", "x.oo", "build", "build/outx", "a/build/out", "git"}
	for _, p := range yes {
		if !Excluded(pats, p) {
			t.Errorf("%q not excluded", p)
		}
	}
	for _, p := range no {
		if Excluded(pats, p) {
			t.Errorf("%q excluded", p)
		}
	}
}
