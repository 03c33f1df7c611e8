package protocol

import "errors"

var (
	// ErrFrameTooLarge is returned when a frame's length exceeds its limit.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrTruncated is returned when the stream ends inside a frame.
	ErrTruncated = errors.New("truncated frame")
	// ErrBadFrame is returned for a frame that cannot be decoded.
	ErrBadFrame = errors.New("malformed frame")
	// ErrInvalid is returned for a decoded message that fails validation.
	ErrInvalid = errors.New("invalid message")
	// ErrUnexpectedFrame is returned when a frame type is not allowed at that point of a stream.
	ErrUnexpectedFrame = errors.New("unexpected frame")
	// ErrNoMagic is returned when the handshake magic does not appear within MaxNoise bytes.
	ErrNoMagic = errors.New("no sandboxd handshake on the channel")
	// ErrVersionSkew is returned when the two sides share no protocol version.
	ErrVersionSkew = errors.New("protocol version skew")
)
