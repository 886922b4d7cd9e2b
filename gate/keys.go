package gate

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/clink-mcp/clink-mcp/policy"
)

// keys are the subkeys of the state secret, one per use, so that no value
// computed for one use can stand for another.
type keys struct {
	customer []byte // customer hashes (policy.CustomerKeys and the journal)
	replay   []byte // AES-256-GCM for stored replays
	claim    []byte // claim keys
	question []byte // AES-256-GCM for approval questions' states
}

func deriveKeys(secret []byte) keys {
	sub := func(label string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("clink-mcp state secret v1\x00" + label))
		return m.Sum(nil)
	}
	return keys{customer: sub("customer"), replay: sub("replay"), claim: sub("claim"), question: sub("approval question")}
}

// fingerprint is the keyed hash (hex) of a call's fingerprint, as claims
// and approvals keep it: the request holds the customer's email.
func (k keys) fingerprint(tool string, fp []byte) string {
	m := hmac.New(sha256.New, k.claim)
	m.Write([]byte("fingerprint\x00" + tool + "\n"))
	m.Write(fp)
	return hex.EncodeToString(m.Sum(nil))
}

// newAEAD returns AES-256-GCM under a 32-byte key.
func newAEAD(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("gate: " + err.Error()) // a 32-byte key cannot fail
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("gate: " + err.Error())
	}
	return aead
}

// claimKey names the duplicate guard's slot for a call: the tool and a
// keyed hash of the caller, the Clink account and the call's identity (its
// idempotency key, or its fingerprint). Calls of different callers or
// accounts never share a slot.
func (k keys) claimKey(tool, caller, account, kind, id string) string {
	m := hmac.New(sha256.New, k.claim)
	for _, s := range []string{caller, account, kind, id} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	return tool + "|" + kind + "|" + hex.EncodeToString(m.Sum(nil)[:20])
}

// scopePrefix is what [Config.Scope] puts before every counter key the
// policy makes: "scope|LEN|SCOPE|", LEN being SCOPE's length in bytes in
// decimal; "" for no scope. No key the policy makes starts with "scope|"
// (they start with "budget|" or "rate|"), and LEN says where SCOPE ends
// whatever it and the key contain, so a scoped key is never another
// scope's key, nor an unscoped one.
func scopePrefix(scope string) string {
	if scope == "" {
		return ""
	}
	return "scope|" + strconv.Itoa(len(scope)) + "|" + scope + "|"
}

// limits returns the budget and rate-limit counters req is checked
// against: as the policy made them, for [Policy.LimitDecision], and as
// the store keeps them, under the gate's scope (the same slice when it has
// none). Both are in the same order, so a denial's index fits either.
func (g *Gate) limits(req *policy.Request, customers []string) (own, stored []policy.Limit) {
	own = g.policy.Limits(req, customers)
	return own, g.scoped(own)
}

// scoped returns limits as the store keeps them, under the gate's scope
// (limits itself when it has none).
func (g *Gate) scoped(limits []policy.Limit) []policy.Limit {
	if g.scope == "" {
		return limits
	}
	stored := make([]policy.Limit, len(limits))
	for i, l := range limits {
		l.Key = g.scope + l.Key
		stored[i] = l
	}
	return stored
}

// AccountID names a Clink account as the gate binds claims to it: a hash of
// the API base URL and the API key. The key cannot be recovered from it.
func AccountID(baseURL, apiKey string) string {
	sum := sha256.Sum256([]byte("clink-mcp account v1\x00" + baseURL + "\x00" + apiKey))
	return hex.EncodeToString(sum[:16])
}

// MinSecretLen is the shortest state secret accepted, in bytes.
const MinSecretLen = 32

// LoadSecret reads the state secret from path: the file's bytes, surrounding
// whitespace trimmed, at least [MinSecretLen] of them (e.g. the output of
// "openssl rand -hex 32"). When the file does not exist and create is true,
// it writes a fresh random secret there first (64 hex digits, mode 0600, its
// directory 0700), so that a single server needs no setup; replicas share a
// store and must be given the same secret. The secret never appears in an
// error.
func LoadSecret(path string, create bool) ([]byte, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		// Like the store, the secret is its owner's alone.
		if err := os.Chmod(path, fi.Mode().Perm()&^0o077); err != nil {
			return nil, fmt.Errorf("state secret %s is open to other users (mode %#o) and cannot be restricted: %w", path, fi.Mode().Perm(), err)
		}
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		if err := writeSecret(path); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("state secret %s: %w", path, err)
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("state secret: %w", err)
	}
	secret := bytes.TrimSpace(b)
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("state secret %s: %d bytes, want at least %d (e.g. openssl rand -hex 32)", path, len(secret), MinSecretLen)
	}
	return secret, nil
}

// writeSecret creates path with a fresh secret; it fails with fs.ErrExist
// when another process created it first.
func writeSecret(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	// Write to a temporary file, then link it into place: a reader never
	// sees a half-written secret, and of two processes racing, one wins.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secret-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(hex.EncodeToString(raw[:]) + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	err = os.Link(tmp.Name(), path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	// A file system without hard links: create the file exclusively and
	// write it in place; a concurrent reader may then see it short, and
	// fails rather than using it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(hex.EncodeToString(raw[:]) + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
