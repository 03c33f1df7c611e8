// Command mcpclient is the integration tests' MCP client: the official Go
// SDK client, run inside a sandbox (or on the host for the direct-stdio
// baseline). It prints one JSON document per run.
//
//	mcpclient (-url URL | -stdio "CMD ARGS...") suite [-deny TOOL]   list, call echo, resources, progress
//	mcpclient (-url URL | -stdio ...) tools                         tools/list: the names, sorted
//	mcpclient (-url URL | -stdio ...) call TOOL JSON-ARGS           one call
//	mcpclient (-url URL | -stdio ...) bench TOOL JSON-ARGS N        N sequential calls: p50/p99/calls per second
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	url := flag.String("url", "", "Streamable HTTP endpoint")
	stdio := flag.String("stdio", "", "stdio server command (space separated)")
	timeout := flag.Duration("timeout", 60*time.Second, "overall timeout")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	out, err := run(ctx, *url, *stdio, flag.Args())
	if err != nil {
		out = map[string]any{"error": err.Error()}
	}
	json.NewEncoder(os.Stdout).Encode(out)
	if err != nil {
		os.Exit(1)
	}
}

func run(ctx context.Context, url, stdio string, args []string) (map[string]any, error) {
	if len(args) == 0 {
		return nil, errors.New("no operation")
	}
	var progress atomic.Int64
	c := mcp.NewClient(&mcp.Implementation{Name: "darkshell-test-client", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progress.Add(1) },
	})
	var t mcp.Transport
	switch {
	case url != "":
		t = &mcp.StreamableClientTransport{Endpoint: url, MaxRetries: -1}
	case stdio != "":
		f := strings.Fields(stdio)
		t = &mcp.CommandTransport{Command: exec.Command(f[0], f[1:]...)}
	default:
		return nil, errors.New("give -url or -stdio")
	}
	cs, err := c.Connect(ctx, t, nil)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer cs.Close()
	out := map[string]any{"session": cs.ID()}
	switch args[0] {
	case "tools":
		tl, err := cs.ListTools(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("tools/list: %w", err)
		}
		var names []string
		for _, t := range tl.Tools {
			names = append(names, t.Name)
		}
		slices.Sort(names)
		return map[string]any{"tools": names}, nil
	case "suite":
		tl, err := cs.ListTools(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("tools/list: %w", err)
		}
		var names []string
		for _, x := range tl.Tools {
			names = append(names, x.Name)
		}
		slices.Sort(names)
		out["tools"] = names
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "hello from the sandbox"}})
		if err != nil {
			return nil, fmt.Errorf("tools/call echo: %w", err)
		}
		out["echo"] = text(res)
		rl, err := cs.ListResources(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("resources/list: %w", err)
		}
		out["resources"] = len(rl.Resources)
		if len(rl.Resources) > 0 {
			rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: rl.Resources[0].URI})
			if err != nil {
				return nil, fmt.Errorf("resources/read: %w", err)
			}
			out["resource_contents"] = len(rr.Contents)
		}
		p := &mcp.CallToolParams{Name: "trigger-long-running-operation", Arguments: map[string]any{"duration": 0.3, "steps": 3}}
		p.SetProgressToken("tok-1")
		if _, err := cs.CallTool(ctx, p); err != nil {
			return nil, fmt.Errorf("tools/call trigger-long-running-operation: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
		out["progress"] = progress.Load()
	case "call":
		if len(args) != 3 {
			return nil, errors.New("call TOOL JSON-ARGS")
		}
		var a map[string]any
		if err := json.Unmarshal([]byte(args[2]), &a); err != nil {
			return nil, err
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: args[1], Arguments: a})
		if err != nil {
			out["call_error"] = err.Error()
			return out, nil
		}
		out["text"] = text(res)
		out["is_error"] = res.IsError
	case "bench":
		if len(args) != 4 {
			return nil, errors.New("bench TOOL JSON-ARGS N")
		}
		var a map[string]any
		if err := json.Unmarshal([]byte(args[2]), &a); err != nil {
			return nil, err
		}
		n, _ := strconv.Atoi(args[3])
		for i := 0; i < 20; i++ { // warm up
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: args[1], Arguments: a}); err != nil {
				return nil, err
			}
		}
		lat := make([]time.Duration, 0, n)
		start := time.Now()
		for i := 0; i < n; i++ {
			t0 := time.Now()
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: args[1], Arguments: a}); err != nil {
				return nil, err
			}
			lat = append(lat, time.Since(t0))
		}
		total := time.Since(start)
		slices.Sort(lat)
		out["n"] = n
		out["p50_us"] = lat[n/2].Microseconds()
		out["p99_us"] = lat[n*99/100].Microseconds()
		out["calls_per_s"] = float64(n) / total.Seconds()
	default:
		return nil, fmt.Errorf("unknown operation %q", args[0])
	}
	return out, nil
}

func text(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			b.WriteString(t.Text)
		}
	}
	return b.String()
}
