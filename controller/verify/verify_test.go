package verify

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// fake answers controls with success and probes as told.
func fake(probe func(c Case) (string, int)) Runner {
	return func(ctx context.Context, script string) (string, string, int, error) {
		if script == "uname -r" {
			return "6.18.0\n", "", 0, nil
		}
		for _, c := range Cases {
			switch script {
			case c.Control:
				return "", "", 0, nil
			case c.Probe:
				msg, st := probe(c)
				return "", msg, st, nil
			}
		}
		return "", "", 0, errors.New("unknown script")
	}
}

func TestRun(t *testing.T) {
	rep := &Report{}
	Run(context.Background(), fake(func(c Case) (string, int) { return "x: " + c.Want, 1 }), rep)
	if !rep.Passed || rep.Kernel != "6.18.0" || len(rep.Cases) != len(Cases) {
		t.Fatalf("all refused: %+v", rep)
	}
	rep = &Report{}
	Run(context.Background(), fake(func(c Case) (string, int) {
		switch c.Name {
		case "mount":
			return "Bad address", 1
		case "ptrace":
			return "", 0
		}
		return c.Want, 1
	}), rep)
	if rep.Passed {
		t.Fatal("passed with an escape")
	}
	for _, r := range rep.Cases {
		want := Refused
		switch r.Case {
		case "mount":
			want = WrongLayer
		case "ptrace":
			want = Escaped
		}
		if r.Result != want || r.OK != (want == Refused) {
			t.Errorf("%s: %+v, want %s", r.Case, r, want)
		}
	}
}

func TestControlFails(t *testing.T) {
	run := func(ctx context.Context, script string) (string, string, int, error) {
		if strings.Contains(script, "/sandbox/.darkshell-verify") && !strings.Contains(script, "/etc/") {
			return "", "read-only", 1, nil
		}
		for _, c := range Cases {
			if script == c.Probe {
				return "", c.Want, 1, nil
			}
		}
		return "", "", 0, nil
	}
	rep := &Report{}
	Run(context.Background(), run, rep)
	if rep.Passed || rep.Cases[0].Result != ControlFails {
		t.Fatalf("a broken control must fail the case: %+v", rep.Cases[0])
	}
}
