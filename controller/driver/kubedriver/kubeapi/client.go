package kubeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// The driver talks to the API server with plain JSON over client-go's
// authenticated HTTP client (rest.HTTPClientFor) instead of the typed
// clientset: the clientset's scheme registers every API group at package
// init, a cost every darkshell command would pay. Exec streams use
// client-go's remotecommand (WebSocket, falling back to SPDY).

// apiError is a failed API call: the HTTP status and the server's Status message.
type apiError struct {
	Code    int
	Reason  string
	Message string
}

func (e *apiError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Code)
	}
	return fmt.Sprintf("HTTP %d %s", e.Code, e.Reason)
}

func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == http.StatusNotFound
}

func isConflict(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == http.StatusConflict
}

// cluster is one kubeconfig context's API endpoint.
type cluster struct {
	cfg  *rest.Config
	http *http.Client
	base *url.URL
}

var (
	clustersMu sync.Mutex
	clusters   = map[string]*cluster{}
)

// connectCluster returns the (cached) client for kubeconfig and context
// (empty: the file's current context).
func connectCluster(kubeconfig, kctx string) (*cluster, error) {
	key := kubeconfig + "\x00" + kctx
	clustersMu.Lock()
	defer clustersMu.Unlock()
	if c := clusters[key]; c != nil {
		return c, nil
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: kctx}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.UserAgent = "darkshell"
	cfg.QPS, cfg.Burst = 100, 200
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	base, err := url.Parse(cfg.Host)
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("kubeconfig %s: bad server %q", kubeconfig, cfg.Host)
	}
	c := &cluster{cfg: cfg, http: hc, base: base}
	clusters[key] = c
	return c, nil
}

// url is the API URL of p (an absolute API path) with query q.
func (c *cluster) url(p string, q url.Values) *url.URL {
	u := *c.base
	u.Path = path.Join("/", c.base.Path, p)
	u.RawQuery = q.Encode()
	return &u
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func (c *cluster) do(ctx context.Context, method, p string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(p, q).String(), body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("kubernetes API %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var st struct {
			Message string `json:"message"`
			Reason  string `json:"reason"`
		}
		json.Unmarshal(b, &st)
		return &apiError{Code: resp.StatusCode, Reason: st.Reason, Message: st.Message}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("kubernetes API %s %s: bad answer: %w", method, p, err)
		}
	}
	return nil
}

// doRaw sends body with content type ct and discards the answer.
func (c *cluster) doRaw(ctx context.Context, method, p, ct string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, c.url(p, nil).String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("kubernetes API %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var st struct {
			Message string `json:"message"`
			Reason  string `json:"reason"`
		}
		json.Unmarshal(b, &st)
		return &apiError{Code: resp.StatusCode, Reason: st.Reason, Message: st.Message}
	}
	return nil
}

func podsPath(ns string) string { return "/api/v1/namespaces/" + url.PathEscape(ns) + "/pods" }

func (c *cluster) getPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	var p corev1.Pod
	return &p, c.do(ctx, "GET", podsPath(ns)+"/"+url.PathEscape(name), nil, nil, &p)
}

func (c *cluster) createPod(ctx context.Context, p *corev1.Pod) (*corev1.Pod, error) {
	var out corev1.Pod
	return &out, c.do(ctx, "POST", podsPath(p.Namespace), nil, p, &out)
}

func (c *cluster) deletePod(ctx context.Context, ns, name string, grace int64) error {
	q := url.Values{"gracePeriodSeconds": {fmt.Sprint(grace)}}
	err := c.do(ctx, "DELETE", podsPath(ns)+"/"+url.PathEscape(name), q, nil, nil)
	if isNotFound(err) {
		return nil
	}
	return err
}

func (c *cluster) listPods(ctx context.Context, ns, selector string) ([]corev1.Pod, error) {
	var l corev1.PodList
	err := c.do(ctx, "GET", podsPath(ns), url.Values{"labelSelector": {selector}}, nil, &l)
	return l.Items, err
}

// watchPod calls fn with every state of pod name from resourceVersion rv
// on, until fn returns done or an error, or ctx ends. The watch is
// re-opened when the server ends it.
func (c *cluster) watchPod(ctx context.Context, ns, name, rv string, fn func(*corev1.Pod) (done bool, err error)) error {
	for {
		q := url.Values{"watch": {"true"}, "fieldSelector": {"metadata.name=" + name}, "resourceVersion": {rv}, "allowWatchBookmarks": {"false"}}
		req, err := http.NewRequestWithContext(ctx, "GET", c.url(podsPath(ns), q).String(), nil)
		if err != nil {
			return err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return fmt.Errorf("watch pod %s/%s: %w", ns, name, err)
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
			return fmt.Errorf("watch pod %s/%s: HTTP %d", ns, name, resp.StatusCode)
		}
		dec := json.NewDecoder(resp.Body)
		for {
			var ev struct {
				Type   string          `json:"type"`
				Object json.RawMessage `json:"object"`
			}
			if err := dec.Decode(&ev); err != nil {
				break // the server ended the watch: re-open it
			}
			if ev.Type == "ERROR" {
				resp.Body.Close()
				rv = "" // expired: start from the current state
				break
			}
			var p corev1.Pod
			if err := json.Unmarshal(ev.Object, &p); err != nil {
				resp.Body.Close()
				return err
			}
			rv = p.ResourceVersion
			if ev.Type == "DELETED" {
				resp.Body.Close()
				return fmt.Errorf("pod %s/%s was deleted", ns, name)
			}
			done, err := fn(&p)
			if done || err != nil {
				resp.Body.Close()
				return err
			}
		}
		resp.Body.Close()
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
