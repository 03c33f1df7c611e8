package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/inference"
)

func (a *app) inferenceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inference",
		Short: "A sandbox's inference endpoint (inference.local): routes to model providers, credentials added on the host, logged and redacted",
		Long: `Sandbox processes send OpenAI- or Anthropic-compatible requests to
http://inference.local/v1/... or https://inference.local/v1/... (through the egress
proxy; the sandbox's CA is trusted inside). The host relays them to the route's
upstream and adds the provider's credential there: the sandbox never holds it.
/v1/messages goes to the anthropic route, every other /v1/ path to the openai route.

Each request/response pair is an 'inference' event (model, token counts, latency,
prompt and response text, streamed SSE reassembled) on the event bus: 'sandbox watch',
the host event log, every exporter and the alert baselines (inference_tokens) see it.
Texts are redacted first: built-in detectors (` + strings.Join(inference.BuiltinNames(), ", ") + `),
every stored provider credential, your --redact rules; --drop and --hash apply to the
fields ` + strings.Join(inference.Fields, ", ") + `; --max-text caps each text.

Local driver sandboxes only (the egress proxy is theirs).`,
	}
	cmd.AddCommand(a.inferenceSetCmd(), a.inferenceGetCmd())
	return cmd
}

func (a *app) inferenceSetCmd() *cobra.Command {
	var api, upstream, prov, key string
	var redact, drop, hash, disable []string
	var maxText int
	var clear, removeRoute bool
	cmd := &cobra.Command{
		Use:   "set NAME",
		Short: "Add or replace a route (one per API) and set the redaction rules",
		Example: `  darkshell provider create --name oai --type openai --credential OPENAI_API_KEY=sk-...
  darkshell inference set dev --api openai --upstream https://api.openai.com --provider oai
  darkshell inference set dev --redact 'ticket=TICKET-[0-9]+' --hash user --max-text 8192
  darkshell inference set dev --api anthropic --remove     # drop one route
  darkshell inference set dev --clear                      # no inference endpoint`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cfg := &inference.Config{}
			if !clear {
				if cfg, err = c.InferenceGet(cmd.Context(), args[0]); err != nil {
					return err
				}
			}
			if api != "" {
				cfg.Routes = slices.DeleteFunc(cfg.Routes, func(r inference.Route) bool { return r.API == api })
				if !removeRoute {
					if upstream == "" || prov == "" {
						return usagef("--api %s needs --upstream URL and --provider P (or --remove)", api)
					}
					cfg.Routes = append(cfg.Routes, inference.Route{API: api, Upstream: upstream, Provider: prov, Key: key})
				}
			} else if upstream != "" || prov != "" || key != "" || removeRoute {
				return usagef("--upstream, --provider, --key and --remove need --api openai|anthropic")
			}
			for _, r := range redact {
				n, p, ok := strings.Cut(r, "=")
				if !ok || n == "" {
					return usagef("--redact %q: want NAME=REGEX", r)
				}
				cfg.Redact.Rules = append(cfg.Redact.Rules, inference.Rule{Name: n, Pattern: p})
			}
			cfg.Redact.Drop = append(cfg.Redact.Drop, drop...)
			cfg.Redact.Hash = append(cfg.Redact.Hash, hash...)
			cfg.Redact.DisableBuiltin = append(cfg.Redact.DisableBuiltin, disable...)
			if cmd.Flags().Changed("max-text") {
				cfg.Redact.MaxText = maxText
			}
			if err := cfg.Validate(); err != nil {
				return usagef("%v", err)
			}
			out, err := c.InferenceSet(cmd.Context(), args[0], cfg)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(out)
			}
			return a.printInference(args[0], out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&api, "api", "", "the route's API: openai or anthropic")
	f.StringVar(&upstream, "upstream", "", "the route's base URL, e.g. https://api.openai.com (the request's /v1/... path is appended)")
	f.StringVar(&prov, "provider", "", "stored provider whose credential the host adds")
	f.StringVar(&key, "key", "", "the provider's credential key (default OPENAI_API_KEY / ANTHROPIC_API_KEY, or its only key)")
	f.BoolVar(&removeRoute, "remove", false, "remove the --api route")
	f.BoolVar(&clear, "clear", false, "start from an empty configuration (alone: remove the inference endpoint)")
	f.StringArrayVar(&redact, "redact", nil, "redaction rule NAME=REGEX (RE2), repeatable")
	f.StringArrayVar(&drop, "drop", nil, "leave a field out of the events ("+strings.Join(inference.Fields, ", ")+"), repeatable")
	f.StringArrayVar(&hash, "hash", nil, "log a field as its sha256 prefix, repeatable")
	f.StringArrayVar(&disable, "disable-detector", nil, "turn off a built-in detector (or all); provider credentials are always redacted")
	f.IntVar(&maxText, "max-text", 0, fmt.Sprintf("cap each logged text at N bytes (default %d, at most %d)", inference.DefaultMaxText, inference.MaxMaxText))
	return cmd
}

func (a *app) inferenceGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a sandbox's inference routes and redaction rules",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cfg, err := c.InferenceGet(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(cfg)
			}
			return a.printInference(args[0], cfg)
		},
	}
}

func (a *app) printInference(name string, cfg *inference.Config) error {
	if len(cfg.Routes) == 0 {
		fmt.Fprintf(a.stdout, "%s: no inference endpoint (darkshell inference set %s --api openai --upstream URL --provider P)\n", name, name)
		return nil
	}
	var rows [][]string
	for _, r := range cfg.Routes {
		rows = append(rows, []string{r.API, r.Upstream, r.Provider, r.Key})
	}
	a.table("API\tUPSTREAM\tPROVIDER\tKEY", rows)
	rd := cfg.Redact
	var rules []string
	for _, r := range rd.Rules {
		rules = append(rules, r.Name)
	}
	max := rd.MaxText
	if max == 0 {
		max = inference.DefaultMaxText
	}
	fmt.Fprintf(a.stdout, "redaction: built-in detectors%s, provider credentials; rules [%s]; drop [%s]; hash [%s]; max text %d bytes\n",
		map[bool]string{true: " (off: " + strings.Join(rd.DisableBuiltin, ", ") + ")", false: ""}[len(rd.DisableBuiltin) > 0],
		strings.Join(rules, ", "), strings.Join(rd.Drop, ", "), strings.Join(rd.Hash, ", "), max)
	return nil
}
