package app

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The example config the README tells users to run is valid: every plugin initialises with it.
func TestExampleConfigInitialises(t *testing.T) {
	cont, err := NewContainer(filepath.Join("..", "..", "..", ".rr.yaml.example"), nil, Plugins())
	require.NoError(t, err)
	require.NotNil(t, cont)
}

func TestRPCAddressReadsAnyExtension(t *testing.T) {
	path := filepath.Join(t.TempDir(), "my.rr.yaml.example")
	require.NoError(t, os.WriteFile(path, []byte("version: \"3\"\nrpc:\n  listen: tcp://127.0.0.1:7777\n"), 0o600))
	network, addr, err := RPCAddress(path, nil)
	require.NoError(t, err)
	require.Equal(t, "tcp", network)
	require.Equal(t, "127.0.0.1:7777", addr)

	_, addr, err = RPCAddress(path, []string{"rpc.listen=tcp://127.0.0.1:8888"})
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8888", addr, "-o overrides apply")
}
