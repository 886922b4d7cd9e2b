package clink

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
)

// Secret holds a sensitive string, such as a checkout session's tokenValue. Whatever prints
// it sees "[REDACTED]": String, every fmt verb (%v, %+v, %#v, %s, %q, %x...), log/slog and
// encoding/json. Only Reveal returns the value.
type Secret struct {
	v string
}

// NewSecret wraps v. Fakes and tests use it to build sessions.
func NewSecret(v string) Secret { return Secret{v} }

// Reveal returns the secret value.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

// String returns "[REDACTED]".
func (s Secret) String() string { return redacted }

// GoString returns "[REDACTED]".
func (s Secret) GoString() string { return redacted }

// Format writes "[REDACTED]" for every verb.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue returns "[REDACTED]" for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON writes "[REDACTED]": a session encoded for an agent or a log keeps its token
// out.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// UnmarshalJSON reads a JSON string (null leaves the secret unchanged).
func (s *Secret) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return errors.New("clink: secret value is not a JSON string")
	}
	s.v = v
	return nil
}
