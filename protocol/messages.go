package protocol

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrorMsg is the payload of FrameError.
type ErrorMsg struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (m *ErrorMsg) Validate() error {
	if m == nil {
		return errors.New("nil error message")
	}
	if m.Code == "" {
		return errors.New("error code missing")
	}
	return nil
}

// PTY asks for a pseudo-terminal.
type PTY struct {
	Term string `json:"term,omitempty"`
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// ExecStart opens an exec stream (FrameExecStart).
type ExecStart struct {
	// Argv is run directly with execve unless Shell is set, in which case
	// Argv must hold exactly one string run as `sh -c ARGV[0]`.
	Argv  []string `json:"argv"`
	Shell bool     `json:"shell,omitempty"`
	// Env entries (KEY=VALUE) added to sandboxd's base environment; a later entry wins.
	Env []string `json:"env,omitempty"`
	// Dir is the working directory; empty means sandboxd's default (the workspace or $HOME).
	Dir string `json:"dir,omitempty"`
	// Stdin: when false the process gets /dev/null and stdin frames are refused.
	Stdin bool `json:"stdin,omitempty"`
	// PTY, when set, runs the process on a pseudo-terminal (stdout carries both streams).
	PTY *PTY `json:"pty,omitempty"`
	// TimeoutMs kills the process group when it expires (0: none).
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
	// Durable keeps the process running for GraceMs after its client goes away,
	// so that a client can re-attach. Non-durable processes are killed with their stream.
	Durable bool  `json:"durable,omitempty"`
	GraceMs int64 `json:"grace_ms,omitempty"`
	// IdempotencyKey: a second start with the same key attaches to the first
	// process instead of running the command again (implies Durable).
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// RingBytes is how much recent output sandboxd keeps for re-attach (0: DefaultRing).
	RingBytes int `json:"ring_bytes,omitempty"`
}

func (m *ExecStart) Validate() error {
	if m == nil {
		return errors.New("nil exec request")
	}
	if len(m.Argv) == 0 || m.Argv[0] == "" {
		return errors.New("argv is empty: give a command to run")
	}
	if len(m.Argv) > MaxArgs {
		return fmt.Errorf("%d arguments, limit %d", len(m.Argv), MaxArgs)
	}
	if m.Shell && len(m.Argv) != 1 {
		return fmt.Errorf("shell mode takes one command string, got %d", len(m.Argv))
	}
	for _, a := range m.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return errors.New("argument contains a NUL byte")
		}
	}
	if len(m.Env) > MaxEnv {
		return fmt.Errorf("%d environment entries, limit %d", len(m.Env), MaxEnv)
	}
	for _, e := range m.Env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" || strings.IndexByte(e, 0) >= 0 {
			return fmt.Errorf("environment entry %q is not KEY=VALUE", truncate(e, 40))
		}
	}
	if strings.IndexByte(m.Dir, 0) >= 0 {
		return errors.New("dir contains a NUL byte")
	}
	if m.TimeoutMs < 0 {
		return errors.New("negative timeout")
	}
	if m.GraceMs < 0 || m.GraceMs > MaxGraceMs {
		return fmt.Errorf("grace %d ms out of range 0..%d", m.GraceMs, MaxGraceMs)
	}
	if err := validID("idempotency key", m.IdempotencyKey, true); err != nil {
		return err
	}
	if m.RingBytes < 0 || m.RingBytes > MaxRing {
		return fmt.Errorf("ring of %d bytes out of range 0..%d", m.RingBytes, MaxRing)
	}
	if m.PTY != nil && (m.PTY.Rows == 0 || m.PTY.Cols == 0) {
		return errors.New("pty needs rows and cols")
	}
	return nil
}

// ExecAttach re-attaches to a running or recently finished process (FrameExecAttach).
type ExecAttach struct {
	ID string `json:"id"`
	// Offset is the number of output bytes (stdout+stderr, in order) the client
	// already has; sandboxd replays from there, or from the oldest byte it kept.
	Offset int64 `json:"offset"`
	Stdin  bool  `json:"stdin,omitempty"`
}

func (m *ExecAttach) Validate() error {
	if m == nil {
		return errors.New("nil attach request")
	}
	if err := validID("process id", m.ID, false); err != nil {
		return err
	}
	if m.Offset < 0 {
		return errors.New("negative offset")
	}
	return nil
}

// ExecStarted answers ExecStart and ExecAttach.
type ExecStarted struct {
	ID  string `json:"id"`
	PID int    `json:"pid"`
	// Attached is true when this stream joined an existing process (re-attach,
	// or a repeated idempotency key) instead of starting one.
	Attached bool `json:"attached,omitempty"`
	// Offset is the output offset of the first byte that follows on this stream.
	// Lost counts output bytes the client asked for that the ring no longer held.
	Offset int64 `json:"offset"`
	Lost   int64 `json:"lost,omitempty"`
}

func (m *ExecStarted) Validate() error {
	if m == nil {
		return errors.New("nil exec-started")
	}
	if err := validID("process id", m.ID, false); err != nil {
		return err
	}
	if m.Offset < 0 || m.Lost < 0 {
		return errors.New("negative offset")
	}
	return nil
}

// SignalMsg forwards a signal to the process group (FrameSignal).
type SignalMsg struct {
	Signal int `json:"signal"`
}

func (m *SignalMsg) Validate() error {
	if m == nil || m.Signal <= 0 || m.Signal > 64 {
		return errors.New("signal out of range 1..64")
	}
	return nil
}

// ResizeMsg changes the PTY window size (FrameResize).
type ResizeMsg struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

func (m *ResizeMsg) Validate() error {
	if m == nil || m.Rows == 0 || m.Cols == 0 {
		return errors.New("resize needs rows and cols")
	}
	return nil
}

// ExitMsg ends an exec stream (FrameExit).
type ExitMsg struct {
	// Code is the exit status, or -1 when killed by a signal.
	Code int `json:"code"`
	// Signal that killed the process, 0 if it exited.
	Signal   int  `json:"signal,omitempty"`
	TimedOut bool `json:"timed_out,omitempty"`
	// DurationMs from start to exit.
	DurationMs int64 `json:"duration_ms"`
}

func (m *ExitMsg) Validate() error {
	if m == nil {
		return errors.New("nil exit")
	}
	if m.Signal < 0 || m.Signal > 64 {
		return errors.New("signal out of range")
	}
	if m.Signal == 0 && (m.Code < 0 || m.Code > 255) {
		return fmt.Errorf("exit code %d out of range 0..255", m.Code)
	}
	return nil
}

// Status maps an exit to a shell-style status: the code, or 128+signal.
func (m *ExitMsg) Status() int {
	if m.Signal > 0 {
		return 128 + m.Signal
	}
	return m.Code
}

// InfoRequest asks sandboxd about itself (FrameInfo).
type InfoRequest struct{}

func (m *InfoRequest) Validate() error { return nil }

// Info answers InfoRequest.
type Info struct {
	Hello
	PID       int   `json:"pid"`
	UptimeMs  int64 `json:"uptime_ms"`
	Processes int   `json:"processes"`
	RSSBytes  int64 `json:"rss_bytes,omitempty"`
}

func (m *Info) Validate() error {
	if m == nil {
		return errors.New("nil info")
	}
	return m.Hello.Validate()
}

// ExecListRequest asks for the processes sandboxd tracks (FrameExecList).
type ExecListRequest struct{}

func (m *ExecListRequest) Validate() error { return nil }

// ProcState describes one tracked process.
type ProcState struct {
	ID             string   `json:"id"`
	PID            int      `json:"pid"`
	Argv           []string `json:"argv"`
	IdempotencyKey string   `json:"idempotency_key,omitempty"`
	Running        bool     `json:"running"`
	Attached       bool     `json:"attached"`
	Exit           *ExitMsg `json:"exit,omitempty"`
	OutputBytes    int64    `json:"output_bytes"`
}

// ExecList answers ExecListRequest.
type ExecList struct {
	Processes []ProcState `json:"processes"`
}

func (m *ExecList) Validate() error {
	if m == nil {
		return errors.New("nil exec list")
	}
	return nil
}

func validID(what, s string, optional bool) error {
	if s == "" {
		if optional {
			return nil
		}
		return fmt.Errorf("%s missing", what)
	}
	if len(s) > MaxIDLen {
		return fmt.Errorf("%s longer than %d bytes", what, MaxIDLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not UTF-8", what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s contains a control character", what)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
