// Package provider stores credentials on the host: one record per provider
// under $DARKSHELL_HOME/providers, directory 0700 and files 0600, written
// atomically. Values are handed only to host-side MCP bridges (as the
// server's environment); they are never sent to a sandbox and never listed.
package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bohica-labs/darkshell/controller/state"
)

// Types a provider may have.
var Types = []string{"generic", "github", "anthropic", "openai"}

var (
	// ErrNotFound: no provider by that name.
	ErrNotFound = errors.New("no such provider")
	// ErrExists: create with a name already taken.
	ErrExists = errors.New("provider already exists")
)

// Provider is one stored credential set.
type Provider struct {
	Name        string            `json:"name"`
	Type        string            `json:"type"`
	Credentials map[string]string `json:"credentials"`
	Created     time.Time         `json:"created"`
	Updated     time.Time         `json:"updated"`
	// Expires is when credentials stop working (--expires), by key;
	// see expiry.go.
	Expires map[string]time.Time `json:"expires,omitempty"`
}

// Summary is what may be shown: names of keys, never values.
type Summary struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"`
	Keys    []string  `json:"keys"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// Expires: the earliest expiry of its credentials, when one is set.
	Expires *time.Time `json:"expires,omitempty"`
}

// Summary returns p without values.
func (p *Provider) Summary() Summary {
	keys := make([]string, 0, len(p.Credentials))
	for k := range p.Credentials {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return Summary{Name: p.Name, Type: p.Type, Keys: keys, Created: p.Created, Updated: p.Updated, Expires: p.NextExpiry()}
}

// Values returns the credential values (for redaction).
func (p *Provider) Values() []string {
	out := make([]string, 0, len(p.Credentials))
	for _, v := range p.Credentials {
		out = append(out, v)
	}
	return out
}

// keyRE is compiled on first use: CLI start-up pays for no regexp it does not run.
var keyRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`) })

// Validate checks a provider record.
func (p *Provider) Validate() error {
	if err := state.ValidName(p.Name); err != nil {
		return fmt.Errorf("provider name: %w", err)
	}
	ok := false
	for _, t := range Types {
		ok = ok || t == p.Type
	}
	if !ok {
		return fmt.Errorf("provider type %q: use one of %s", p.Type, strings.Join(Types, ", "))
	}
	if len(p.Credentials) == 0 {
		return errors.New("a provider needs at least one credential (--credential KEY=VALUE or --from-env KEY)")
	}
	for k, v := range p.Credentials {
		if !keyRE().MatchString(k) {
			return fmt.Errorf("credential key %q: must be an environment variable name", k)
		}
		if v == "" || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("credential %s: empty value or NUL byte", k)
		}
	}
	return nil
}

// Store is the provider directory of one installation.
type Store struct{ dir string }

// Open returns the store of h.
func Open(h *state.Home) *Store { return &Store{dir: filepath.Join(h.Dir, "providers")} }

func (s *Store) path(name string) string { return filepath.Join(s.dir, name+".json") }

func (s *Store) write(p *Provider) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("unable to create the provider store: %w", err)
	}
	if err := os.Chmod(s.dir, 0o700); err != nil {
		return fmt.Errorf("unable to restrict the provider store: %w", err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(s.path(p.Name), b, 0o600)
}

// Create stores a new provider.
func (s *Store) Create(p *Provider) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if _, err := os.Stat(s.path(p.Name)); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, p.Name)
	}
	now := time.Now().UTC()
	p.Created, p.Updated = now, now
	return s.write(p)
}

// Update merges creds into a provider (rotation); a key with an empty
// value is removed.
func (s *Store) Update(name string, creds map[string]string) (*Provider, error) {
	p, err := s.Get(name)
	if err != nil {
		return nil, err
	}
	for k, v := range creds {
		if v == "" {
			delete(p.Credentials, k)
		} else {
			p.Credentials[k] = v
		}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	p.Updated = time.Now().UTC()
	return p, s.write(p)
}

// Get reads one provider, values included.
func (s *Store) Get(name string) (*Provider, error) {
	if state.ValidName(name) != nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	b, err := os.ReadFile(s.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("unable to read provider %s: %w", name, err)
	}
	var p Provider
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("unable to parse provider %s: %w", name, err)
	}
	if p.Credentials == nil {
		p.Credentials = map[string]string{}
	}
	return &p, nil
}

// List returns every provider's summary.
func (s *Store) List() ([]Summary, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return []Summary{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("unable to list providers: %w", err)
	}
	out := []Summary{}
	for _, e := range ents {
		n, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(n, ".") {
			continue
		}
		if p, err := s.Get(n); err == nil {
			out = append(out, p.Summary())
		}
	}
	return out, nil
}

// Delete removes a provider.
func (s *Store) Delete(name string) error {
	if _, err := s.Get(name); err != nil {
		return err
	}
	if err := os.Remove(s.path(name)); err != nil {
		return fmt.Errorf("unable to delete provider %s: %w", name, err)
	}
	return nil
}
