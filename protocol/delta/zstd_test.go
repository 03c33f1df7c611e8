package delta

import (
	"io"

	"github.com/klauspost/compress/zstd"
)

// zstdNewStreamWriter returns a streaming zstd encoder: its frames carry no
// content size.
func zstdNewStreamWriter(w io.Writer) (*zstd.Encoder, error) {
	return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
}
