// Package syncd serves sync streams (FrameSyncPush, FrameSyncPull) in
// sandboxd with the internal/treesync engine: a push receives a tree into
// the request's root, a pull sends the tree at it.
package syncd

import (
	"context"
	"fmt"
	"github.com/bohica-labs/darkshell/internal/cpus"
	"io"
	"path/filepath"

	"github.com/bohica-labs/darkshell/internal/treesync"
	"github.com/bohica-labs/darkshell/protocol"
)

// Root resolves a request's root: a relative one is taken from defaultDir.
func Root(req *protocol.SyncRequest, defaultDir string) string {
	if filepath.IsAbs(req.Root) {
		return filepath.Clean(req.Root)
	}
	return filepath.Join(defaultDir, req.Root)
}

// Serve serves one sync stream whose request frame is f. A returned error
// has not been reported to the peer.
func Serve(ctx context.Context, st io.ReadWriter, f protocol.Frame, defaultDir string) error {
	var req protocol.SyncRequest
	if err := protocol.DecodeMsg(f, f.Type, &req); err != nil {
		return err
	}
	root := Root(&req, defaultDir)
	opt := treesync.OptionsFrom(&req)
	defer cpus.Widen()() // placers, hashing and zstd spread over every CPU
	switch f.Type {
	case protocol.FrameSyncPush:
		opt.Renames = true // a push may reuse any content of the sandbox's own tree
		_, err := treesync.Receive(ctx, st, root, opt)
		return err
	case protocol.FrameSyncPull:
		_, err := treesync.Send(ctx, st, root, opt)
		return err
	}
	return fmt.Errorf("%w: %s is not a sync request", protocol.ErrInvalid, f.Type)
}
