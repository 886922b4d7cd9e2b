package state_test

import (
	"path/filepath"
	"testing"

	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/gate/state/statetest"
)

func TestMemoryConformance(t *testing.T) {
	statetest.Run(t, func(t testing.TB) func() state.Store {
		m := state.NewMemory()
		first := true
		return func() state.Store {
			h := m
			if !first {
				h = m.Open()
			}
			first = false
			t.Cleanup(func() { h.Close() })
			return h
		}
	})
}

func TestSQLiteConformance(t *testing.T) {
	statetest.Run(t, func(t testing.TB) func() state.Store {
		path := filepath.Join(t.TempDir(), "state.db")
		return func() state.Store {
			s, err := state.OpenSQLite(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	})
}
