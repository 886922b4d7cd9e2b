package clink

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Text Clink sends (an envelope's msg, the start of a body that is not an envelope) reaches the
// agent and the operator's log through *Error. Clink may echo what it was sent or holds: a
// customer's email, a session's tokenValue, an API key. So such text is sanitized where the
// client first holds it, before any *Error carries it: one place, and no caller can forget.

// maskMargin is how many runes past the kept length are read before masking, so that a token
// straddling the cut is masked whole rather than shown in part.
const maskMargin = 200

// sanitize makes text Clink sent fit to show an agent or write to a log: the API key
// redacted, control and format characters (NUL, ESC, bidi overrides, zero-width spaces)
// dropped so that they can neither reach a terminal nor split a token into innocent-looking
// pieces, whitespace collapsed, emails masked (a***@example.com), token-, key- and JWT-shaped
// strings replaced by [REDACTED], and at most n runes kept, with "…" when cut. Short
// identifier-like messages such as CUSTOMER_NOT_FOUND pass unchanged.
func sanitize(s string, n int, key string) string {
	return sanitizeStart(s, false, n, key)
}

// sanitizeStart is sanitize for s that is the start of a longer text if more is set.
func sanitizeStart(s string, more bool, n int, key string) string {
	s, cut := visible(scrub(s, key), n+maskMargin)
	if cut = cut || more; cut {
		// The last word may go on past the cut: unseen, it cannot be judged (half an
		// address has no domain to be recognised by), so it is dropped, or marked when long
		// enough to be a token.
		kept := strings.TrimRightFunc(s, isWordRune)
		if utf8.RuneCountInString(s[len(kept):]) >= minTokenLen {
			kept += redacted
		}
		s = kept
	}
	s = clean(mask(scrub(s, key)), n, key)
	if cut && !strings.HasSuffix(s, "…") {
		s += "…"
	}
	return s
}

// visible returns the first limit runes of s as one line: whitespace runs become one space,
// invalid UTF-8 becomes '?', and other unprintable runes are dropped. It reports whether
// anything visible followed.
func visible(s string, limit int) (string, bool) {
	var b strings.Builder
	runes, space := 0, false
	for i, w := 0, 0; i < len(s); i += w {
		r, size := utf8.DecodeRuneInString(s[i:])
		w = size
		switch {
		case r == utf8.RuneError && size <= 1:
			r = '?'
		case unicode.IsSpace(r):
			space = runes > 0
			continue
		case !unicode.IsPrint(r):
			continue
		}
		if space {
			space = false
			if runes < limit {
				b.WriteByte(' ')
				runes++
			}
		}
		if runes >= limit {
			return b.String(), true
		}
		b.WriteRune(r)
		runes++
	}
	return b.String(), false
}

// maskShapes are the shapes mask looks for. Each replacement keeps what tells a reader what
// was there (the field name, the token's prefix, the email's domain) and drops the secret part.
type maskShapes struct {
	// bearer is an HTTP bearer credential.
	bearer *regexp.Regexp
	// secretField is a value given for a field whose name says it is secret, as in
	// tokenValue=..., "apiKey":"...", secretKey: ... or password: ....
	secretField *regexp.Regexp
	// email is an email address; its local part is masked. The local part
	// takes every character policy.NormalizeEmail accepts there (RFC 5322's
	// atext and dots), letters and digits of any script, and JSON escapes
	// (alice\u002Btag@..., as a JSON body Clink repeats writes a "+").
	email *regexp.Regexp
	// encodedEmail is an email address whose "@" is encoded: percent-encoded
	// in a URL ("%40"), twice so in a URL carried in another ("%2540"), a
	// JSON escape ("\u0040", its backslash doubled in JSON within JSON), or
	// an HTML character reference ("&#64;", "&#x40;"), as in a redirect URL
	// or a body Clink repeats; its local part, encoded alike, is masked. It
	// stops at a URL's delimiters (/ ? = & #), which an encoded address would
	// have escaped.
	encodedEmail *regexp.Regexp
	// encodedAt finds the encoded "@" in a match of encodedEmail.
	encodedAt *regexp.Regexp
	// jwt is a JSON Web Token: its header is base64url JSON, so it starts with "eyJ".
	jwt *regexp.Regexp
	// dotted is anything else shaped like a JWT (xxx.yyy.zzz), masked unless its parts are
	// words, as in a dotted field path.
	dotted *regexp.Regexp
	// prefixed is a token or key with a known prefix: sk_test_..., sk_prod_..., sk_live_...,
	// pk_..., rk_..., tok_..., whsec_... (see maskPrefixed).
	prefixed *regexp.Regexp
	// envPrefix is the environment part of a key's prefix, kept by maskPrefixed.
	envPrefix *regexp.Regexp
	// base64 is a standard base64 blob; those without '+', '/' or '=' are runs (run).
	base64 *regexp.Regexp
	// run is a long run of identifier characters: a random ID, a key, a hex digest, or a
	// long name such as CUSTOMER_IDENTIFIER_NOT_MATCHED, which wordLike tells apart.
	run *regexp.Regexp
	// tokenValue finds a tokenValue string in JSON text, even one cut short.
	tokenValue *regexp.Regexp
}

// shapes compiles the maskShapes on first use rather than when the program starts: most
// runs never mask anything, and compiling them (Unicode classes included) took some 0.6 ms
// of every start.
var shapes = sync.OnceValue(func() *maskShapes {
	return &maskShapes{
		bearer:       regexp.MustCompile(`(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+`),
		secretField:  regexp.MustCompile(`(?i)((?:token|secret|password|passwd|api[_-]?key|authorization)[a-z]*"?\s*[:=]\s*"?)[^\s",;&}]+`),
		email:        regexp.MustCompile("(?:[\\p{L}\\p{N}.!#$%&'*+/=?^_\x60{|}~-]|\\\\+u[0-9A-Fa-f]{4})+@[\\p{L}\\p{N}-]+(?:\\.[\\p{L}\\p{N}-]+)+"),
		encodedEmail: regexp.MustCompile("(?:[\\p{L}\\p{N}.!$'*+^_\x60{|}~-]|%(?:25)?" + encodedByte + "|\\\\+[uU][0-9A-Fa-f]{4}|&#[0-9]{1,7};|&#[xX][0-9A-Fa-f]{1,6};)+" + encodedAt + "[\\p{L}\\p{N}-]+(?:\\.[\\p{L}\\p{N}-]+)+"),
		encodedAt:    regexp.MustCompile(encodedAt),
		jwt:          regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}(?:\.[A-Za-z0-9_-]*)?`),
		dotted:       regexp.MustCompile(`[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]{8,}){2,}`),
		prefixed:     regexp.MustCompile(`\b(?:sk|pk|rk|tok|whsec)_[A-Za-z0-9_-]*`),
		envPrefix:    regexp.MustCompile(`^(?:sk|pk|rk)_(?:test|live|prod)_`),
		base64:       regexp.MustCompile(`[A-Za-z0-9+/]{` + strconv.Itoa(minTokenLen) + `,}={0,2}`),
		run:          regexp.MustCompile(`[A-Za-z0-9_-]{` + strconv.Itoa(minTokenLen) + `,}`),
		tokenValue:   regexp.MustCompile(`("tokenValue"\s*:\s*)"(?:[^"\\]|\\.)*(?:"|\\?$)`),
	}
})

// encodedByte is a percent-encoded byte (without its %) other than a URL's
// delimiters (%23 #, %26 &, %2F /, %3A :, %3D =, %3F ?): an address
// encoded in a URL within a URL stops at them, as one encoded once stops
// at the delimiters themselves.
const encodedByte = `(?:2[0-24-57-9A-Ea-e]|3[0-9BbCcEe]|[014-9A-Fa-f][0-9A-Fa-f])`

// encodedAt is an encoded "@" (see maskShapes.encodedEmail).
const encodedAt = `(?:%(?:25)?40|\\+[uU]0040|&#0*64;|&#[xX]0*40;)`

// maxEmailPasses bounds mask's passes over emails.
const maxEmailPasses = 8

// minTokenLen is the length from which a run of identifier characters is judged as a
// possible token: shorter runs hold too little entropy to be a credential.
const minTokenLen = 24

// mask replaces emails and token-, key- and JWT-shaped strings in s (see sanitize).
func mask(s string) string {
	re := shapes()
	s = re.bearer.ReplaceAllString(s, "${1}"+redacted)
	s = re.secretField.ReplaceAllString(s, "${1}"+redacted)
	// A masked domain may read as the next address's mailbox (a@b.c@d.e), so mask until a
	// pass changes nothing (maskEmail keeps what it returned as it is); should that take
	// more passes than any text needs, every address left is redacted whole.
	for pass := 0; ; pass++ {
		next := re.email.ReplaceAllStringFunc(s, maskEmail)
		if next == s {
			break
		}
		if pass == maxEmailPasses {
			s = re.email.ReplaceAllString(next, redacted)
			break
		}
		s = next
	}
	s = re.encodedEmail.ReplaceAllStringFunc(s, func(m string) string {
		// The last encoded "@": the domain holds none.
		loc := re.encodedAt.FindAllStringIndex(m, -1)
		at := loc[len(loc)-1]
		return strings.Replace(maskEmail(m[:at[0]]+"@"+m[at[1]:]), "@", m[at[0]:at[1]], 1)
	})
	s = re.jwt.ReplaceAllString(s, redacted)
	s = re.dotted.ReplaceAllStringFunc(s, unlessWords)
	s = re.prefixed.ReplaceAllStringFunc(s, maskPrefixed)
	s = re.base64.ReplaceAllStringFunc(s, func(m string) string {
		if !strings.ContainsAny(m, "+/=") {
			return m
		}
		return unlessWords(m)
	})
	return re.run.ReplaceAllStringFunc(s, unlessWords)
}

// maskPrefixed masks a match of maskShapes.prefixed, keeping its prefix (tok_, sk_live_): tok_[REDACTED].
// A bare prefix, or one followed by fewer than minSecretLen characters, is no token and is kept,
// so that masking what mask returned changes nothing.
func maskPrefixed(m string) string {
	prefix := shapes().envPrefix.FindString(m)
	if prefix == "" {
		prefix = m[:strings.IndexByte(m, '_')+1]
	}
	if len(m)-len(prefix) < minSecretLen {
		return m
	}
	return prefix + redacted
}

// minSecretLen is the shortest secret after a known prefix that is masked.
const minSecretLen = 4

// maskEmail keeps an address's first rune and its domain: a***@example.com, the form the
// rest of the project logs customers in.
func maskEmail(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	local, domain := addr[:at], addr[at+1:]
	r, size := utf8.DecodeRuneInString(local)
	if size == len(local) || strings.Trim(local, "*") == "" {
		// One character, or a mask already: *** (so that masking what
		// this returned changes nothing).
		return "***@" + domain
	}
	return string(r) + "***@" + domain
}

// unlessWords returns m if it is made of words (wordLike), else the redaction marker.
func unlessWords(m string) string {
	if wordLike(m) {
		return m
	}
	return redacted
}

// Limits of wordLike's pieces.
const (
	maxWordLen      = 20 // longer letter runs are not words ("internationalization" is 20)
	shortWordLen    = 4  // capitals this few may be an acronym ("HTTP"); words need vowels
	maxConsonantRun = 4  // longer words have vowels, at most this many consonants apart
	maxNumberLen    = 4  // longer digit runs are not part of a name
	maxNumbers      = 2  // nor are many numbers
	tinyPieceLen    = 2  // pieces this short are rare in names ("Qr", "X")...
	maxTinyShare    = 3  // ...at most one piece in this many
	minAvgPieceLen  = 3  // random text breaks into many short pieces
)

// wordLike reports whether s reads as a name made of words, such as
// CUSTOMER_IDENTIFIER_NOT_MATCHED, paymentMethodTypeBlackList or api/checkout/session, rather
// than random characters. It splits s at punctuation, at case changes (fooBar, HTTPServer) and
// between letters and digits; a name's pieces are pronounceable words or short acronyms, with
// few numbers and few tiny pieces. Random IDs, keys and digests break into many short pieces,
// numbers, long letter runs or runs of consonants.
func wordLike(s string) bool {
	pieces, total, numbers, tiny := 0, 0, 0, 0
	ok := true
	eachPiece(s, func(p string) {
		pieces++
		total += len(p)
		if len(p) <= tinyPieceLen {
			tiny++
		}
		if isDigit(p[0]) {
			numbers++
			ok = ok && len(p) <= maxNumberLen
			return
		}
		ok = ok && wordPiece(p)
	})
	return ok && pieces > 0 && numbers <= maxNumbers && tiny*maxTinyShare <= pieces &&
		total >= minAvgPieceLen*pieces
}

// wordPiece reports whether the letters p could be a word or an acronym.
func wordPiece(p string) bool {
	switch {
	case len(p) > maxWordLen:
		return false
	case len(p) <= shortWordLen && isUpper(p[len(p)-1]), len(p) <= tinyPieceLen:
		return true // an acronym such as HTTP, or a piece such as Qr
	}
	run := 0
	for i := 0; i < len(p); i++ {
		if strings.IndexByte("aeiouAEIOU", p[i]) >= 0 {
			run = 0
		} else if run++; run > maxConsonantRun {
			return false
		}
	}
	return run < len(p) // a vowel somewhere
}

// eachPiece calls f with each piece of the ASCII identifier text s: the maximal runs of
// letters or of digits, further split where a lower-case letter meets an upper-case one
// (fooBar: foo, Bar) and before the last capital of an acronym followed by a word
// (HTTPServer: HTTP, Server).
func eachPiece(s string, f func(string)) {
	start := -1
	for i := 0; i <= len(s); i++ {
		if start >= 0 && (i == len(s) || !isAlnum(s[i]) || pieceBreak(s, i)) {
			f(s[start:i])
			start = -1
		}
		if i < len(s) && start < 0 && isAlnum(s[i]) {
			start = i
		}
	}
}

// pieceBreak reports whether a new piece starts at s[i] (i > 0; s[i-1] and s[i] are letters
// or digits).
func pieceBreak(s string, i int) bool {
	prev, c := s[i-1], s[i]
	switch {
	case isDigit(prev) != isDigit(c):
		return true
	case isLower(prev) && isUpper(c):
		return true
	case isUpper(prev) && isUpper(c) && i+1 < len(s) && isLower(s[i+1]):
		return true
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlnum(c byte) bool { return isDigit(c) || isUpper(c) || isLower(c) }

// isWordRune reports whether r can be part of an email or a token mask looks for.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_-+/=.@%'~", r)
}

// excerpt is the start of a body, fit for an error message: sanitized, and without a
// tokenValue whatever its shape.
func excerpt(body []byte, key string) string {
	// Keep enough bytes for the masking margin and a key straddling the cut.
	limit := (excerptLen+maskMargin)*utf8.UTFMax + len(key)
	more := len(body) > limit
	if more {
		body = body[:limit]
	}
	s := shapes().tokenValue.ReplaceAllString(string(body), `${1}"`+redacted+`"`)
	return sanitizeStart(s, more, excerptLen, key)
}

// sanitizeMessage cleans Clink's msg.
func sanitizeMessage(msg, key string) string {
	return sanitize(msg, messageLen, key)
}
