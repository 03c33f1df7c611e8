package image

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Push uploads img to the registry reference ref (REGISTRY/REPO:TAG) and
// returns it by digest. Loopback registries (localhost, 127.0.0.1) are
// spoken to over plain HTTP, as docker and podman do; others need HTTPS
// unless insecure. Credentials come from the docker/podman auth files
// (~/.docker/config.json, $REGISTRY_AUTH_FILE, ...).
func Push(ctx context.Context, img v1.Image, ref string, insecure bool, progress func(done, total int64)) (string, error) {
	tag, err := pushRef(ref, insecure)
	if err != nil {
		return "", err
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	var done chan struct{}
	if progress != nil {
		ch := make(chan v1.Update, 16)
		done = make(chan struct{})
		go func() {
			defer close(done)
			for u := range ch {
				progress(u.Complete, u.Total)
			}
		}()
		ropts = append(ropts, remote.WithProgress(ch))
	}
	err = remote.Write(tag, img, ropts...)
	if done != nil {
		<-done // remote.Write closes the channel
	}
	if err != nil {
		return "", fmt.Errorf("push to %s: %w", tag, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return tag.Context().Digest(d.String()).String(), nil
}

func pushRef(ref string, insecure bool) (name.Tag, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	tag, err := name.NewTag(ref, opts...)
	if err != nil {
		return name.Tag{}, fmt.Errorf("push reference %q: %w (want REGISTRY/REPO:TAG, e.g. 127.0.0.1:5000/darkshell/factory:1)", ref, err)
	}
	return tag, nil
}
