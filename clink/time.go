package clink

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Time is a date-time from Clink. The API notes say only "date-time", so it decodes the
// shapes a Java backend commonly emits: RFC 3339 ("2025-01-02T15:04:05Z"), the same with a
// "+0000" offset, "2025-01-02 15:04:05" and "2025-01-02T15:04:05" (no zone: UTC), each with
// optional fractional seconds, and milliseconds since the epoch as a number or a string (from
// March 1973: a smaller number, more likely seconds, is not read). null and "" leave the time
// zero. A time outside the years 1 to 9999 is not read (RFC 3339 has no
// other years; such a time is a mistake, not an expiry). It embeds time.Time, whose methods (IsZero, UTC, Format,
// MarshalJSON, ...) it has.
type Time struct{ time.Time }

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05Z0700",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05Z0700",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
}

var errBadTime = errors.New("clink: unrecognised date-time")

// minEpochMillis is the smallest epoch time read as milliseconds: 1e11 ms
// is March 1973. Below it a number is more likely seconds (1e11 s is the
// year 5138) or zero for "none" than a date of 1970 to 1973, and which it is
// Clink does not say: it is not read, rather than guessed.
const minEpochMillis = 100_000_000_000

// UnmarshalJSON implements json.Unmarshaler. Its errors never repeat the input.
func (t *Time) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(b, &s); err != nil {
			return errBadTime
		}
		if s == "" {
			return nil
		}
	}
	if allDigits(s) {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < minEpochMillis {
			return errBadTime
		}
		return t.set(time.UnixMilli(ms).UTC())
	}
	if len(s) > 64 {
		return errBadTime
	}
	for _, layout := range timeLayouts {
		if v, err := time.Parse(layout, s); err == nil {
			return t.set(v)
		}
	}
	return errBadTime
}

// set sets t to v, a time in the years 1 to 9999 (in UTC), or refuses it.
func (t *Time) set(v time.Time) error {
	if y := v.UTC().Year(); y < 1 || y > 9999 {
		return errBadTime
	}
	*t = Time{v}
	return nil
}
