// Package textcheck holds the character rules that names and IDs shown to
// people share, so that what counts as invisible is decided in one place.
package textcheck

import "unicode"

// Invisible reports whether r is a character that changes a string without
// showing: a format character (zero-width spaces and joiners, bidi
// controls, the byte-order mark) or a line or paragraph separator. Two
// names or IDs that differ only by such characters read the same.
func Invisible(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}
