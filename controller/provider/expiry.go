package provider

import (
	"fmt"
	"sort"
	"time"
)

// ExpiryWarning is how long before a credential expires health warns.
const ExpiryWarning = 72 * time.Hour

// NextExpiry is the earliest expiry of p's credentials (nil: none set).
func (p *Provider) NextExpiry() *time.Time {
	var first *time.Time
	for k, t := range p.Expires {
		if _, ok := p.Credentials[k]; !ok {
			continue
		}
		if first == nil || t.Before(*first) {
			t := t
			first = &t
		}
	}
	return first
}

// Expiry is one credential's expiry.
type Expiry struct {
	Provider string    `json:"provider"`
	Key      string    `json:"key"`
	Expires  time.Time `json:"expires"`
}

// Expiring lists p's credentials with an expiry, earliest first.
func (p *Provider) Expiring() []Expiry {
	var out []Expiry
	for k, t := range p.Expires {
		if _, ok := p.Credentials[k]; ok {
			out = append(out, Expiry{Provider: p.Name, Key: k, Expires: t})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Expires.Before(out[j].Expires) })
	return out
}

// SetExpiry records when the credentials keys of provider name expire
// (zero t: they do not).
func (s *Store) SetExpiry(name string, keys []string, t time.Time) (*Provider, error) {
	p, err := s.Get(name)
	if err != nil {
		return nil, err
	}
	if p.Expires == nil {
		p.Expires = map[string]time.Time{}
	}
	for _, k := range keys {
		if _, ok := p.Credentials[k]; !ok {
			return nil, fmt.Errorf("provider %s has no credential %s", name, k)
		}
		if t.IsZero() {
			delete(p.Expires, k)
		} else {
			p.Expires[k] = t.UTC()
		}
	}
	// Keys removed by an update lose their expiry too.
	for k := range p.Expires {
		if _, ok := p.Credentials[k]; !ok {
			delete(p.Expires, k)
		}
	}
	return p, s.write(p)
}
