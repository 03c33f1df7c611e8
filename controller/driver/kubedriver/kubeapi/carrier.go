package kubeapi

import (
	"context"
	"errors"
	"io"
	"net/url"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	kd "github.com/bohica-labs/darkshell/controller/driver/kubedriver"
)

// Exec runs argv in the sandbox's container through the pod exec API (what
// `kubectl exec -i` does), streaming stdin, stdout and stderr, and returns
// its exit code. The stream is WebSocket (v5, which forwards the end of
// stdin), with SPDY as fallback.
func Exec(ctx context.Context, x kd.Extra, container string, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	c, err := connectCluster(x.Kubeconfig, x.Context)
	if err != nil {
		return 0, err
	}
	q := url.Values{"container": {container}, "stdin": {"true"}, "stdout": {"true"}, "stderr": {"true"}}
	for _, a := range argv {
		q.Add("command", a)
	}
	u := c.url(podsPath(x.Namespace)+"/"+url.PathEscape(x.Pod)+"/exec", q)
	ws, err := remotecommand.NewWebSocketExecutor(c.cfg, "GET", u.String())
	if err != nil {
		return 0, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(c.cfg, "POST", u)
	if err != nil {
		return 0, err
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return 0, err
	}
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr})
	var ce utilexec.CodeExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ce):
		return ce.Code, nil
	}
	return 0, err
}
