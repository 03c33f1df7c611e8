// Package fleet runs one operation on many sandboxes: a label selector
// picks them (the syntax of Kubernetes' equality-based selectors) and Run
// applies the operation to each, in parallel, collecting one result per
// sandbox in name order.
package fleet

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Requirement is one term of a selector.
type Requirement struct {
	Key string
	// Op is "=", "!=", "exists" or "!exists".
	Op    string
	Value string
}

// Selector is a conjunction of requirements; the empty selector matches
// every sandbox.
type Selector []Requirement

// ParseSelector parses "k=v,k2!=v2,k3,!k4" (k==v is k=v).
func ParseSelector(s string) (Selector, error) {
	var sel Selector
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty selector: want KEY=VALUE[,KEY!=VALUE][,KEY][,!KEY]")
	}
	for _, term := range strings.Split(s, ",") {
		term = strings.TrimSpace(term)
		var r Requirement
		switch {
		case term == "":
			return nil, fmt.Errorf("selector %q: empty term", s)
		case strings.Contains(term, "!="):
			r.Key, r.Value, _ = strings.Cut(term, "!=")
			r.Op = "!="
		case strings.Contains(term, "=="):
			r.Key, r.Value, _ = strings.Cut(term, "==")
			r.Op = "="
		case strings.Contains(term, "="):
			r.Key, r.Value, _ = strings.Cut(term, "=")
			r.Op = "="
		case strings.HasPrefix(term, "!"):
			r.Key, r.Op = term[1:], "!exists"
		default:
			r.Key, r.Op = term, "exists"
		}
		r.Key, r.Value = strings.TrimSpace(r.Key), strings.TrimSpace(r.Value)
		if r.Key == "" || strings.ContainsAny(r.Key, "!=<> ") || strings.ContainsAny(r.Value, "!=<> ") {
			return nil, fmt.Errorf("selector %q: bad term %q (want KEY=VALUE, KEY!=VALUE, KEY or !KEY)", s, term)
		}
		sel = append(sel, r)
	}
	return sel, nil
}

// Matches reports whether labels satisfy every requirement.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s {
		v, ok := labels[r.Key]
		switch r.Op {
		case "=":
			if !ok || v != r.Value {
				return false
			}
		case "!=":
			if ok && v == r.Value {
				return false
			}
		case "exists":
			if !ok {
				return false
			}
		case "!exists":
			if ok {
				return false
			}
		}
	}
	return true
}

// String is the selector in its parsed form.
func (s Selector) String() string {
	var p []string
	for _, r := range s {
		switch r.Op {
		case "exists":
			p = append(p, r.Key)
		case "!exists":
			p = append(p, "!"+r.Key)
		default:
			p = append(p, r.Key+r.Op+r.Value)
		}
	}
	return strings.Join(p, ",")
}

// DefaultParallel is how many sandboxes Run works on at once by default.
const DefaultParallel = 16

// Run calls fn for each name, at most parallel at a time (<= 0: DefaultParallel),
// and returns the results in the order of the sorted names. fn must honour
// ctx; a cancelled ctx still yields one result per name.
func Run[T any](ctx context.Context, names []string, parallel int, fn func(ctx context.Context, name string) T) []T {
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	names = append([]string(nil), names...)
	sort.Strings(names)
	out := make([]T, len(names))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = fn(ctx, n)
		}()
	}
	wg.Wait()
	return out
}
