package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/gofrs/flock"
)

// ownerLock is a file, locked for as long as the store handle that owns it
// is open: the operating system releases the lock when the process ends,
// however it ends (kill -9 included), so another process can tell that the
// handle's open intents will never be completed.
type ownerLock struct {
	id   string
	lock *flock.Flock
}

// ownersDir is where the owner locks of the store at path live.
func ownersDir(path string) string { return path + "-owners" }

// lockOwner creates and locks a new owner's file in dir.
func lockOwner(dir string) (*ownerLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	id := newOwnerID()
	l := flock.New(filepath.Join(dir, id+".lock"), flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600))
	ok, err := l.TryLock()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("a fresh owner lock is held by another process")
	}
	sweepOwners(dir, id)
	return &ownerLock{id: id, lock: l}, nil
}

// sweepOwners removes the lock files of owners that are gone (ownerAlive
// does), so that processes that crashed with no open intent leave nothing
// behind for long.
func sweepOwners(dir, self string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".lock")
		if ok && id != self {
			ownerAlive(dir, id)
		}
	}
}

// release unlocks and removes the owner's file.
func (o *ownerLock) release() {
	path := o.lock.Path()
	_ = o.lock.Unlock()
	_ = os.Remove(path)
}

// ownerAlive reports whether the owner's lock in dir is still held. An
// owner whose file is gone, or whose lock can be taken, is gone too.
func ownerAlive(dir, id string) bool {
	path := filepath.Join(dir, id+".lock")
	if _, err := os.Stat(path); err != nil {
		return false
	}
	l := flock.New(path, flock.SetFlag(os.O_RDWR))
	ok, err := l.TryLock()
	if err != nil {
		// The file vanished between the two looks, or cannot be opened:
		// its owner released it.
		return false
	}
	if ok {
		_ = l.Unlock()
		_ = os.Remove(path)
		return false
	}
	return true
}
