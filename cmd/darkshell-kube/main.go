// Command darkshell-kube is the kubernetes driver's helper: it speaks the
// Kubernetes API with client-go, so that darkshell itself does not link
// client-go (whose package initialisation would slow every darkshell
// command). The daemon runs it; it is not meant for humans.
//
//	darkshell-kube create|delete|status|stop|start   < {"home_dir": ..., "sandbox": {...}}
//	darkshell-kube exec --kubeconfig F [--context C] --namespace NS --pod P --container C -- ARGV...
//
// create prints the sandbox's updated driver data, status its status (JSON);
// exec streams stdin, stdout and stderr and exits with the command's code.
// Errors go to stderr with exit status 1 (exec: 125).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	kd "github.com/bohica-labs/darkshell/controller/driver/kubedriver"
	"github.com/bohica-labs/darkshell/controller/driver/kubedriver/kubeapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fail(2, "usage: darkshell-kube create|delete|status|exec ...")
	}
	switch op := os.Args[1]; op {
	case "exec":
		fs := flag.NewFlagSet("exec", flag.ExitOnError)
		var x kd.Extra
		var container string
		fs.StringVar(&x.Kubeconfig, "kubeconfig", "", "kubeconfig file")
		fs.StringVar(&x.Context, "context", "", "kubeconfig context")
		fs.StringVar(&x.Namespace, "namespace", "default", "namespace")
		fs.StringVar(&x.Pod, "pod", "", "pod")
		fs.StringVar(&container, "container", kd.Container, "container")
		fs.Parse(os.Args[2:])
		if x.Pod == "" || x.Kubeconfig == "" || fs.NArg() == 0 {
			fail(125, "exec needs --kubeconfig, --pod and a command")
		}
		code, err := kubeapi.Exec(ctx, x, container, fs.Args(), os.Stdin, os.Stdout, os.Stderr)
		if err != nil {
			fail(125, "exec in Pod %s/%s: %v", x.Namespace, x.Pod, err)
		}
		os.Exit(code)
	case "pool": // a warm pool kept by agent-sandbox's extensions (kubeapi/warmpool.go)
		var req kd.PoolRequest
		if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
			fail(1, "pool: bad request: %v", err)
		}
		out, err := kubeapi.Pool(ctx, req)
		if err != nil {
			fail(1, "%v", err)
		}
		json.NewEncoder(os.Stdout).Encode(out)
	case "create", "delete", "status", "stop", "start", "adopt":
		var req kd.Request
		if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
			fail(1, "%s: bad request: %v", op, err)
		}
		x, err := kd.ReadExtra(&req.Sandbox)
		if err != nil {
			fail(1, "%v", err)
		}
		var out any
		switch op {
		case "create":
			out, err = kubeapi.Create(ctx, req.HomeDir, &req.Sandbox, x)
		case "delete":
			out, err = struct{}{}, kubeapi.Delete(ctx, x)
		case "stop":
			out, err = struct{}{}, kubeapi.Stop(ctx, x)
		case "adopt": // a warm-pool member becomes req.Sandbox (kubeapi/pool.go)
			out, err = struct{}{}, kubeapi.Adopt(ctx, req.HomeDir, &req.Sandbox, x)
		case "start":
			out, err = struct{}{}, kubeapi.Start(ctx, x)
		case "status":
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			out = kubeapi.Status(ctx, req.HomeDir, x)
			cancel()
		}
		if err != nil {
			fail(1, "%v", err)
		}
		json.NewEncoder(os.Stdout).Encode(out)
	default:
		fail(2, "unknown operation %q", op)
	}
}

func fail(code int, f string, a ...any) {
	fmt.Fprintf(os.Stderr, f+"\n", a...)
	os.Exit(code)
}
