package sshx

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// GenerateKey writes a new ed25519 key pair in OpenSSH format: dir/name
// (private, 0600) and dir/name.pub. It returns the private key's path and
// the public key as an authorized_keys line. Existing files are replaced
// atomically.
func GenerateKey(dir, name string) (privPath, pubLine string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("unable to generate ssh key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "darkshell "+name)
	if err != nil {
		return "", "", fmt.Errorf("unable to encode ssh key: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", fmt.Errorf("unable to encode ssh public key: %w", err)
	}
	pubLine = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " darkshell " + name
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("unable to create key directory: %w", err)
	}
	privPath = filepath.Join(dir, name)
	if err := writeFileAtomic(privPath, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(privPath+".pub", []byte(pubLine+"\n"), 0o644); err != nil {
		return "", "", err
	}
	return privPath, pubLine, nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("unable to write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("unable to write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("unable to write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("unable to write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("unable to write %s: %w", path, err)
	}
	return nil
}
