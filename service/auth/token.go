package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// TokenPrefix starts every token [NewToken] makes, so a leaked one is
// recognisable (and secret scanners can look for it).
const TokenPrefix = "clk_"

// tokenBytes is the entropy of a token: 256 bits.
const tokenBytes = 32

// NewToken returns a new random bearer token: [TokenPrefix] followed by 32
// bytes from crypto/rand in unpadded base64url (47 characters in all).
func NewToken() (string, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashToken returns the lowercase hex SHA-256 of token, the form a
// principals file stores (token_sha256). A token of 256 random bits needs
// no slow hash: nobody can guess it back from its hash.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TokenLines formats what `clink-mcp token new NAME` prints: the token,
// shown this once, and the principals-file entry to paste under
// principals:, which holds only the token's hash. name should pass
// [CheckName]; it is quoted if YAML would read it as something other than a
// string (such as 123 or true).
func TokenLines(name, token string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Bearer token for %s (shown only this once; give it to the agent and keep it secret):\n", name)
	fmt.Fprintf(&b, "%s\n", token)
	b.WriteString("\nAdd this to the principals file, under principals:\n")
	fmt.Fprintf(&b, "  - name: %s\n", yamlString(name))
	fmt.Fprintf(&b, "    token_sha256: %s\n", HashToken(token))
	return b.String()
}

// yamlString renders s as a YAML scalar that reads back as the string s.
func yamlString(s string) string {
	n := yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	out, err := yaml.Marshal(&n)
	if err != nil {
		return fmt.Sprintf("%q", s)
	}
	return strings.TrimSuffix(string(out), "\n")
}
