// Package inference is the host side of a sandbox's inference endpoint,
// `inference.local` (OpenShell's name): requests a sandbox process sends
// there through its egress proxy are relayed to a configured model
// provider, with the provider's credential added on the host (the sandbox
// never holds it), and each request/response pair (OpenAI- and
// Anthropic-compatible bodies, streamed SSE reassembled) becomes one
// `inference` event: model, token counts, latency, prompt and response
// text, after redaction (built-in key and token detectors, the providers'
// own credential values, regex rules, field drop/hash, size caps).
package inference
