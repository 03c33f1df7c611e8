package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/bohica-labs/darkshell/controller/provider"
)

// parseExpiry reads --expires: an RFC 3339 time, or a duration from now
// (Go syntax, or Nd for days).
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.ParseFloat(n, 64); err == nil && days > 0 {
			return now.Add(time.Duration(days * 24 * float64(time.Hour))), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d), nil
	}
	return time.Time{}, usagef("--expires %q: want an RFC 3339 time (2026-12-31T00:00:00Z) or a duration from now (720h, 30d)", s)
}

// expiryOf is the EXPIRES column: "-", "in 3d4h", or "EXPIRED".
func expiryOf(t *time.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	d := t.Sub(now)
	if d <= 0 {
		return "EXPIRED " + t.Local().Format(time.DateTime)
	}
	s := "in " + d.Round(time.Minute).String()
	if d < provider.ExpiryWarning {
		s += " (soon)"
	}
	return s
}

// warnExpiry warns on w when a provider's credentials expire soon.
func warnExpiry(w io.Writer, name string, t *time.Time, now time.Time) {
	if t != nil && t.Sub(now) < provider.ExpiryWarning {
		fmt.Fprintf(w, "darkshell: warning: provider %s has credentials expiring %s\n", name, expiryOf(t, now))
	}
}
