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
// commands that work on it beside the server (audit, approvals): the
// database of CLINK_DATABASE_URL, else the store.path of the policy named
// by --policy or CLINK_POLICY (the built-in demo policy's without one),
// which must exist.
func openServerStore(ctx context.Context, cfg *config) (*storeOpening, error) {
	p := policy.Demo()
	if cfg.policyPath != "" {
		var err error
		if p, err = policy.Load(cfg.policyPath); err != nil {
			return nil, fmt.Errorf("policy (CLINK_POLICY): %v", err)
		}
	}
	return openStore(ctx, cfg, p, true)
}

// openStore opens the store every policy file shares: PostgreSQL when
// CLINK_DATABASE_URL is set (replicas), else SQLite at the policy's
// store.path. When mustExist is set, a SQLite file that is not there is an
// error instead of a new store (the audit commands read, never create).
func openStore(ctx context.Context, cfg *config, p *policy.Policy, mustExist bool) (*storeOpening, error) {
	if cfg.databaseURL != "" {
		ctx, cancel := context.WithTimeout(ctx, openTimeout)
		defer cancel()
		st, err := state.OpenPostgres(ctx, cfg.databaseURL)
		if err != nil {
			// The store's errors never hold the URL's password. The
			// driver's may span lines (one per address tried): a
			// configuration error is one line.
			return nil, fmt.Errorf("store (CLINK_DATABASE_URL): %s", strings.Join(strings.Fields(err.Error()), " "))
		}
		return &storeOpening{st: st, where: "the database (CLINK_DATABASE_URL)"}, nil
	}
	path, err := p.StoreFile()
	if err != nil {
		return nil, fmt.Errorf("store (the policy's store.path): %v", err)
	}
	if mustExist {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("store %s: %v (is --policy / CLINK_POLICY the server's?)", path, errors.Unwrap(err))
		}
	}
	st, err := state.OpenSQLite(path)
	if err != nil {
		return nil, fmt.Errorf("store (the policy's store.path): %v", err)
	}
	return &storeOpening{st: st, where: path, path: path}, nil
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
