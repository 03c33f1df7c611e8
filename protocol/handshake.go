package protocol

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
)

// Hello is the handshake message each side sends right after Magic.
type Hello struct {
	Role         string `json:"role"`
	ProtocolMin  int    `json:"protocol_min"`
	ProtocolMax  int    `json:"protocol_max"`
	BuildVersion string `json:"build_version"`
	// Caps lists the stream kinds and features this side offers (Cap* constants).
	Caps []string `json:"caps,omitempty"`
	OS   string   `json:"os,omitempty"`
	Arch string   `json:"arch,omitempty"`
	// EventFidelity names the best event source available: "ebpf", "procfs" or "" (none).
	EventFidelity string `json:"event_fidelity,omitempty"`
	// LandlockABI is the Landlock ABI in force for sandboxd (0: none).
	LandlockABI int `json:"landlock_abi,omitempty"`
	// Confined lists the confinements active around sandboxd (landlock, seccomp, netns, ...).
	Confined []string `json:"confined,omitempty"`
}

func (h *Hello) Validate() error {
	if h == nil {
		return errors.New("nil hello")
	}
	if h.Role != RoleController && h.Role != RoleSandboxd {
		return fmt.Errorf("unknown role %q", truncate(h.Role, 32))
	}
	if h.ProtocolMin < 1 || h.ProtocolMax < h.ProtocolMin {
		return fmt.Errorf("bad protocol range %d..%d", h.ProtocolMin, h.ProtocolMax)
	}
	if h.BuildVersion == "" || len(h.BuildVersion) > 256 {
		return errors.New("build version missing or too long")
	}
	if len(h.Caps) > 64 || len(h.Confined) > 64 {
		return errors.New("too many capabilities")
	}
	return nil
}

// Has reports whether the peer announced capability c.
func (h *Hello) Has(c string) bool { return slices.Contains(h.Caps, c) }

// NewHello returns this build's hello for role.
func NewHello(role, build string, caps ...string) Hello {
	return Hello{
		Role:         role,
		ProtocolMin:  MinProtocolVersion,
		ProtocolMax:  ProtocolVersion,
		BuildVersion: build,
		Caps:         caps,
		OS:           runtime.GOOS,
		Arch:         runtime.GOARCH,
	}
}

// SkewError says the two sides share no protocol version; it names both builds.
type SkewError struct {
	Local, Remote Hello
}

func (e *SkewError) Error() string {
	return fmt.Sprintf("protocol version skew: %s %s speaks protocol %d..%d, %s %s speaks %d..%d; use matching darkshell and sandboxd builds",
		e.Local.Role, e.Local.BuildVersion, e.Local.ProtocolMin, e.Local.ProtocolMax,
		e.Remote.Role, e.Remote.BuildVersion, e.Remote.ProtocolMin, e.Remote.ProtocolMax)
}

func (e *SkewError) Unwrap() error { return ErrVersionSkew }

// Negotiate returns the highest protocol version both hellos speak.
func Negotiate(local, remote Hello) (int, error) {
	v := min(local.ProtocolMax, remote.ProtocolMax)
	if v < max(local.ProtocolMin, remote.ProtocolMin) {
		return 0, &SkewError{Local: local, Remote: remote}
	}
	return v, nil
}

// WriteHello writes Magic followed by the hello frame.
func WriteHello(w io.Writer, h Hello) error {
	if err := h.Validate(); err != nil {
		return err
	}
	b := append([]byte(nil), Magic[:]...)
	p, err := jsonMarshal(h)
	if err != nil {
		return err
	}
	_, err = w.Write(AppendFrame(b, FrameHello, p))
	return err
}

// ReadHello skips noise up to Magic (at most MaxNoise bytes), then reads and
// validates the peer's hello. It never reads past the hello frame, so the
// caller can hand r to the multiplexer afterwards. Noise holds what was skipped.
// If the peer answers with an error frame instead, that error is returned.
func ReadHello(r io.Reader) (h Hello, noise []byte, err error) {
	var win [len(Magic)]byte
	var b [1]byte
	seen := 0
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			if seen == 0 && err == io.EOF {
				return h, noise, fmt.Errorf("%w: channel closed before any output", ErrNoMagic)
			}
			return h, noise, fmt.Errorf("%w: channel closed after %d bytes of other output: %q", ErrNoMagic, seen, tail(noise))
		}
		seen++
		copy(win[:], win[1:])
		win[len(win)-1] = b[0]
		if seen >= len(Magic) && win == Magic {
			if n := seen - len(Magic); n < len(noise) {
				noise = noise[:n]
			}
			break
		}
		if len(noise) < MaxNoise {
			noise = append(noise, b[0])
		}
		if seen > MaxNoise+len(Magic) {
			return h, noise, fmt.Errorf("%w within %d bytes: %q", ErrNoMagic, MaxNoise, tail(noise))
		}
	}
	f, err := ReadFrame(r, MaxControlPayload)
	if err != nil {
		return h, noise, fmt.Errorf("read hello: %w", err)
	}
	if f.Type == FrameError {
		return h, noise, ErrorFromFrame(f)
	}
	if err := DecodeMsg(f, FrameHello, &h); err != nil {
		return h, noise, err
	}
	return h, noise, nil
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = "..." + s[len(s)-200:]
	}
	return s
}
