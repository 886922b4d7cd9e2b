package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

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

// ownersDir is where the owner locks of the store at path live. Every
// handle on one file must find the same directory, so path is the file's
// with its symlinks resolved (see OpenSQLite). Two hard links to one file
// are two paths that nothing in the file system joins: handles that open
// the file by two of its hard links do not see each other's locks.
func ownersDir(path string) string { return path + "-owners" }

// An owner's lock file is ID.lock; ID.ready, created once the lock is
// held, says that it is. Between the two a look at the lock file could take
// its lock before its owner does, find it free and remove it: the owner
// would then hold the lock of a file no longer there, taken by every other
// process for gone. So a lock file without its ready file is an owner being
// created, never looked into, unless it is older than readyGrace (its
// process died in between, or it was made by a version without ready
// files).
const (
	lockSuffix  = ".lock"
	readySuffix = ".ready"
	readyGrace  = time.Minute
)

// lockOwner creates and locks a new owner's file in dir.
func lockOwner(dir string) (*ownerLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	id := newOwnerID()
	l := flock.New(filepath.Join(dir, id+lockSuffix), flock.SetFlag(os.O_CREATE|os.O_RDWR), flock.SetPermissions(0o600))
	ok, err := l.TryLock()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errors.New("a fresh owner lock is held by another process")
	}
	if err := os.WriteFile(filepath.Join(dir, id+readySuffix), nil, 0o600); err != nil {
		_ = l.Unlock()
		_ = os.Remove(l.Path())
		return nil, err
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
		id, ok := strings.CutSuffix(e.Name(), lockSuffix)
		if ok && id != self {
			ownerAlive(dir, id)
		}
	}
}

// release unlocks and removes the owner's files.
func (o *ownerLock) release() {
	path := o.lock.Path()
	_ = o.lock.Unlock()
	_ = os.Remove(path)
	_ = os.Remove(strings.TrimSuffix(path, lockSuffix) + readySuffix)
}

// ownerAlive reports whether the owner's lock in dir is still held. An
// owner whose file is gone, or whose lock can be taken, is gone too (and
// its files are removed); one being created (no ready file yet, for less
// than readyGrace) is alive.
func ownerAlive(dir, id string) bool {
	path := filepath.Join(dir, id+lockSuffix)
	ready := filepath.Join(dir, id+readySuffix)
	info, err := os.Stat(path)
	if err != nil {
		return false
	}
	if _, err := os.Stat(ready); err != nil && time.Since(info.ModTime()) < readyGrace {
		return true
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
		_ = os.Remove(ready)
		return false
	}
	return true
}
