package textcheck

import "testing"

func TestInvisible(t *testing.T) {
	for _, r := range []rune{'\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u202e', '\u2066', '\u2069', '\u2028', '\u2029', '\u00ad'} {
		if !Invisible(r) {
			t.Errorf("Invisible(%U) = false, want true", r)
		}
	}
	for _, r := range []rune{'a', 'Z', '0', '_', '-', ' ', '\u00a0', '\u3000', 'é', 'ж', '中'} {
		if Invisible(r) {
			t.Errorf("Invisible(%U) = true, want false", r)
		}
	}
}
