package protocol

// Every on-wire constant lives in this file, except the sync stream's, which
// live in sync.go. const_test.go pins their values:
// renumbering anything here is a protocol break and must bump ProtocolVersion.

// Magic opens the handshake in both directions. It is not printable ASCII, so
// login-shell noise written to the channel before sandboxd starts can never be
// mistaken for it; the reader skips everything before it (up to MaxNoise bytes).
var Magic = [8]byte{0x00, 0xD5, 0x9C, 0x1E, 0xA7, 0x3B, 0xF0, 0x0D}

// Protocol versions. Each side announces the range it speaks; the session
// uses the highest version both speak.
//
// History:
//   - 1 (2026-11-25): handshake, exec/attach/info streams.
const (
	ProtocolVersion    = 1 // newest version this build speaks
	MinProtocolVersion = 1 // oldest version this build still speaks
)

// Limits.
const (
	// HeaderSize is the size of a frame header: type (1 byte) + payload length (4 bytes, big endian).
	HeaderSize = 5
	// MaxPayload is the hard limit on one frame's payload. A larger length ends the stream with ErrFrameTooLarge.
	MaxPayload = 1 << 20
	// MaxControlPayload is the limit for JSON control messages other than exec requests.
	MaxControlPayload = 64 << 10
	// DataChunk is the largest data payload writers put in one frame, so that
	// interactive streams interleave with bulk ones on the shared session.
	DataChunk = 32 << 10
	// MaxNoise is how many bytes of pre-handshake noise a reader skips before giving up.
	MaxNoise = 64 << 10
	// MaxArgs, MaxEnv bound an exec request.
	MaxArgs = 4096
	MaxEnv  = 4096
	// MaxIDLen bounds process ids and idempotency keys.
	MaxIDLen = 128
	// MaxRing is the largest output ring a client may ask sandboxd to keep per process.
	MaxRing = 64 << 20
	// DefaultRing is the ring size when the request leaves it zero.
	DefaultRing = 1 << 20
	// MaxGraceMs bounds how long a durable process outlives its last client.
	MaxGraceMs = 24 * 60 * 60 * 1000
)

// FrameType identifies a frame. Request types (0x10-0x7f) may only appear as
// the first frame of a stream; each request type is a stream kind.
type FrameType uint8

const (
	FrameInvalid FrameType = 0x00
	FrameHello   FrameType = 0x01 // handshake only, before yamux
	FrameError   FrameType = 0x02 // terminal error on a stream: ErrorMsg

	// Requests: the first frame of a stream.
	FrameExecStart  FrameType = 0x10 // ExecStart
	FrameExecAttach FrameType = 0x11 // ExecAttach
	FrameInfo       FrameType = 0x12 // InfoRequest (reply: FrameInfoReply)
	FrameExecList   FrameType = 0x13 // ExecListRequest (reply: FrameExecListReply)
	// 0x20-0x2f sync (sync.go), 0x40-0x4f forward (forward.go), 0x50-0x5f mcp
	// (mcp.go). Reserved for later stream kinds: 0x30-0x3f events.

	// Replies and in-stream frames.
	FrameExecStarted   FrameType = 0x80 // ExecStarted
	FrameStdin         FrameType = 0x81 // raw bytes
	FrameStdinEOF      FrameType = 0x82 // empty
	FrameStdout        FrameType = 0x83 // raw bytes
	FrameStderr        FrameType = 0x84 // raw bytes
	FrameSignal        FrameType = 0x85 // SignalMsg
	FrameResize        FrameType = 0x86 // ResizeMsg
	FrameExit          FrameType = 0x87 // ExitMsg, last frame of an exec stream
	FrameDetach        FrameType = 0x88 // empty: client leaves, durable process keeps running
	FrameInfoReply     FrameType = 0x89 // Info
	FrameExecListReply FrameType = 0x8A // ExecList
	// FrameExecDone (empty) is sent only to the controller daemon, on an API
	// connection that carries one exec after another: the client has read
	// the exit and sends nothing more for this exec; the next frame opens the
	// next one. sandboxd never sees it.
	FrameExecDone FrameType = 0x8B
)

// Error codes carried by FrameError.
const (
	CodeBadRequest   = "bad_request"   // the request failed validation
	CodeNotFound     = "not_found"     // the command does not exist (exec exit 127)
	CodeCannotInvoke = "cannot_invoke" // the command exists but cannot be run (exec exit 126)
	CodeNoProcess    = "no_process"    // attach to an unknown or expired process id
	CodeBusy         = "busy"          // attach to a process that already has a client
	CodeUnsupported  = "unsupported"   // stream kind or feature not offered
	CodeLimit        = "limit"         // a frame or resource limit was hit
	CodeInternal     = "internal"      // sandboxd failed
)

// Capabilities announced in Hello.Caps.
const (
	CapExec    = "exec"
	CapPTY     = "pty"
	CapAttach  = "attach"
	CapSync    = "sync"
	CapEvents  = "events"
	CapForward = "forward"
	CapMCP     = "mcp"
	// CapMCPRules: MCPServe's Rules and DenyRules are enforced. A peer
	// without it would ignore them, so the controller refuses to start a
	// server with rules there.
	CapMCPRules = "mcp-rules"
	// CapSyncDirSums: the sync engine speaks directory digests
	// (sync-dir-sums, sync-want; spec.md 7.4), so an unchanged directory
	// costs a digest on the wire instead of its entries.
	CapSyncDirSums = "sync-dir-sums"
)

// Roles in Hello.Role.
const (
	RoleController = "controller"
	RoleSandboxd   = "sandboxd"
)
