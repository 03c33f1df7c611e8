package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/api"
	"github.com/bohica-labs/darkshell/controller/driver"
	"github.com/bohica-labs/darkshell/controller/policy"
	"github.com/bohica-labs/darkshell/controller/state"
)

func (a *app) createCmd() *cobra.Command {
	var (
		drv, sshTarget, identity, proxy string
		env, uploads                    []string
		labels, driverOpts              []string
		opts                            driver.CreateOptions
		policyFile                      string
		from, fromName                  string
	)
	cmd := &cobra.Command{
		Use:   "create NAME | --from BLUEPRINT [--name NAME]",
		Short: "Create a sandbox, or register one reachable by SSH",
		Long: `Create a sandbox.

With --driver local (the default), the sandbox is a process tree on this
machine confined by the kernel: new namespaces (no network but loopback), the
host's system directories read-only, /sandbox the only writable workspace,
an unprivileged uid, Landlock and seccomp. No container engine is needed.

With --driver ssh, NAME is registered for a host or container that already
runs an OpenSSH server: darkshell connects once, pins the host key (trust on
first use), and pushes its own sandboxd there if it is missing.

With --driver podman (or docker), the sandbox is a container started from
--image (an image in the engine's store, or an image archive file that is
loaded first) with no network, no capabilities and /sandbox as its working
directory; darkshell pushes its sandboxd in through ` + "`podman exec -i`" + ` if the
image lacks it. The image needs a POSIX sh.

With --driver openshell, NAME is registered for a sandbox NVIDIA OpenShell
runs (--driver-opt name=OPENSHELL-NAME if it differs): darkshell reads its
SSH settings from ` + "`openshell sandbox ssh-config`" + ` (or takes --proxy-command),
reaches it through OpenShell's gateway as user sandbox, and pushes its
sandboxd there. Delete only forgets it.`,
		Example: `  darkshell sandbox create dev
  darkshell sandbox create dev --workspace /srv/project
  darkshell sandbox create dev --driver ssh --ssh agent@10.0.0.5:2222 --identity ~/.ssh/id_ed25519
  darkshell sandbox create box --driver podman --image ./box.tar --memory-limit 1G --pids-limit 256
  darkshell sandbox create box --driver ssh --ssh sandbox@box --proxy-command 'openshell ssh-proxy --gateway-name g --name box --workspace default'
  darkshell sandbox create box --driver openshell --driver-opt gateway=g --label team=infra`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from != "" {
				name := fromName
				if len(args) == 1 {
					name = args[0]
				}
				return a.createFromBlueprint(cmd.Context(), from, name)
			}
			if len(args) != 1 {
				return usagef("create needs NAME (or --from BLUEPRINT)")
			}
			if sshTarget != "" && !cmd.Flags().Changed("driver") {
				drv = "ssh"
			}
			req := &api.CreateRequest{Name: args[0], Driver: drv, Env: env, CreateOptions: opts}
			if err := state.ValidName(req.Name); err != nil {
				return usagef("%v", err)
			}
			for _, e := range env {
				if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
					return usagef("--env %q is not KEY=VALUE", e)
				}
			}
			var err error
			if req.Labels, err = parseKV("--label", labels); err != nil {
				return err
			}
			if err := state.ValidLabels(req.Labels); err != nil {
				return usagef("--label: %v", err)
			}
			if req.DriverOpts, err = parseKV("--driver-opt", driverOpts); err != nil {
				return err
			}
			switch drv {
			case "openshell":
				if proxy != "" || identity != "" {
					req.SSH = &state.SSHTarget{ProxyCommand: proxy, Identity: identity}
				}
				if sshTarget != "" {
					return usagef("--ssh does not apply to --driver openshell: the sandbox is reached through OpenShell's ProxyCommand (--proxy-command, or read from `openshell sandbox ssh-config`)")
				}
			case "ssh":
				if sshTarget == "" {
					return usagef("--driver ssh needs --ssh user@host[:port]")
				}
				t, err := parseSSHTarget(sshTarget)
				if err != nil {
					return usagef("--ssh: %v", err)
				}
				t.Identity, t.ProxyCommand = identity, proxy
				req.SSH = t
			default:
				if sshTarget != "" {
					return usagef("--ssh only applies to --driver ssh")
				}
			}
			if opts.Workspace != "" {
				abs, err := filepath.Abs(opts.Workspace)
				if err != nil {
					return usagef("--workspace: %v", err)
				}
				opts.Workspace = abs
				req.Workspace = abs
			}
			if policyFile != "" {
				pol, err := os.ReadFile(policyFile)
				if err != nil {
					return usagef("--policy: %v", err)
				}
				if _, err := policy.Parse(policyFile, pol); err != nil {
					return fmt.Errorf("--policy %s is not valid:\n%w", policyFile, err)
				}
				req.Policy, req.PolicySource = string(pol), policyFile
			}
			for _, p := range []*string{&req.Rootfs, &req.Image} {
				if p == &req.Image && drv == "kubernetes" {
					continue // a reference the cluster's nodes resolve
				}
				if p == &req.Image && (drv == "podman" || drv == "docker") {
					// An image reference unless it names a file here (an archive to load).
					if _, err := os.Stat(*p); err != nil {
						continue
					}
				}
				if *p != "" {
					abs, err := filepath.Abs(*p)
					if err != nil {
						return usagef("%v", err)
					}
					*p = abs
				}
			}
			if req.Rootfs != "" && req.Image != "" {
				return usagef("--rootfs and --image are exclusive")
			}
			for _, u := range uploads {
				up, err := uploadSpec(u)
				if err != nil {
					return err
				}
				req.Uploads = append(req.Uploads, up)
			}
			if opts.Unconfined {
				fmt.Fprintf(a.stderr, "WARNING: --unconfined: sandbox %s runs WITHOUT Landlock and seccomp; for development only, never for untrusted code\n", req.Name)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			sb, err := c.Create(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(sb)
			}
			fmt.Fprintf(a.stdout, "sandbox %s created (driver %s)\n", sb.Name, sb.Driver)
			printUploads(a.stdout, sb.Name, sb.Uploads)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&drv, "driver", "local", "where the sandbox runs: local (kernel-confined, on this machine), ssh, podman, docker, kubernetes or openshell")
	f.StringVar(&opts.Workspace, "workspace", "", "existing host directory to use as /sandbox, writable by the sandbox uid 65000 (driver local; default: a new dir in the sandbox's state, kept until delete; podman/docker: bind-mounted)")
	f.Int64Var(&opts.PidsLimit, "pids-limit", 0, "maximum number of processes (drivers local, podman, docker)")
	f.StringVar(&opts.MemoryLimit, "memory-limit", "", "memory limit, e.g. 512M (drivers local, podman, docker)")
	f.StringVar(&opts.CPULimit, "cpu-limit", "", "CPU limit in CPUs, e.g. 1.5 (drivers local, podman, docker)")
	f.BoolVar(&opts.Unconfined, "unconfined", false, "DEVELOPMENT ONLY: no Landlock, no seccomp (driver local; prints a warning)")
	f.StringVar(&sshTarget, "ssh", "", "user@host[:port] of the SSH server (driver ssh)")
	f.StringVar(&identity, "identity", "", "private key file for SSH authentication")
	f.StringVar(&proxy, "proxy-command", "", "command whose stdin/stdout reach the SSH server (as OpenSSH's ProxyCommand; %h %p %r expand)")
	f.StringArrayVar(&opts.Providers, "provider", nil, "provider whose credentials the sandbox may use through the egress proxy (repeatable; inside, each key holds a placeholder: the real value is added on the host, only for endpoints the policy binds to the provider)")
	f.StringVar(&from, "from", "", "blueprint file: create, policy, uploads, MCP servers, forwards in one go, with per-phase timings and rollback (docs/blueprint.md)")
	f.StringVar(&fromName, "name", "", "with --from: the sandbox's name (default: the blueprint's name)")
	f.StringVar(&policyFile, "policy", "", "policy file (OpenShell format: filesystem_policy, landlock, process are enforced; see policies/ and `darkshell policy validate`)")
	f.StringVar(&opts.Rootfs, "rootfs", "", "host directory to use as the root file system, read-only (driver local; default: the host's /usr /lib* /bin /sbin /etc /opt)")
	f.StringVar(&opts.Image, "image", "", "OCI image to use as the root file system: a docker/podman save archive, an OCI archive or an OCI layout dir (driver local; unpacked once at create); for podman/docker an image reference or an archive file to load")
	f.StringArrayVar(&uploads, "upload", nil, "LOCAL[:REMOTE] directory to upload into the new sandbox (repeatable; .gitignore honoured; REMOTE as for sandbox upload)")
	f.StringArrayVar(&labels, "label", nil, "KEY=VALUE label on the sandbox (repeatable); fleet commands select by them with --selector")
	f.StringArrayVar(&driverOpts, "driver-opt", nil, "KEY=VALUE setting of the driver (repeatable): openshell name, gateway, workspace, cli; kubernetes namespace, kubeconfig, context, pool (docs/drivers.md)")
	f.StringArrayVar(&env, "env", nil, "KEY=VALUE set for every command in the sandbox (repeatable; not for secrets)")
	return cmd
}

// parseSSHTarget parses user@host[:port], [v6]:port, or unix:/path.
func parseSSHTarget(s string) (*state.SSHTarget, error) {
	t := &state.SSHTarget{}
	if u, rest, ok := strings.Cut(s, "@"); ok {
		if u == "" {
			return nil, fmt.Errorf("empty user in %q", s)
		}
		t.User, s = u, rest
	}
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		t.UnixSocket = p
		return t, nil
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return nil, fmt.Errorf("unclosed [ in %q", s)
		}
		host, port = s[1:end], strings.TrimPrefix(s[end+1:], ":")
	} else if h, p, ok := strings.Cut(s, ":"); ok {
		host, port = h, p
	}
	if host == "" {
		return nil, fmt.Errorf("no host in %q", s)
	}
	t.Host, t.Port = host, 22
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("bad port %q", port)
		}
		t.Port = n
	}
	return t, nil
}

func (a *app) listCmd() *cobra.Command {
	var selector string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List sandboxes",
		Long: `List sandboxes. --selector (-l) shows only those whose labels match:
KEY=VALUE, KEY!=VALUE, KEY (has the label), !KEY (has not), comma-separated (all must hold).`,
		Example: `  darkshell sandbox list -l team=infra,tier!=gpu`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			if selector != "" {
				if l, err = filterSelector(l, selector); err != nil {
					return err
				}
			}
			if a.json() {
				return a.printJSON(l)
			}
			var rows [][]string
			for _, sb := range l {
				rows = append(rows, []string{sb.Name, sb.Driver, phaseOf(sb), healthOf(sb), target(sb), connState(sb), age(sb.Created), labelList(sb.Labels)})
			}
			a.table("NAME\tDRIVER\tPHASE\tHEALTH\tTARGET\tSESSION\tAGE\tLABELS", rows)
			return nil
		},
	}
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "only sandboxes whose labels match, e.g. team=infra,tier!=gpu")
	return cmd
}

func target(sb api.Sandbox) string {
	if sb.SSH == nil {
		var x struct { // container drivers (podman, docker)
			Container string `json:"container"`
		}
		if json.Unmarshal(sb.Extra, &x) == nil && x.Container != "" {
			return sb.Driver + ":" + x.Container
		}
		return "-"
	}
	if sb.SSH.UnixSocket != "" {
		return "unix:" + sb.SSH.UnixSocket
	}
	return fmt.Sprintf("%s@%s:%d", sb.SSH.User, sb.SSH.Host, sb.SSH.Port)
}

func connState(sb api.Sandbox) string {
	switch {
	case sb.Connected:
		return "warm"
	case sb.LastError != "":
		return "failing"
	}
	return "idle"
}

func age(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func (a *app) getCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show one sandbox",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			sb, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(sb)
			}
			fmt.Fprintf(a.stdout, "Name:     %s\nDriver:   %s\nTarget:   %s\nCreated:  %s\nSession:  %s\n",
				sb.Name, sb.Driver, target(*sb), sb.Created.Format(time.RFC3339), connState(*sb))
			if sb.Remote != nil {
				fmt.Fprintf(a.stdout, "Sandboxd: %s (%s/%s), caps %s\n", sb.Remote.BuildVersion, sb.Remote.OS, sb.Remote.Arch, strings.Join(sb.Remote.Caps, ","))
				if len(sb.Remote.Confined) > 0 {
					fmt.Fprintf(a.stdout, "Landlock: ABI %d\nConfined: %s\n", sb.Remote.LandlockABI, strings.Join(sb.Remote.Confined, ", "))
				}
			}
			var x struct {
				PID          int      `json:"pid"`
				Rootfs       string   `json:"rootfs"`
				Image        string   `json:"image"`
				PolicySource string   `json:"policy_source"`
				Limits       []string `json:"limits"`
				Workspace    string   `json:"workspace"`
			}
			if json.Unmarshal(sb.Extra, &x) == nil {
				for _, l := range [][2]string{{"Init PID", strconv.Itoa(x.PID)}, {"Rootfs", x.Rootfs}, {"Image", x.Image},
					{"Policy", x.PolicySource}, {"Limits", strings.Join(x.Limits, ", ")}, {"Workspace", x.Workspace}} {
					if l[1] != "" && l[1] != "0" {
						fmt.Fprintf(a.stdout, "%-9s %s\n", l[0]+":", l[1])
					}
				}
			}
			if sb.Phase != "" {
				fmt.Fprintf(a.stdout, "Phase:    %s\n", sb.Phase)
				if sb.Reason != "" {
					fmt.Fprintf(a.stdout, "Reason:   %s\n", sb.Reason)
				}
			}
			if r := sb.Resources; r != nil {
				mem := fmt.Sprintf("%.1f MiB", float64(r.MemoryBytes)/(1<<20))
				if r.MemoryLimitBytes > 0 {
					mem += fmt.Sprintf(" of %.1f MiB", float64(r.MemoryLimitBytes)/(1<<20))
				}
				fmt.Fprintf(a.stdout, "Memory:   %s, %d OOM kills\n", mem, r.OOMKills)
				if r.Pids > 0 {
					pids := strconv.FormatInt(r.Pids, 10)
					if r.PidsLimit > 0 {
						pids += fmt.Sprintf(" (limit %d for commands)", r.PidsLimit)
					}
					fmt.Fprintf(a.stdout, "Pids:     %s\n", pids)
				}
			}
			if sb.LastError != "" {
				fmt.Fprintf(a.stdout, "Error:    %s\n", sb.LastError)
			}
			return nil
		},
	}
}

func (a *app) deleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME...",
		Aliases: []string{"rm"},
		Short:   "Delete sandboxes (an ssh sandbox is only forgotten)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			for _, n := range args {
				if err := c.Delete(cmd.Context(), n); err != nil {
					return err
				}
				if !a.json() {
					fmt.Fprintf(a.stdout, "sandbox %s deleted\n", n)
				}
			}
			if a.json() {
				return a.printJSON(map[string]any{"deleted": args})
			}
			return nil
		},
	}
}

func (a *app) psCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ps NAME",
		Short: "List the processes sandboxd tracks in a sandbox (running and recently finished durable ones)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.Processes(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(l)
			}
			var rows [][]string
			for _, p := range l.Processes {
				st := "running"
				if !p.Running && p.Exit != nil {
					st = fmt.Sprintf("exited %d", p.Exit.Status())
				}
				rows = append(rows, []string{p.ID, strconv.Itoa(p.PID), st, strconv.FormatBool(p.Attached), strings.Join(p.Argv, " ")})
			}
			a.table("ID\tPID\tSTATE\tATTACHED\tCOMMAND", rows)
			return nil
		},
	}
}

// parseKV parses repeated KEY=VALUE flag values.
func parseKV(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("%s %q is not KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}
