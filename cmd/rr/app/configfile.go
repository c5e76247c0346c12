package app

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// readableConfig returns a path the config reader accepts. Viper picks the format from the file
// extension, so a file such as .rr.yaml.example is read through a .yaml copy in the temp dir
// (one per source path, rewritten on every start).
func readableConfig(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json", ".toml":
		return path, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read config %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("config %s: %w", path, err)
	}
	sum := sha256.Sum256([]byte(abs))
	copyPath := filepath.Join(os.TempDir(), "rr-config-"+hex.EncodeToString(sum[:6])+".yaml")
	if err := os.WriteFile(copyPath, b, 0o600); err != nil {
		return "", fmt.Errorf("config %s: write a .yaml copy: %w", path, err)
	}
	return copyPath, nil
}
