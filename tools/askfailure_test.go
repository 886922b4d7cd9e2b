package tools

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// The reason a failed question gives the agent is the client's or the
// transport's text, kept to one printable line of bounded length.
func TestAskFailureIsOnePrintableBoundedLine(t *testing.T) {
	got := askFailure(errors.New("multi round-trip: elicitation request failed: no\nwindow\u202e\x00here"))
	if got != "elicitation request failed: no window here" {
		t.Errorf("askFailure = %q", got)
	}
	if got := askFailure(errors.New(" \t\n")); got != "no reason given" {
		t.Errorf("askFailure of blanks = %q", got)
	}
	long := askFailure(errors.New(strings.Repeat("é", 3*maxAskFailure)))
	if n := utf8.RuneCountInString(long); n != maxAskFailure+1 || !strings.HasSuffix(long, "…") {
		t.Errorf("a long reason keeps %d runes (%q...), want %d and an ellipsis", n, long[:20], maxAskFailure+1)
	}
}
