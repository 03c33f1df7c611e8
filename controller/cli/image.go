package cli

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/blueprint"
	"github.com/bohica-labs/darkshell/controller/image"
	"github.com/bohica-labs/darkshell/controller/provider"
)

func (a *app) imageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Build images with sandboxd baked in"}
	var o image.Options
	build := &cobra.Command{
		Use:   "build [BLUEPRINT] (--base IMAGE) -t TAG [--output oci-archive|oci-layout|docker-archive] [--dest PATH] [--push REF]",
		Short: "Add sandboxd (static, for the image's architecture) and a default config to a base image",
		Long: `Read a base image (an OCI layout directory, an OCI archive, or a docker/podman
save archive), add one layer with the static sandboxd at /usr/local/bin/sandboxd
and a default config at /etc/darkshell/sandboxd.json, and write a standard image:
an OCI archive (default), an OCI layout, or a docker archive that podman, docker
and containerd load. With a BLUEPRINT, its image is the base and its labels and
env go into the image config. Images built here need no push of sandboxd at
create; the local driver runs them with --image. With --push REF the image goes
to a registry (by digest in the output); it is written locally too only when
--dest is given.`,
		Example: `  darkshell image build --base ./debian.tar -t darkshell/factory:1 --dest factory.tar
  darkshell image build dev.yaml -t darkshell/dev:1 --output oci-layout --dest ./dev-image
  darkshell image build --base ./debian.tar --push registry.example.com/team/factory:1
  podman load -i factory.tar && darkshell sandbox create f --driver podman --image darkshell/factory:1`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				bp, err := blueprint.Load(args[0], nil)
				if err != nil {
					return fmt.Errorf("blueprint %s is not valid:\n%w", args[0], err)
				}
				if o.Base == "" {
					o.Base = bp.Path(bp.Image)
				}
				o.Labels = bp.Labels
				for k, v := range bp.Env {
					o.Env = append(o.Env, k+"="+v)
				}
			}
			if o.Base == "" {
				return usagef("give a base image with --base (or a blueprint with image:)")
			}
			if o.Tag == "" && o.Push == "" {
				return usagef("-t TAG is required (e.g. darkshell/factory:1)")
			}
			if o.Push != "" && o.Tag == "" {
				o.Tag = o.Push
			}
			if o.Push != "" && !a.json() {
				last := int64(-1)
				o.Progress = func(done, total int64) {
					if pct := done * 100 / max(total, 1); pct/10 != last/10 || done == total {
						last = pct
						fmt.Fprintf(a.stderr, "push %s: %d%% (%d of %d bytes)\n", o.Push, pct, done, total)
					}
				}
			}
			if o.Dest == "" && o.Push == "" {
				base := strings.NewReplacer("/", "-", ":", "-").Replace(o.Tag)
				o.Dest = base + ".tar"
				if o.Output == image.OCILayout {
					o.Dest = base
				}
			}
			o.Base, _ = filepath.Abs(o.Base)
			res, err := image.Build(cmd.Context(), o)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(res)
			}
			if res.Dest != "" {
				fmt.Fprintf(a.stdout, "built %s (%s, %s, %d layers, sandboxd %s) -> %s\n", res.Tag, res.Output, res.Arch, res.Layers, res.Sandboxd, res.Dest)
			}
			if res.Pushed != "" {
				fmt.Fprintf(a.stdout, "pushed %s (%s, %d layers, sandboxd %s) -> %s\n", res.Tag, res.Arch, res.Layers, res.Sandboxd, res.Pushed)
			}
			return nil
		},
	}
	build.Flags().StringVar(&o.Base, "base", "", "base image: OCI layout dir, OCI archive, or docker/podman save archive")
	build.Flags().StringVarP(&o.Tag, "tag", "t", "", "image name and tag")
	o.Output = image.OCIArchive
	build.Flags().VarP(&imageOutput{format: &o.Output, output: &a.output}, "output", "o", "image format: oci-archive, oci-layout or docker-archive; or json/text for what is printed (give both: -o json --output oci-layout)")
	build.Flags().StringVar(&o.Dest, "dest", "", "where to write (default: from the tag, in the current directory; none with --push)")
	build.Flags().StringVar(&o.Push, "push", "", "push the image to this registry reference (REGISTRY/REPO:TAG); credentials from the docker/podman auth files")
	build.Flags().BoolVar(&o.Insecure, "insecure-registry", false, "speak plain HTTP to the --push registry (loopback registries always are)")
	cmd.AddCommand(build)
	return cmd
}

func (a *app) imageSaveCmd() *cobra.Command {
	var (
		o       image.SaveOptions
		confirm bool
	)
	save := &cobra.Command{
		Use:   "save NAME TAG --confirm [--output oci-archive|oci-layout|docker-archive] [--dest PATH]",
		Short: "Make an image from a sandbox: its image or rootfs plus its workspace, sanitized",
		Long: `Pack a local sandbox's root (the image or rootfs it was created from) and its
workspace (/sandbox) into a new image. The workspace is sanitized: credential
directories and files (.ssh, .aws, .kube, .docker, .gnupg, gh and gcloud config,
.netrc, .git-credentials, .npmrc, .pypirc), .env files, shell and tool histories,
temporary files, darkshell's own state, and any file holding a credential
placeholder or one of the sandbox's provider values are left out, and listed.
The image config keeps the base's environment, never the sandbox's. Nothing is
written without --confirm. Stop the sandbox first for a consistent copy.`,
		Example: `  darkshell sandbox image save dev darkshell/dev-snapshot:1 --confirm --dest dev.tar`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !confirm {
				return usagef("image save packs the sandbox's workspace into an image: check what it holds, then add --confirm")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			sb, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if sb.Driver != "local" {
				return fmt.Errorf("sandbox %s: image save works on local sandboxes (driver %s)", args[0], sb.Driver)
			}
			var x struct {
				Image, Rootfs, Workspace string
				Providers                []string
			}
			json.Unmarshal(sb.Extra, &x)
			o.Base, o.Rootfs, o.Workspace, o.Tag = x.Image, x.Rootfs, x.Workspace, args[1]
			if o.Workspace == "" {
				o.Workspace = filepath.Join(c.Home().SandboxDir(sb.Name), "workspace")
			}
			for _, p := range x.Providers {
				if pr, err := provider.Open(c.Home()).Get(p); err == nil {
					o.Secrets = append(o.Secrets, pr.Values()...)
				}
			}
			if o.Dest == "" {
				o.Dest = strings.NewReplacer("/", "-", ":", "-").Replace(o.Tag) + ".tar"
			}
			res, err := image.Save(cmd.Context(), o)
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "saved %s from sandbox %s (%d workspace files, %d layers) -> %s\n", res.Tag, sb.Name, res.Files, res.Layers, res.Dest)
			for _, s := range res.Stripped {
				fmt.Fprintf(a.stdout, "  stripped %-40s %s\n", s.Path, s.Reason)
			}
			return nil
		},
	}
	save.Flags().BoolVar(&confirm, "confirm", false, "really write the image")
	o.Output = image.OCIArchive
	save.Flags().VarP(&imageOutput{format: &o.Output, output: &a.output}, "output", "o", "image format: oci-archive, oci-layout or docker-archive; or json/text for what is printed (give both: -o json --output oci-layout)")
	save.Flags().StringVar(&o.Dest, "dest", "", "where to write (default: from the tag)")
	cmd := &cobra.Command{Use: "image", Short: "Images from sandboxes"}
	cmd.AddCommand(save)
	return cmd
}

// imageOutput is the image commands' --output: their own flag shadows the
// global -o/--output, so it takes both kinds of value, each as often as
// given: an image format, or json/text for what is printed.
type imageOutput struct{ format, output *string }

func (v *imageOutput) String() string {
	if v.format == nil {
		return ""
	}
	return *v.format
}

func (v *imageOutput) Set(s string) error {
	switch s {
	case "json", "text":
		*v.output = s
	case image.OCIArchive, image.OCILayout, image.DockerArchive:
		*v.format = s
	default:
		return fmt.Errorf("%q is neither an image format (%s, %s, %s) nor json/text", s, image.OCIArchive, image.OCILayout, image.DockerArchive)
	}
	return nil
}

func (v *imageOutput) Type() string { return "string" }
