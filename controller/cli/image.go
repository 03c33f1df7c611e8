package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bohica-labs/darkshell/controller/blueprint"
	"github.com/bohica-labs/darkshell/controller/image"
)

func (a *app) imageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Build images with sandboxd baked in"}
	var o image.Options
	build := &cobra.Command{
		Use:   "build [BLUEPRINT] (--base IMAGE) -t TAG [--output oci-archive|oci-layout|docker-archive] [--dest PATH]",
		Short: "Add sandboxd (static, for the image's architecture) and a default config to a base image",
		Long: `Read a base image (an OCI layout directory, an OCI archive, or a docker/podman
save archive), add one layer with the static sandboxd at /usr/local/bin/sandboxd
and a default config at /etc/darkshell/sandboxd.json, and write a standard image:
an OCI archive (default), an OCI layout, or a docker archive that podman, docker
and containerd load. With a BLUEPRINT, its image is the base and its labels and
env go into the image config. Images built here need no push of sandboxd at
create; the local driver runs them with --image.`,
		Example: `  darkshell image build --base ./debian.tar -t darkshell/factory:1 --dest factory.tar
  darkshell image build dev.yaml -t darkshell/dev:1 --output oci-layout --dest ./dev-image
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
			if o.Tag == "" {
				return usagef("-t TAG is required (e.g. darkshell/factory:1)")
			}
			if o.Dest == "" {
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
			fmt.Fprintf(a.stdout, "built %s (%s, %s, %d layers, sandboxd %s) -> %s\n", res.Tag, res.Output, res.Arch, res.Layers, res.Sandboxd, res.Dest)
			return nil
		},
	}
	build.Flags().StringVar(&o.Base, "base", "", "base image: OCI layout dir, OCI archive, or docker/podman save archive")
	build.Flags().StringVarP(&o.Tag, "tag", "t", "", "image name and tag")
	build.Flags().StringVar(&o.Output, "output", image.OCIArchive, "oci-archive, oci-layout or docker-archive")
	build.Flags().StringVar(&o.Dest, "dest", "", "where to write (default: from the tag, in the current directory)")
	cmd.AddCommand(build)
	return cmd
}
