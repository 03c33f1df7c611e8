package treesync

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/bohica-labs/darkshell/protocol"
)

var (
	listZOnce sync.Once
	listEnc   *zstd.Encoder
	listDec   *zstd.Decoder
	listZErr  error
)

func listCodecs() (*zstd.Encoder, *zstd.Decoder, error) {
	listZOnce.Do(func() {
		listEnc, listZErr = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true))
		if listZErr != nil {
			return
		}
		listDec, listZErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(protocol.MaxSyncEntriesZ),
			zstd.WithDecoderMaxWindow(protocol.MaxSyncEntriesZ),
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderLowmem(true))
	})
	return listEnc, listDec, listZErr
}

// compressEntries returns the payload of a FrameSyncEntriesZ for json, the
// encoding of a SyncEntries.
func compressEntries(json []byte) ([]byte, error) {
	enc, _, err := listCodecs()
	if err != nil {
		return nil, err
	}
	return enc.EncodeAll(json, nil), nil
}

// decodeEntriesZ decodes and validates a FrameSyncEntriesZ; its JSON may
// not decompress past protocol.MaxSyncEntriesZ.
// buf, if not nil, is reused for the JSON.
func decodeEntriesZ(f protocol.Frame, m *protocol.SyncEntries, buf *[]byte) error {
	_, dec, err := listCodecs()
	if err != nil {
		return err
	}
	var b []byte
	if buf != nil {
		b = *buf
	}
	if cap(b) < protocol.MaxSyncEntriesZ {
		b = make([]byte, 0, protocol.MaxSyncEntriesZ)
		if buf != nil {
			*buf = b
		}
	}
	raw, err := dec.DecodeAll(f.Payload, b[:0:protocol.MaxSyncEntriesZ])
	if err != nil {
		return fmt.Errorf("%w: compressed entries: %v", protocol.ErrInvalid, err)
	}
	return protocol.DecodeMsg(protocol.Frame{Type: protocol.FrameSyncEntries, Payload: raw}, protocol.FrameSyncEntries, m)
}

// decodeEntriesB decodes and validates a FrameSyncEntriesB: a zstd frame
// of at most protocol.MaxSyncEntriesZ bytes holding a binary batch.
// buf, if not nil, is reused for the decompressed bytes.
func decodeEntriesB(f protocol.Frame, buf *[]byte) ([]protocol.SyncEntry, error) {
	_, dec, err := listCodecs()
	if err != nil {
		return nil, err
	}
	var b []byte
	if buf != nil {
		b = *buf
	}
	if cap(b) < protocol.MaxSyncEntriesZ {
		b = make([]byte, 0, protocol.MaxSyncEntriesZ)
		if buf != nil {
			*buf = b
		}
	}
	raw, err := dec.DecodeAll(f.Payload, b[:0:protocol.MaxSyncEntriesZ])
	if err != nil {
		return nil, fmt.Errorf("%w: compressed entries: %v", protocol.ErrInvalid, err)
	}
	return protocol.DecodeSyncEntriesBin(raw)
}

// listBatch: the sender cuts its list into binary batches of at most this
// many entries or listBatchBytes encoded bytes, so the receiver decodes
// one while the next is compressed and sent.
const (
	listBatch      = 4096
	listBatchBytes = 256 << 10
)
