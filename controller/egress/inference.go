package egress

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
)

// InferenceHost is the sandbox's inference endpoint's name (OpenShell's
// inference.local): requests to it bypass the network policy and go to
// the Proxy's Inference handler, which relays them from the host.
const InferenceHost = "inference.local"

func (p *Proxy) isInference(host string) bool {
	return p.Inference != nil && strings.EqualFold(strings.TrimSuffix(host, "."), InferenceHost)
}

// serveInference answers one plain-HTTP request to the inference host; it
// reports whether the client connection may carry another.
func (p *Proxy) serveInference(ctx context.Context, conn net.Conn, req *http.Request) bool {
	resp := p.Inference(ctx, req)
	err := resp.Write(conn)
	resp.Body.Close()
	return err == nil && !req.Close && !resp.Close
}

// serveInferenceTLS terminates the client's TLS for the inference host
// with a leaf of the sandbox's CA and answers every request on it.
func (p *Proxy) serveInferenceTLS(ctx context.Context, conn net.Conn, br *bufio.Reader, host string) {
	if p.CA == nil {
		deny(conn, http.StatusBadGateway, "https://"+InferenceHost+" needs the sandbox's egress CA, which is missing; use http://"+InferenceHost)
		return
	}
	tconn, err := p.acceptTLS(ctx, conn, br, host, InferenceHost)
	if tconn == nil {
		return
	}
	defer tconn.Close()
	if err != nil {
		p.Logger.Debug("egress: TLS with the client for the inference endpoint failed", "err", err)
		return
	}
	tbr := bufio.NewReader(tconn)
	for {
		req, err := http.ReadRequest(tbr)
		if err != nil {
			return
		}
		req.URL.Scheme, req.URL.Host = "https", InferenceHost
		if !p.serveInference(ctx, tconn, req) {
			return
		}
	}
}
