package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/clink-mcp/clink-mcp/gate"
	"github.com/clink-mcp/clink-mcp/gate/state"
	"github.com/clink-mcp/clink-mcp/policy"
)

// openTimeout bounds opening the store at start (connecting, migrating).
const openTimeout = 30 * time.Second

// storeOpening is a store found the way the server finds it, with what to
// call it in messages.
type storeOpening struct {
	st    state.Store
	where string // "the database (CLINK_DATABASE_URL)" or the SQLite file's path
	path  string // the SQLite file, or "" for the database
}

// openServerStore opens the store a server under cfg uses, for the
// commands that work on it beside the server (audit, approvals; command
// names the one running, as "audit verify"): the database of
// CLINK_DATABASE_URL, else the store.path of the policy named by --policy
// or CLINK_POLICY (the built-in demo policy's without one). The store must
// exist, be a clink-mcp store and have this binary's schema: these commands
// never create or migrate one, since a newer binary used only to read a
// store would otherwise upgrade it under the older server that serves it,
// which would then refuse to restart.
func openServerStore(ctx context.Context, cfg *config, command string) (*storeOpening, error) {
	p := policy.Demo()
	if cfg.policyPath != "" {
		var err error
		if p, err = policy.Load(cfg.policyPath); err != nil {
			return nil, fmt.Errorf("policy (CLINK_POLICY): %v", err)
		}
	}
	return openStore(ctx, cfg, p, command)
}

// openStore opens the store every policy file shares: PostgreSQL when
// CLINK_DATABASE_URL is set (replicas), else SQLite at the policy's
// store.path. The server (command "") creates and migrates it; a command
// working beside the server (see openServerStore) opens only a store that
// exists with this binary's schema, and refuses any other.
func openStore(ctx context.Context, cfg *config, p *policy.Policy, command string) (*storeOpening, error) {
	if cfg.databaseURL != "" {
		ctx, cancel := context.WithTimeout(ctx, openTimeout)
		defer cancel()
		var opts []state.PostgresOption
		if command != "" {
			opts = append(opts, state.PostgresNoMigrate())
		}
		const where = "the database (CLINK_DATABASE_URL)"
		st, err := state.OpenPostgres(ctx, cfg.databaseURL, opts...)
		if old := (*state.OldSchemaError)(nil); errors.As(err, &old) {
			return nil, olderStore("the store in "+where, command, old)
		}
		if err != nil {
			// The store's errors never hold the URL's password. The
			// driver's may span lines (one per address tried): a
			// configuration error is one line.
			return nil, fmt.Errorf("store (CLINK_DATABASE_URL): %s", strings.Join(strings.Fields(err.Error()), " "))
		}
		return &storeOpening{st: st, where: where}, nil
	}
	path, err := p.StoreFile()
	if err != nil {
		return nil, fmt.Errorf("store (the policy's store.path): %v", err)
	}
	var opts []state.SQLiteOption
	if command != "" {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("store %s: %v (is --policy / CLINK_POLICY the server's?)", path, errors.Unwrap(err))
		}
		opts = append(opts, state.SQLiteNoMigrate())
	}
	st, err := state.OpenSQLite(path, opts...)
	if old := (*state.OldSchemaError)(nil); errors.As(err, &old) {
		return nil, olderStore("the store at "+path, command, old)
	}
	if err != nil {
		return nil, fmt.Errorf("store (the policy's store.path): %v", err)
	}
	return &storeOpening{st: st, where: path, path: path}, nil
}

// olderStore is the refusal of command to open the store (named by
// store), whose schema is older than this binary's: upgrading it is the
// server's job, done when the store's operator chooses to.
func olderStore(store, command string, old *state.OldSchemaError) error {
	return fmt.Errorf("%s has schema version %d, older than this clink-mcp's %d: \"clink-mcp %s\" does not upgrade it; "+
		"run the clink-mcp that serves this store, or start the upgraded server once (it upgrades the store, after which older servers refuse it)",
		store, old.Version, old.Current, command)
}

// loadSecret reads the state secret: the file named by
// --state-secret-file, else (SQLite only) one kept, and made on first use,
// beside the store. Replicas on one database must share one secret, so the
// database needs it named.
func loadSecret(cfg *config, so *storeOpening) ([]byte, error) {
	path, create := cfg.secretFile, false
	if path == "" {
		if so.path == "" {
			return nil, errors.New("state-secret-file (CLINK_STATE_SECRET_FILE): required with CLINK_DATABASE_URL, the same file for every replica (make one with: openssl rand -hex 32 > FILE)")
		}
		path, create = so.path+".secret", true
	}
	secret, err := gate.LoadSecret(path, create)
	if err != nil {
		return nil, fmt.Errorf("state-secret-file (CLINK_STATE_SECRET_FILE): %v", err)
	}
	return secret, nil
}
