// Package execcli is `darkshell exec` once its process has started: it
// drives the stream (stdin, output, signals, window size), prints the
// -o json document, and maps the end to exec's exit statuses. Both the
// full CLI (controller/cli) and the thin front binary (cmd/darkshell) use
// it, so it imports nothing heavy: the front's start-up is on the hot path
// of every fresh `darkshell exec`.
package execcli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/bohica-labs/darkshell/controller/stream"
	"github.com/bohica-labs/darkshell/protocol"
)

// Exit statuses of `darkshell exec` besides the command's own.
const (
	ExitExecFailed   = 125 // darkshell failed (unknown sandbox, transport down)
	ExitCannotInvoke = 126
	ExitNotFound     = 127
)

// Failure is an exec that ended without the command's own status: Code is
// darkshell's exit status, Msg what to print (empty: nothing).
type Failure struct {
	Code int
	Msg  string
}

func (f *Failure) Error() string { return f.Msg }

// Fail maps a failure before or during exec to exec's exit statuses;
// remote is the error code the daemon or sandboxd gave, if any.
func Fail(name string, err error, remote string) *Failure {
	if re, ok := protocol.AsRemoteError(err); ok && remote == "" {
		remote = re.Code
	}
	msg := err.Error()
	if name != "" {
		msg = fmt.Sprintf("exec in %s: %s", name, msg)
	}
	switch remote {
	case protocol.CodeNotFound:
		return &Failure{ExitNotFound, msg}
	case protocol.CodeCannotInvoke:
		return &Failure{ExitCannotInvoke, msg}
	}
	if errors.Is(err, stream.ErrNoExit) {
		msg += " (the connection to the sandbox broke; a --durable command keeps running: see `darkshell sandbox ps`)"
	}
	return &Failure{ExitExecFailed, msg}
}

// StatusOf is the exit status err stands for.
func StatusOf(err error) int {
	var f *Failure
	if errors.As(err, &f) {
		return f.Code
	}
	return ExitExecFailed
}

// IO is where a driven process's input and output go.
type IO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Drive pumps stdin, signals and window changes into p and its output out,
// and returns nil or a *Failure carrying the exit status (the command's own
// when it is not 0).
func Drive(ctx context.Context, p *stream.Proc, s IO, stdin, tty bool) error {
	defer p.Close()
	sigs := make(chan os.Signal, 8)
	if tty {
		signal.Notify(sigs, syscall.SIGWINCH)
	} else {
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	}
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			if s == syscall.SIGWINCH {
				if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
					p.Resize(uint16(h), uint16(w))
				}
				continue
			}
			p.Signal(int(s.(syscall.Signal)))
		}
	}()
	if stdin {
		go p.CopyStdin(s.Stdin)
	}
	exit, err := p.Wait(s.Stdout, s.Stderr)
	if err != nil {
		return Fail("", err, "")
	}
	if exit.TimedOut {
		fmt.Fprintf(s.Stderr, "darkshell: command timed out after %s and was killed\n", time.Duration(exit.DurationMs)*time.Millisecond)
	}
	if st := exit.Status(); st != 0 {
		return &Failure{Code: st}
	}
	return nil
}

// Result is `exec -o json`'s one document.
type Result struct {
	ID     string `json:"id,omitempty"`
	PID    int    `json:"pid,omitempty"`
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	// Binary output that is not UTF-8 is given base64-encoded instead.
	StdoutBase64 []byte `json:"stdout_base64,omitempty"`
	StderrBase64 []byte `json:"stderr_base64,omitempty"`
	ExitCode     int    `json:"exit_code"`
	Signal       int    `json:"signal,omitempty"`
	TimedOut     bool   `json:"timed_out,omitempty"`
	DurationMs   int64  `json:"duration_ms"`
	// Status is what the process exit status of this command is.
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
}

// PrintJSON prints r as exec's JSON document.
func PrintJSON(w io.Writer, r Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// JSON collects the whole output and prints one JSON document; the error
// is nil or a *Failure without a message (the document says it all).
func JSON(ctx context.Context, p *stream.Proc, s IO, stdin bool) error {
	defer p.Close()
	if stdin {
		go p.CopyStdin(s.Stdin)
	}
	var out, errb bytes.Buffer
	res := Result{ID: p.Started.ID, PID: p.Started.PID}
	exit, err := p.Wait(&out, &errb)
	setText := func(b []byte, s *string, raw *[]byte) {
		if utf8.Valid(b) {
			*s = string(b)
		} else {
			*raw = b
		}
	}
	setText(out.Bytes(), &res.Stdout, &res.StdoutBase64)
	setText(errb.Bytes(), &res.Stderr, &res.StderrBase64)
	var ret *Failure
	if err != nil {
		ret = Fail("", err, "")
		res.Error, res.Status = err.Error(), ret.Code
	} else {
		res.ExitCode, res.Signal, res.TimedOut, res.DurationMs, res.Status = exit.Code, exit.Signal, exit.TimedOut, exit.DurationMs, exit.Status()
		if res.Status != 0 {
			ret = &Failure{Code: res.Status}
		}
	}
	if perr := PrintJSON(s.Stdout, res); perr != nil {
		return perr
	}
	if ret == nil {
		return nil
	}
	ret.Msg = ""
	return ret
}

// Request builds the ExecStart of exec's flags, or says what is wrong.
func Request(argv []string, f Flags) (*protocol.ExecStart, error) {
	if f.Shell && len(argv) != 1 {
		argv = []string{strings.Join(argv, " ")}
	}
	for _, e := range f.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return nil, fmt.Errorf("-e %q is not KEY=VALUE", e)
		}
	}
	if f.Timeout < 0 {
		return nil, errors.New("--timeout must not be negative")
	}
	req := &protocol.ExecStart{
		Argv: argv, Shell: f.Shell, Env: f.Env, Dir: f.Dir, Stdin: f.Interactive || f.TTY,
		TimeoutMs: f.Timeout.Milliseconds(), Durable: f.Durable || f.Key != "", IdempotencyKey: f.Key,
	}
	if f.TTY {
		rows, cols := uint16(24), uint16(80)
		if w, h, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
			rows, cols = uint16(h), uint16(w)
		}
		t := os.Getenv("TERM")
		if t == "" {
			t = "xterm-256color"
		}
		req.PTY = &protocol.PTY{Term: t, Rows: rows, Cols: cols}
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return req, nil
}

// RawTerminal puts stdin in raw mode for a PTY exec; the returned function
// restores it.
func RawTerminal() func() {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return func() {}
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return func() {}
	}
	return func() { term.Restore(fd, old) }
}

// Flags are exec's flags.
type Flags struct {
	TTY, Interactive, Shell, Durable bool
	Env                              []string
	Dir, Key                         string
	Timeout                          time.Duration
}
