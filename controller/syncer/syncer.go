// Package syncer is the controller side of `darkshell sync`: it opens a sync
// stream to sandboxd and runs the internal/treesync engine over it, as the
// sender for a push (local tree into the sandbox) or as the receiver for a
// pull, where every path and byte from the sandbox is treated as hostile.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"github.com/bohica-labs/darkshell/internal/cpus"
	"net"
	"time"

	"github.com/bohica-labs/darkshell/internal/treesync"
	"github.com/bohica-labs/darkshell/protocol"
)

// Options of one sync.
type Options = treesync.Options

// Opener opens a raw stream to sandboxd (session.Session does).
type Opener interface {
	Open(ctx context.Context) (net.Conn, error)
}

// Push makes the directory remote in the sandbox (relative: from sandboxd's
// default directory) a copy of the local directory.
func Push(ctx context.Context, o Opener, local, remote string, opt Options) (*protocol.SyncSummary, error) {
	return run(ctx, o, protocol.FrameSyncPush, remote, opt, func(st net.Conn) (*protocol.SyncSummary, error) {
		return treesync.Send(ctx, st, local, opt)
	})
}

// Pull makes the local directory a copy of remote in the sandbox.
func Pull(ctx context.Context, o Opener, remote, local string, opt Options) (*protocol.SyncSummary, error) {
	return run(ctx, o, protocol.FrameSyncPull, remote, opt, func(st net.Conn) (*protocol.SyncSummary, error) {
		return treesync.Receive(ctx, st, local, opt)
	})
}

func run(ctx context.Context, o Opener, t protocol.FrameType, remote string, opt Options, fn func(net.Conn) (*protocol.SyncSummary, error)) (*protocol.SyncSummary, error) {
	req := opt.Request(remote)
	if err := req.Validate(); err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	st, err := o.Open(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	defer cpus.Widen()() // the scan, hashing and zstd spread over every CPU
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	if err := protocol.WriteMsg(st, t, req); err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	sum, err := fn(st)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sync: %w", ctx.Err())
		}
		if _, remote := protocol.AsRemoteError(err); !remote {
			_ = st.SetWriteDeadline(time.Now().Add(time.Second))
			_ = protocol.NewWriter(st).Error(protocol.CodeInternal, "controller: %v", err)
		}
		return nil, fmt.Errorf("sync: %w", err)
	}
	return sum, nil
}

// ErrNoSync is returned when sandboxd does not announce the sync capability.
var ErrNoSync = errors.New("this sandboxd does not offer sync (upgrade it)")
