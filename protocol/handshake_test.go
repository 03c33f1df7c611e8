package protocol

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

func TestReadHelloSkipsNoise(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString("Welcome to host\r\nlast login: yesterday\n\x00\xD5 partial magic\n")
	h := NewHello(RoleSandboxd, "v1.2.3", CapExec, CapPTY)
	if err := WriteHello(&buf, h); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("after")
	got, noise, err := ReadHello(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.BuildVersion != "v1.2.3" || !got.Has(CapPTY) || got.Has(CapMCP) {
		t.Fatalf("hello %+v", got)
	}
	if !strings.HasPrefix(string(noise), "Welcome to host") || !strings.HasSuffix(string(noise), "partial magic\n") {
		t.Fatalf("noise %q", noise)
	}
	if rest, _ := io.ReadAll(&buf); string(rest) != "after" {
		t.Fatalf("ReadHello read past the hello frame: rest %q", rest)
	}
}

func TestReadHelloFailures(t *testing.T) {
	if _, _, err := ReadHello(strings.NewReader("")); !errors.Is(err, ErrNoMagic) {
		t.Errorf("empty: %v", err)
	}
	if _, _, err := ReadHello(strings.NewReader("sh: 1: sandboxd: not found\n")); !errors.Is(err, ErrNoMagic) || !strings.Contains(err.Error(), "not found") {
		t.Errorf("shell error: %v", err)
	}
	noise := strings.Repeat("y", MaxNoise+100)
	if _, _, err := ReadHello(strings.NewReader(noise)); !errors.Is(err, ErrNoMagic) {
		t.Errorf("endless noise: %v", err)
	}
	var buf bytes.Buffer
	buf.Write(Magic[:])
	buf.Write(AppendFrame(nil, FrameHello, []byte(`{"role":"sandboxd"}`)))
	if _, _, err := ReadHello(&buf); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid hello: %v", err)
	}
	buf.Reset()
	buf.Write(Magic[:])
	buf.Write(AppendFrame(nil, FrameHello, make([]byte, MaxControlPayload+1)))
	if _, _, err := ReadHello(&buf); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("oversized hello: %v", err)
	}
}

func TestHandshakeSkew(t *testing.T) {
	a, b := net.Pipe()
	old := NewHello(RoleSandboxd, "sandboxd-old")
	old.ProtocolMin, old.ProtocolMax = 7, 9
	errc := make(chan error, 1)
	go func() {
		_, _, err := Handshake(b, old)
		errc <- err
		b.Close()
	}()
	_, _, err := Handshake(a, NewHello(RoleController, "darkshell-new"))
	var skew *SkewError
	if !errors.As(err, &skew) || !errors.Is(err, ErrVersionSkew) {
		t.Fatalf("err = %v, want skew", err)
	}
	for _, s := range []string{"sandboxd-old", "darkshell-new", "7..9", "1..1"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("skew error %q lacks %q", err, s)
		}
	}
	a.Close()
	<-errc
}

func TestHandshakeOK(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go Handshake(b, NewHello(RoleSandboxd, "s1", CapExec))
	remote, v, err := Handshake(a, NewHello(RoleController, "c1"))
	if err != nil || v != ProtocolVersion || remote.Role != RoleSandboxd || remote.BuildVersion != "s1" {
		t.Fatalf("remote %+v v %d err %v", remote, v, err)
	}
}
