package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
)

const resource = "https://mcp.example.com/mcp"

const (
	challenge        = `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"`
	invalidChallenge = challenge + `, error="invalid_token"`
)

// signingKey is a key the test issuer signs tokens with.
type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func ecKey(t *testing.T, kid string) signingKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid, jose.ES256, k}
}

// signer returns a signer of access tokens (typ at+jwt) with k.
func (k signingKey) signer(t *testing.T) jose.Signer {
	t.Helper()
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// sign returns a JWT of claims signed with k.
func (k signingKey) sign(t *testing.T, claims any) string {
	t.Helper()
	signer := k.signer(t)
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signPayload returns a JWT whose payload is exactly payload (JSON text a
// map cannot hold: repeated names, their order), signed with k.
func (k signingKey) signPayload(t *testing.T, payload string) string {
	t.Helper()
	signer := k.signer(t)
	jws, err := signer.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// testIssuer is an authorization server: metadata and JWKS endpoints,
// counting fetches, which can go down.
type testIssuer struct {
	srv      *httptest.Server
	issuer   string // srv.URL + path
	metaPath string // the well-known path serving the metadata

	mu         sync.Mutex
	jwks       []byte
	metaIssuer string // the issuer the metadata claims

	down        atomic.Bool
	requests    atomic.Int32 // all, even while down
	metaFetches atomic.Int32
	jwksFetches atomic.Int32

	// jwksHeld, when set, holds JWKS responses until it is closed;
	// jwksArrived receives one value per JWKS request held.
	jwksHeld    chan struct{}
	jwksArrived chan struct{}
}

// newIssuer starts an issuer at path ("" for none) serving its metadata at
// metaPath ("" for the RFC 8414 path).
func newIssuer(t *testing.T, path, metaPath string) *testIssuer {
	t.Helper()
	is := &testIssuer{}
	is.srv = httptest.NewServer(http.HandlerFunc(is.serve))
	t.Cleanup(is.srv.Close)
	is.issuer = is.srv.URL + path
	is.metaIssuer = is.issuer
	is.metaPath = metaPath
	if metaPath == "" {
		is.metaPath = "/.well-known/oauth-authorization-server" + path
	}
	is.publish(t)
	return is
}

func (is *testIssuer) serve(w http.ResponseWriter, r *http.Request) {
	is.requests.Add(1)
	if r.URL.Path == "/keys" && is.jwksHeld != nil {
		is.jwksArrived <- struct{}{}
		<-is.jwksHeld
	}
	if is.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	switch r.URL.Path {
	case is.metaPath:
		is.metaFetches.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                 is.metaIssuer,
			"jwks_uri":               is.srv.URL + "/keys",
			"authorization_endpoint": is.srv.URL + "/authorize",
		})
	case "/keys":
		is.jwksFetches.Add(1)
		_, _ = w.Write(is.jwks)
	default:
		http.NotFound(w, r)
	}
}

// publish replaces the JWKS with the public halves of keys, plus extra raw
// JWKs.
func (is *testIssuer) publish(t *testing.T, keys ...signingKey) {
	t.Helper()
	set := []any{}
	for _, k := range keys {
		set = append(set, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	is.publishRaw(t, set...)
}

func (is *testIssuer) publishRaw(t *testing.T, keys ...any) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	is.mu.Lock()
	is.jwks = b
	is.mu.Unlock()
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// oauthEnv is a server authenticating against a test issuer.
type oauthEnv struct {
	is   *testIssuer
	clk  *clock
	key  signingKey
	a    *Authenticator
	srv  *httptest.Server
	logs *syncBuffer
}

// newOAuthEnv starts an issuer publishing one EC key and a server that
// admits the subject alice (policy /p/alice.yaml) and the token principal
// agent-a; configure may change the OAuth settings.
func newOAuthEnv(t *testing.T, configure func(*OAuth)) *oauthEnv {
	t.Helper()
	return newOAuthEnvWith(t, newIssuer(t, "", ""), configure)
}

func newOAuthEnvWith(t *testing.T, is *testIssuer, configure func(*OAuth)) *oauthEnv {
	t.Helper()
	e := &oauthEnv{is: is, clk: &clock{t: time.Now().Truncate(time.Second)}, key: ecKey(t, "k1"), logs: &syncBuffer{}}
	is.publish(t, e.key)
	o := &OAuth{
		Issuer:     is.issuer,
		Resource:   resource,
		Claim:      ClaimSubject,
		Principals: map[string]OAuthPrincipal{"alice": {Policy: "/p/alice.yaml"}},
	}
	if configure != nil {
		configure(o)
	}
	f := &File{
		Principals: []TokenPrincipal{{Name: "agent-a", TokenSHA256: HashToken("secret-token-a")}},
		OAuth:      o,
	}
	// The default HTTP client: the test issuer is plain http on loopback.
	a, err := New(f, WithClock(e.clk.now), WithLogger(newLogger(e.logs)))
	if err != nil {
		t.Fatal(err)
	}
	e.a = a
	e.srv = httptest.NewServer(a.Middleware(echoPrincipal))
	t.Cleanup(e.srv.Close)
	return e
}

// claims returns valid claims for alice, now.
func (e *oauthEnv) claims() map[string]any {
	now := e.clk.now().Unix()
	return map[string]any{
		"iss": e.is.issuer,
		"aud": resource,
		"sub": "alice",
		"iat": now,
		"nbf": now,
		"exp": now + 300,
	}
}

// with returns e.claims() changed by kv pairs; a nil value deletes.
func (e *oauthEnv) with(kv ...any) map[string]any {
	c := e.claims()
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func (e *oauthEnv) call(t *testing.T, token string) response {
	t.Helper()
	return call(t, e.srv.URL+"/mcp", "Bearer "+token)
}

const aliceOK = `{"authorization_seen":false,"method":"oauth","name":"oauth:alice","policy":"/p/alice.yaml"}`

func wantOK(t *testing.T, r response, body string) {
	t.Helper()
	if r.status != http.StatusOK || strings.TrimSpace(r.body) != body {
		t.Errorf("got %d %s, want 200 %s", r.status, r.body, body)
	}
}

// wantInvalid checks a 401 invalid_token whose description contains reason.
func wantInvalid(t *testing.T, r response, reason string) {
	t.Helper()
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal([]byte(r.body), &body)
	if r.status != http.StatusUnauthorized || r.www != invalidChallenge || body.Error != "invalid_token" || !strings.Contains(body.Description, reason) {
		t.Errorf("got %d, WWW-Authenticate %q, body %s\nwant 401, %q, reason %q", r.status, r.www, r.body, invalidChallenge, reason)
	}
}

func TestAValidAccessTokenAuthenticatesItsPrincipal(t *testing.T) {
	e := newOAuthEnv(t, nil)
	if n := e.is.metaFetches.Load() + e.is.jwksFetches.Load(); n != 0 {
		t.Fatalf("New contacted the issuer %d times; it must not", n)
	}
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)
	wantOK(t, e.call(t, e.key.sign(t, e.with("aud", []string{"https://other.example.com", resource}))), aliceOK)
	// Keys are cached.
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)
	if m, j := e.is.metaFetches.Load(), e.is.jwksFetches.Load(); m != 1 || j != 1 {
		t.Errorf("fetched metadata %d and JWKS %d times, want 1 and 1", m, j)
	}
}

func TestRSAAndEd25519KeysVerify(t *testing.T) {
	e := newOAuthEnv(t, nil)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := []signingKey{{"rs", jose.RS256, rk}, {"ps", jose.PS256, rk}, {"ed", jose.EdDSA, ek}}
	e.is.publish(t, keys...)
	for _, k := range keys {
		wantOK(t, e.call(t, k.sign(t, e.claims())), aliceOK)
	}
}

func TestTokensThatAreNotValidGet401(t *testing.T) {
	e := newOAuthEnv(t, nil)
	now := e.clk.now().Unix()
	other := ecKey(t, "k1") // same kid, not the published key
	cases := []struct {
		name, token, reason string
	}{
		{"for another audience", e.key.sign(t, e.with("aud", "https://other.example.com/mcp")), "the token is not for this resource"},
		{"for a longer resource URL", e.key.sign(t, e.with("aud", resource+"/x")), "the token is not for this resource"},
		{"without an audience", e.key.sign(t, e.with("aud", nil)), "the token is not for this resource"},
		{"expired beyond the leeway", e.key.sign(t, e.with("exp", now-31)), "the token has expired"},
		{"without exp", e.key.sign(t, e.with("exp", nil)), "the token has no expiry (exp)"},
		{"not valid before beyond the leeway", e.key.sign(t, e.with("nbf", now+31)), "the token is not valid yet (nbf)"},
		{"issued in the future", e.key.sign(t, e.with("iat", now+120)), "the token is issued in the future (iat)"},
		{"without sub", e.key.sign(t, e.with("sub", nil)), "the token has no sub claim"},
		{"with an empty sub", e.key.sign(t, e.with("sub", "")), "the token has no sub claim"},
		{"with a control character in sub", e.key.sign(t, e.with("sub", "ali\nce")), "the token's sub claim is not usable"},
		{"with a zero-width space in sub", e.key.sign(t, e.with("sub", "alice\u200b")), "the token's sub claim is not usable"},
		{"with a bidi override in sub", e.key.sign(t, e.with("sub", "ali\u202ece")), "the token's sub claim is not usable"},
		{"with bidi isolates in sub", e.key.sign(t, e.with("sub", "\u2066alice\u2069")), "the token's sub claim is not usable"},
		{"with a line separator in sub", e.key.sign(t, e.with("sub", "alice\u2028")), "the token's sub claim is not usable"},
		{"signed by another key with the same kid", other.sign(t, e.claims()), "the token's signature does not verify"},
		{"malformed", "abc.def.ghi", "not a JWT signed with an allowed algorithm"},
		{"tampered", tamper(t, e.key.sign(t, e.claims())), "the token's signature does not verify"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantInvalid(t, e.call(t, c.token), c.reason)
		})
	}
}

// tamper changes the token's sub to bob, keeping the signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	c["sub"] = "bob"
	payload, _ = json.Marshal(c)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func TestTimesAreCheckedWithThirtySecondsOfLeeway(t *testing.T) {
	e := newOAuthEnv(t, nil)
	now := e.clk.now().Unix()
	wantOK(t, e.call(t, e.key.sign(t, e.with("exp", now-29))), aliceOK)
	wantOK(t, e.call(t, e.key.sign(t, e.with("nbf", now+29))), aliceOK)
	wantOK(t, e.call(t, e.key.sign(t, e.with("iat", now+29))), aliceOK)
	// The clock is the Authenticator's: a token valid now expires later.
	tok := e.key.sign(t, e.claims())
	e.clk.add(300*time.Second + 31*time.Second)
	wantInvalid(t, e.call(t, tok), "the token has expired")
}

func TestATokenFromAnotherIssuerIsRefusedWithoutFetchingKeys(t *testing.T) {
	e := newOAuthEnv(t, nil)
	wantInvalid(t, e.call(t, e.key.sign(t, e.with("iss", "https://evil.example.com"))), "the token was not issued by "+e.is.issuer)
	wantInvalid(t, e.call(t, e.key.sign(t, e.with("iss", e.is.issuer+"/"))), "the token was not issued by")
	wantInvalid(t, e.call(t, e.key.sign(t, e.with("iss", nil))), "the token was not issued by")
	if n := e.is.metaFetches.Load() + e.is.jwksFetches.Load(); n != 0 {
		t.Errorf("the issuer was contacted %d times for foreign tokens", n)
	}
}

func TestUnsignedAndHMACTokensAreRefused(t *testing.T) {
	e := newOAuthEnv(t, nil)
	// The issuer even publishes the HMAC secret as an oct key with the kid
	// the token names: it must never be used.
	secret := []byte("0123456789abcdef0123456789abcdef")
	e.is.publishRaw(t,
		jose.JSONWebKey{Key: e.key.priv.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"},
		jose.JSONWebKey{Key: secret, KeyID: "hmac", Algorithm: "HS256", Use: "sig"},
	)
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK) // keys are fetched

	hsSigner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: secret, KeyID: "hmac"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := jwt.Signed(hsSigner).Claims(e.claims()).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(e.claims())
	enc := base64.RawURLEncoding.EncodeToString
	for name, tok := range map[string]string{
		"HS256":                 hs,
		"alg none":              enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + ".",
		"alg none with a kid":   enc([]byte(`{"alg":"none","kid":"k1"}`)) + "." + enc(payload) + ".",
		"alg None, capitalised": enc([]byte(`{"alg":"None"}`)) + "." + enc(payload) + ".",
	} {
		t.Run(name, func(t *testing.T) {
			wantInvalid(t, e.call(t, tok), "not a JWT signed with an allowed algorithm")
		})
	}
}

func TestAnUnknownKidRefetchesTheKeysOnce(t *testing.T) {
	e := newOAuthEnv(t, nil)
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)
	if n := e.is.jwksFetches.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}

	// The issuer rotates: the first token with the new kid, a second after
	// the keys were fetched, triggers a refetch at once and is accepted.
	k2 := ecKey(t, "k2")
	e.is.publish(t, k2)
	e.clk.add(time.Second)
	wantOK(t, e.call(t, k2.sign(t, e.claims())), aliceOK)
	if n := e.is.jwksFetches.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times after the rotation, want 2", n)
	}
	// The withdrawn key is gone.
	wantInvalid(t, e.call(t, e.key.sign(t, e.claims())), `the token's signing key (kid "k1") is not among the issuer's keys`)
	if n := e.is.jwksFetches.Load(); n != 2 {
		t.Errorf("an unknown kid within 10 s of the last refetch fetched again (%d fetches)", n)
	}
	// The discovery is not repeated for a refetch.
	if n := e.is.metaFetches.Load(); n != 1 {
		t.Errorf("metadata fetched %d times, want 1", n)
	}
}

func TestARotatedKeyWithoutANewKidRefetchesTheKeysOnce(t *testing.T) {
	cases := []struct{ name, kid string }{
		{"tokens naming no kid", ""},
		{"a kid the issuer reuses for its new key", "k1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newOAuthEnv(t, nil)
			old := ecKey(t, c.kid)
			e.is.publish(t, old)
			wantOK(t, e.call(t, old.sign(t, e.claims())), aliceOK)
			fetches := e.is.jwksFetches.Load()

			// The issuer rotates its key a minute after the keys were
			// fetched: the first token signed with the new one fetches
			// them again and is accepted.
			k2 := ecKey(t, c.kid)
			e.is.publish(t, k2)
			e.clk.add(time.Minute)
			wantOK(t, e.call(t, k2.sign(t, e.claims())), aliceOK)
			if n := e.is.jwksFetches.Load(); n != fetches+1 {
				t.Fatalf("JWKS fetched %d times after the rotation, want %d", n, fetches+1)
			}
			wantOK(t, e.call(t, k2.sign(t, e.claims())), aliceOK)

			// A token the keys do not verify refetches them no more
			// than an unknown kid does: once per 10 s.
			forged := ecKey(t, c.kid)
			for range 5 {
				wantInvalid(t, e.call(t, forged.sign(t, e.claims())), "the token's signature does not verify")
			}
			if n := e.is.jwksFetches.Load(); n != fetches+1 {
				t.Errorf("forged tokens within 10 s of the refetch fetched again (%d fetches, want %d)", n, fetches+1)
			}
			e.clk.add(11 * time.Second)
			wantInvalid(t, e.call(t, forged.sign(t, e.claims())), "the token's signature does not verify")
			if n := e.is.jwksFetches.Load(); n != fetches+2 {
				t.Errorf("a forged token 11 s later: %d fetches, want %d", n, fetches+2)
			}
		})
	}
}

// Tokens the keys do not verify (forged, or stale during a rotation) do not
// use up the refetch a key published under a new kid needs.
func TestBadSignaturesDoNotDelayANewKid(t *testing.T) {
	e := newOAuthEnv(t, nil)
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)
	e.clk.add(time.Minute)
	wantInvalid(t, e.call(t, tamper(t, e.key.sign(t, e.claims()))), "the token's signature does not verify")
	fetches := e.is.jwksFetches.Load()
	k2 := ecKey(t, "k2")
	e.is.publish(t, k2)
	e.clk.add(time.Second)
	wantOK(t, e.call(t, k2.sign(t, e.claims())), aliceOK)
	if n := e.is.jwksFetches.Load(); n != fetches+1 {
		t.Errorf("JWKS fetched %d times, want %d", n, fetches+1)
	}
}

// A token the keys did not verify, while another request fetched newer
// ones, is tried on those, without fetching them again.
func TestATokenIsTriedOnKeysFetchedSinceItsFirstTry(t *testing.T) {
	e := newOAuthEnv(t, nil)
	old := ecKey(t, "")
	e.is.publish(t, old)
	wantOK(t, e.call(t, old.sign(t, e.claims())), aliceOK)
	v := e.a.oauth
	_, tried, err := v.keysFor(context.Background(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	k2 := ecKey(t, "")
	e.is.publish(t, k2)
	// Another request's unknown kid fetches the keys, k2's among them.
	e.clk.add(time.Minute)
	if _, _, err := v.keysFor(context.Background(), "unknown", nil); err == nil {
		t.Fatal("an unknown kid found a key")
	}
	fetches := e.is.jwksFetches.Load()
	keys, _, err := v.keysFor(context.Background(), "", &tried)
	if err != nil {
		t.Fatalf("the keys fetched since the first try: %v", err)
	}
	if len(keys) != 1 || !k2.priv.Public().(*ecdsa.PublicKey).Equal(keys[0].Key) {
		t.Errorf("got %d keys, want k2 alone", len(keys))
	}
	if n := e.is.jwksFetches.Load(); n != fetches {
		t.Errorf("JWKS fetched again (%d fetches, want %d)", n, fetches)
	}
}

// The generation keysFor returns is that of the keys it returns, on every
// path, so a token first tried on keys another request had just fetched
// (after its look-up began) is not taken to have been tried on older
// ones: its retry fetches the keys again rather than try those it failed
// on, and finds a key published since.
func TestKeysForReturnsTheGenerationOfItsKeys(t *testing.T) {
	e := newOAuthEnv(t, nil)
	v := e.a.oauth
	ctx := context.Background()
	gen := func() uint64 {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.gen
	}
	k1 := ecKey(t, "")
	e.is.publish(t, k1)
	// First use: fetched by this look-up.
	_, g, err := v.keysFor(ctx, "", nil)
	if err != nil || g != gen() || g == 0 {
		t.Fatalf("first look-up: generation %d, err %v; want %d", g, err, gen())
	}
	// Cached.
	if _, g2, err := v.keysFor(ctx, "", nil); err != nil || g2 != g {
		t.Fatalf("cached look-up: generation %d, err %v; want %d", g2, err, g)
	}
	// Another request's unknown kid fetches k2 in place of k1; the next
	// look-up returns k2 with the new generation, not the one before.
	k2 := ecKey(t, "")
	e.is.publish(t, k2)
	e.clk.add(time.Minute)
	if _, _, err := v.keysFor(ctx, "unknown", nil); err == nil {
		t.Fatal("an unknown kid found a key")
	}
	keys, g2, err := v.keysFor(ctx, "", nil)
	if err != nil || g2 != g+1 || len(keys) != 1 || !k2.priv.Public().(*ecdsa.PublicKey).Equal(keys[0].Key) {
		t.Fatalf("after a fetch: %d keys of generation %d, err %v; want k2 of %d", len(keys), g2, err, g+1)
	}
	// A token signed by k3, published after that fetch, fails on k2: tried
	// at g2, it fetches again and is verified.
	k3 := ecKey(t, "")
	e.is.publish(t, k3)
	fetches := e.is.jwksFetches.Load()
	keys, g3, err := v.keysFor(ctx, "", &g2)
	if err != nil || len(keys) != 1 || !k3.priv.Public().(*ecdsa.PublicKey).Equal(keys[0].Key) {
		t.Fatalf("retry after k2: %d keys, err %v; want k3", len(keys), err)
	}
	if g3 != g2+1 || e.is.jwksFetches.Load() != fetches+1 {
		t.Errorf("retry after k2: generation %d after %d fetches; want %d after one", g3, e.is.jwksFetches.Load()-fetches, g2+1)
	}
	wantOK(t, e.call(t, k3.sign(t, e.claims())), aliceOK)
	// The issuer down, keys stale: the stale keys come with their own
	// generation.
	e.is.down.Store(true)
	e.clk.add(2 * time.Hour)
	if _, g4, err := v.keysFor(ctx, "", nil); err != nil || g4 != g3 {
		t.Errorf("stale keys with the issuer down: generation %d, err %v; want %d", g4, err, g3)
	}
}

func TestUnknownKidsDoNotHammerTheIssuer(t *testing.T) {
	e := newOAuthEnv(t, nil)
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)

	// Many tokens with made-up kids, concurrently: one refetch in all.
	var wg sync.WaitGroup
	for i := range 40 {
		k := ecKey(t, fmt.Sprintf("bogus-%d", i))
		tok := k.sign(t, e.claims())
		wg.Go(func() {
			r := call(t, e.srv.URL, "Bearer "+tok)
			if r.status != http.StatusUnauthorized {
				t.Errorf("a token with an unknown kid got %d", r.status)
			}
		})
	}
	wg.Wait()
	if n := e.is.jwksFetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (the first, and one refetch)", n)
	}
	// Still limited a little later; allowed again after 10 s.
	bogus := ecKey(t, "bogus")
	e.clk.add(9 * time.Second)
	wantInvalid(t, e.call(t, bogus.sign(t, e.claims())), "is not among the issuer's keys")
	if n := e.is.jwksFetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times 9 s later, want 2", n)
	}
	e.clk.add(2 * time.Second)
	wantInvalid(t, e.call(t, bogus.sign(t, e.claims())), "is not among the issuer's keys")
	if n := e.is.jwksFetches.Load(); n != 3 {
		t.Errorf("JWKS fetched %d times 11 s later, want 3", n)
	}
	// Known keys keep working throughout.
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)
}

func TestConcurrentFirstRequestsFetchTheKeysOnce(t *testing.T) {
	e := newOAuthEnv(t, nil)
	e.is.jwksHeld, e.is.jwksArrived = make(chan struct{}), make(chan struct{}, 100)
	var wg sync.WaitGroup
	for i := range 20 {
		// Unknown kids: once the first fetch is done, each would be a miss.
		tok := ecKey(t, fmt.Sprintf("bogus-%d", i)).sign(t, e.claims())
		wg.Go(func() {
			if r := call(t, e.srv.URL, "Bearer "+tok); r.status != http.StatusUnauthorized {
				t.Errorf("a token with an unknown kid got %d", r.status)
			}
		})
	}
	<-e.is.jwksArrived
	time.Sleep(100 * time.Millisecond) // let the other requests queue behind the fetch
	close(e.is.jwksHeld)
	wg.Wait()
	if n := e.is.jwksFetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1: requests that waited for a fetch must use its keys", n)
	}
}

// waitForFetch waits until no fetch of the keys is running (one started in
// the background holds v.sem from before its start).
func waitForFetch(v *verifier) {
	v.sem <- struct{}{}
	<-v.sem
}

func TestKeysAreRefreshedAfterAnHourAndKeptIfTheRefreshFails(t *testing.T) {
	e := newOAuthEnv(t, nil)
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)
	e.clk.add(time.Hour)
	e.is.down.Store(true)
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)
	waitForFetch(e.a.oauth)
	if n := e.is.requests.Load(); n != 3 {
		t.Errorf("the issuer got %d requests, want 3 (metadata and JWKS, then one refresh)", n)
	}
	// The refresh failed: the old keys are kept, and the next attempt
	// waits 2 s.
	e.clk.add(time.Second)
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)
	waitForFetch(e.a.oauth)
	if n := e.is.requests.Load(); n != 3 {
		t.Errorf("the issuer got %d requests within 2 s of a failed refresh, want 3", n)
	}
	// Back up, with k1 withdrawn: the request that finds the keys stale is
	// still served with them; once the refresh is done, k1 is refused.
	e.is.down.Store(false)
	e.is.publish(t, ecKey(t, "k2"))
	e.clk.add(2 * time.Second)
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)
	waitForFetch(e.a.oauth)
	if n := e.is.jwksFetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (the first, and the refresh)", n)
	}
	wantInvalid(t, e.call(t, e.key.sign(t, e.claims())), `kid "k1"`)
}

// Keys older than an hour are refreshed in the background: while the
// issuer hangs, tokens whose key is held are verified at once, and one
// refresh runs at a time. A token whose kid is not held waits for keys.
func TestStaleKeysServeAtOnceWhileTheRefreshHangs(t *testing.T) {
	e := newOAuthEnv(t, nil)
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)
	e.is.jwksArrived = make(chan struct{}, 100)
	e.is.jwksHeld = make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(e.is.jwksHeld)
		}
	}
	t.Cleanup(release)

	e.clk.add(time.Hour + time.Second)
	tok := e.key.sign(t, e.claims())
	done := make(chan response, 6)
	for range 3 {
		go func() { done <- e.call(t, tok) }()
	}
	// The refresh is under way, held by the issuer.
	select {
	case <-e.is.jwksArrived:
	case <-time.After(5 * time.Second):
		t.Fatal("no refresh of the stale keys started")
	}
	// Real time goes on, past the spacing of failed attempts: requests do
	// not wait, and start no second refresh.
	e.clk.add(3 * time.Second)
	for range 3 {
		go func() { done <- e.call(t, tok) }()
	}
	for i := range 6 {
		select {
		case r := <-done:
			wantOK(t, r, aliceOK)
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d with a held key waited for the hanging refresh", i)
		}
	}
	if n := len(e.is.jwksArrived); n != 0 {
		t.Errorf("%d more JWKS requests while the refresh ran, want none", n)
	}

	// A new kid waits for keys: the refresh in progress brings k2.
	k2 := ecKey(t, "k2")
	e.is.publish(t, e.key, k2)
	newKid := make(chan response, 1)
	go func() { newKid <- e.call(t, k2.sign(t, e.claims())) }()
	select {
	case r := <-newKid:
		t.Fatalf("a token with a kid not held did not wait for the refresh: %d %s", r.status, r.body)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	wantOK(t, <-newKid, aliceOK)
	waitForFetch(e.a.oauth)
	if n := e.is.jwksFetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (the first, and one refresh)", n)
	}
	// Fresh keys: no refresh.
	wantOK(t, e.call(t, tok), aliceOK)
	waitForFetch(e.a.oauth)
	if n := e.is.jwksFetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times after the refresh, want 2", n)
	}
}

// Claims are read by their exact names: a payload that repeats a name, or
// spells a claim the server reads in another case too, is refused, so that
// a claim signed for another purpose ("Sub", "AUD") cannot stand in for
// the one read.
func TestClaimsAreReadByTheirExactNames(t *testing.T) {
	e := newOAuthEnv(t, nil)
	now := e.clk.now().Unix()
	times := fmt.Sprintf(`"iat":%d,"exp":%d`, now, now+300)
	iss, aud := fmt.Sprintf(`"iss":%q`, e.is.issuer), fmt.Sprintf(`"aud":%q`, resource)
	const twice, otherCase = "the token's claims name a claim twice", "in another case too"
	cases := []struct {
		name    string
		payload string
		reason  string // "" for alice authenticated
	}{
		{"exact names", iss + "," + aud + "," + times + `,"sub":"alice"`, ""},
		{"other claims in any case", iss + "," + aud + "," + times + `,"sub":"alice","Nonce":"a","nonce":"b","Subject":"x"`, ""},
		{"sub, then Sub", iss + "," + aud + "," + times + `,"sub":"mallory","Sub":"alice"`, "the sub claim " + otherCase},
		{"Sub alone", iss + "," + aud + "," + times + `,"Sub":"alice"`, "the sub claim " + otherCase},
		{"SUB, then sub", iss + "," + aud + "," + times + `,"SUB":"alice","sub":"mallory"`, "the sub claim " + otherCase},
		{"sub with a long s", iss + "," + aud + "," + times + `,"sub":"mallory","ſub":"alice"`, "the sub claim " + otherCase},
		{"sub twice", iss + "," + aud + "," + times + `,"sub":"mallory","sub":"alice"`, twice},
		{"AUD beside aud", iss + `,"aud":"https://other.example/mcp","AUD":` + fmt.Sprintf("%q", resource) + "," + times + `,"sub":"alice"`, "the aud claim " + otherCase},
		{"aud twice", iss + `,"aud":"https://other.example/mcp",` + aud + "," + times + `,"sub":"alice"`, twice},
		{"ISS beside iss", iss + `,"ISS":"https://other.example",` + aud + "," + times + `,"sub":"alice"`, "the iss claim " + otherCase},
		{"Exp beside exp", iss + "," + aud + "," + times + fmt.Sprintf(`,"Exp":%d`, now-3600) + `,"sub":"alice"`, "the exp claim " + otherCase},
		{"Nbf beside nbf", iss + "," + aud + "," + times + fmt.Sprintf(`,"nbf":%d,"NBF":%d`, now, now+3600) + `,"sub":"alice"`, "the nbf claim " + otherCase},
		{"IAT beside iat", iss + "," + aud + "," + times + fmt.Sprintf(`,"IAT":%d`, now) + `,"sub":"alice"`, "the iat claim " + otherCase},
		{"Scope beside scope", iss + "," + aud + "," + times + `,"sub":"alice","scope":"a","Scope":"b"`, "the scope claim " + otherCase},
		{"SCP beside scp", iss + "," + aud + "," + times + `,"sub":"alice","SCP":["b"]`, "the scp claim " + otherCase},
		{"Client_ID beside client_id", iss + "," + aud + "," + times + `,"sub":"alice","client_id":"a","Client_ID":"b"`, "the client_id claim " + otherCase},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.call(t, e.key.signPayload(t, "{"+c.payload+"}"))
			if c.reason == "" {
				wantOK(t, r, aliceOK)
				return
			}
			wantInvalid(t, r, c.reason)
		})
	}

	byClientID := newOAuthEnv(t, func(o *OAuth) {
		o.Claim = ClaimClientID
		o.Principals = map[string]OAuthPrincipal{"client-1": {}}
	})
	payload := fmt.Sprintf(`{"iss":%q,"aud":%q,"iat":%d,"exp":%d,"client_id":"client-2","Client_Id":"client-1"}`, byClientID.is.issuer, resource, now, now+300)
	wantInvalid(t, byClientID.call(t, byClientID.key.signPayload(t, payload)), "the client_id claim "+otherCase)
}

func TestUnlistedPrincipalsGet403UnlessAllowed(t *testing.T) {
	e := newOAuthEnv(t, nil)
	r := e.call(t, e.key.sign(t, e.with("sub", "mallory")))
	if r.status != http.StatusForbidden || r.www != "" || strings.TrimSpace(r.body) != `{"error":"access_denied","error_description":"sub \"mallory\" is not allowed on this server"}` {
		t.Errorf("got %d %q %s, want 403 access_denied without a challenge", r.status, r.www, r.body)
	}

	open := newOAuthEnv(t, func(o *OAuth) { o.AllowUnlisted = true })
	wantOK(t, open.call(t, open.key.sign(t, open.with("sub", "mallory"))), `{"authorization_seen":false,"method":"oauth","name":"oauth:mallory","policy":""}`)
	wantOK(t, open.call(t, open.key.sign(t, open.claims())), aliceOK)
	if got := open.a.Policies(); !cmp.Equal(got, []string{"", "/p/alice.yaml"}) {
		t.Errorf("Policies() = %q", got)
	}
}

func TestTheClientIDClaimCanNameThePrincipal(t *testing.T) {
	e := newOAuthEnv(t, func(o *OAuth) {
		o.Claim = ClaimClientID
		o.Principals = map[string]OAuthPrincipal{"client-1": {}}
	})
	wantOK(t, e.call(t, e.key.sign(t, e.with("client_id", "client-1"))), `{"authorization_seen":false,"method":"oauth","name":"oauth:client-1","policy":""}`)
	wantInvalid(t, e.call(t, e.key.sign(t, e.claims())), "the token has no client_id claim")
	wantInvalid(t, e.call(t, e.key.sign(t, e.with("client_id", 7))), "the token's client_id claim is not a string")
}

func TestAMissingScopeGets403InsufficientScope(t *testing.T) {
	e := newOAuthEnv(t, func(o *OAuth) { o.Scopes = []string{"payments", "audit"} })
	cases := []struct {
		name  string
		claim []any
		ok    bool
	}{
		{"no scope claim", nil, false},
		{"one scope of two", []any{"scope", "payments read"}, false},
		{"both in scope", []any{"scope", "read payments audit"}, true},
		{"both in scp", []any{"scp", []string{"audit", "payments"}}, true},
		{"split across scope and scp", []any{"scope", "payments", "scp", []string{"audit"}}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.call(t, e.key.sign(t, e.with(c.claim...)))
			if c.ok {
				wantOK(t, r, aliceOK)
				return
			}
			wantWWW := challenge + `, error="insufficient_scope", scope="payments audit"`
			if r.status != http.StatusForbidden || r.www != wantWWW || !strings.Contains(r.body, `"error":"insufficient_scope"`) {
				t.Errorf("got %d %q %s, want 403 %q", r.status, r.www, r.body, wantWWW)
			}
		})
	}
	wantInvalid(t, e.call(t, e.key.sign(t, e.with("scope", 42))), "the token's scope claim is neither a string nor a list of strings")
}

func TestWhileTheIssuerIsDownTokensGet401ThenItRecovers(t *testing.T) {
	e := newOAuthEnv(t, nil)
	e.is.down.Store(true)
	if err := e.a.Warm(t.Context()); err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("Warm = %v, want an error naming HTTP 503", err)
	}
	tok := e.key.sign(t, e.claims())
	e.clk.add(3 * time.Second)
	wantInvalid(t, e.call(t, tok), "the issuer's keys cannot be fetched now")
	// Failed attempts are spaced: a request right after does not call the issuer.
	before := e.is.requests.Load()
	e.clk.add(time.Second)
	wantInvalid(t, e.call(t, tok), "the issuer's keys cannot be fetched now")
	if n := e.is.requests.Load(); n != before {
		t.Errorf("the issuer was called again within 2 s of a failure (%d requests)", n-before)
	}

	e.is.down.Store(false)
	e.clk.add(3 * time.Second)
	wantOK(t, e.call(t, tok), aliceOK)
	if !strings.Contains(e.logs.String(), "cannot fetch the OAuth issuer's keys") {
		t.Errorf("the failed fetch is not logged:\n%s", e.logs.String())
	}
}

func TestWarmFetchesTheKeys(t *testing.T) {
	e := newOAuthEnv(t, nil)
	if err := e.a.Warm(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := e.is.jwksFetches.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
	wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)
	if n := e.is.jwksFetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

func TestDiscoveryFollowsRFC8414AndOpenIDConnect(t *testing.T) {
	cases := []struct{ name, path, metaPath string }{
		{"RFC 8414 with the path inserted", "/tenant/a", ""},
		{"OpenID Connect without a path", "", "/.well-known/openid-configuration"},
		{"OpenID Connect with the path inserted", "/tenant/a", "/.well-known/openid-configuration/tenant/a"},
		{"OpenID Connect with the path appended", "/tenant/a", "/tenant/a/.well-known/openid-configuration"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newOAuthEnvWith(t, newIssuer(t, c.path, c.metaPath), nil)
			wantOK(t, e.call(t, e.key.sign(t, e.claims())), aliceOK)
		})
	}
}

func TestMetadataNamingAnotherIssuerIsRefused(t *testing.T) {
	is := newIssuer(t, "", "")
	is.metaIssuer = "https://evil.example.com"
	e := newOAuthEnvWith(t, is, nil)
	wantInvalid(t, e.call(t, e.key.sign(t, e.claims())), "the issuer's keys cannot be fetched now")
	if n := is.jwksFetches.Load(); n != 0 {
		t.Errorf("the JWKS was fetched %d times from metadata naming another issuer", n)
	}
	if !strings.Contains(e.logs.String(), `issuer is \"https://evil.example.com\"`) {
		t.Errorf("the log does not say why:\n%s", e.logs.String())
	}
}

func TestStaticTokensWorkBesideOAuth(t *testing.T) {
	e := newOAuthEnv(t, nil)
	wantOK(t, e.call(t, "secret-token-a"), `{"authorization_seen":false,"method":"token","name":"agent-a","policy":""}`)
	wantInvalid(t, e.call(t, "clk_unknown"), "unknown bearer token")
	if n := e.is.metaFetches.Load() + e.is.jwksFetches.Load(); n != 0 {
		t.Errorf("static tokens contacted the issuer %d times", n)
	}
	r := call(t, e.srv.URL, "")
	if r.status != http.StatusUnauthorized || r.www != challenge {
		t.Errorf("no token: got %d %q, want 401 %q", r.status, r.www, challenge)
	}
}

func TestTokensNeverAppearInLogsOrResponses(t *testing.T) {
	e := newOAuthEnv(t, func(o *OAuth) { o.Scopes = []string{"payments"} })
	now := e.clk.now().Unix()
	tokens := []string{
		e.key.sign(t, e.with("aud", "https://other.example.com")),
		e.key.sign(t, e.with("exp", now-100)),
		e.key.sign(t, e.with("sub", "mallory", "scope", "payments")),
		e.key.sign(t, e.claims()), // insufficient scope
		ecKey(t, "unknown").sign(t, e.claims()),
		"abc.def.ghi",
		"secret-token-x",
	}
	for _, tok := range tokens {
		r := e.call(t, tok)
		if r.status == http.StatusOK {
			t.Fatalf("token accepted: %s", r.body)
		}
		sig := tok[strings.LastIndex(tok, ".")+1:]
		if strings.Contains(r.body+r.www, sig) {
			t.Errorf("the response contains the token: %s", r.body)
		}
	}
	out := e.logs.String()
	if strings.Count(out, "auth: request refused") != len(tokens) {
		t.Errorf("want %d refusals logged:\n%s", len(tokens), out)
	}
	for _, tok := range tokens {
		for _, part := range strings.Split(tok, ".") {
			if len(part) >= 8 && strings.Contains(out, part) {
				t.Errorf("the log contains part of a token (%.12s…):\n%s", part, out)
			}
		}
	}
}

func TestMetadataHandlerServesRFC9728Metadata(t *testing.T) {
	e := newOAuthEnv(t, func(o *OAuth) { o.Scopes = []string{"payments"} })
	if got := e.a.MetadataURL(); got != "https://mcp.example.com/.well-known/oauth-protected-resource/mcp" {
		t.Errorf("MetadataURL() = %q", got)
	}
	paths := e.a.MetadataPaths()
	if !cmp.Equal(paths, []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"}) {
		t.Errorf("MetadataPaths() = %q", paths)
	}
	mux := http.NewServeMux()
	for _, p := range paths {
		mux.Handle(p, e.a.MetadataHandler())
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	want := `{"resource":"https://mcp.example.com/mcp","authorization_servers":["` + e.is.issuer + `"],"bearer_methods_supported":["header"],"scopes_supported":["payments"]}`
	for _, p := range paths {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || strings.TrimSpace(string(body)) != want {
			t.Errorf("%s: got %d %q %s, want 200 application/json %s", p, resp.StatusCode, resp.Header.Get("Content-Type"), body, want)
		}
	}
	resp, err := http.Post(srv.URL+paths[0], "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}

	noScopes := newOAuthEnv(t, nil)
	rec := httptest.NewRecorder()
	noScopes.a.MetadataHandler().ServeHTTP(rec, httptest.NewRequest("GET", MetadataPath, nil))
	if strings.Contains(rec.Body.String(), "scopes_supported") {
		t.Errorf("scopes_supported without required scopes: %s", rec.Body.String())
	}

	tokensOnly, err := New(tokenFile(t))
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	tokensOnly.MetadataHandler().ServeHTTP(rec, httptest.NewRequest("GET", MetadataPath, nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("without OAuth: %d, want 404", rec.Code)
	}
}

func TestMetadataURLInsertsTheWellKnownPath(t *testing.T) {
	for in, want := range map[string]string{
		"https://mcp.example.com/mcp":      "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
		"https://mcp.example.com":          "https://mcp.example.com/.well-known/oauth-protected-resource",
		"https://mcp.example.com/":         "https://mcp.example.com/.well-known/oauth-protected-resource",
		"http://127.0.0.1:8080/a/mcp/":     "http://127.0.0.1:8080/.well-known/oauth-protected-resource/a/mcp",
		"https://mcp.example.com:8443/mcp": "https://mcp.example.com:8443/.well-known/oauth-protected-resource/mcp",
	} {
		if got := metadataURL(in); got != want {
			t.Errorf("metadataURL(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestRedirectsMustStayOnHTTPS(t *testing.T) {
	for target, ok := range map[string]bool{
		"https://auth.example.com/keys": true,
		"http://127.0.0.1:8080/keys":    true,
		"http://localhost/keys":         true,
		"http://auth.example.com/keys":  false,
		"file:///etc/passwd":            false,
	} {
		req := httptest.NewRequest("GET", target, nil)
		if err := checkRedirect(req, nil); (err == nil) != ok {
			t.Errorf("redirect to %s: err = %v, want allowed %v", target, err, ok)
		}
	}
	req := httptest.NewRequest("GET", "https://auth.example.com/keys", nil)
	if err := checkRedirect(req, make([]*http.Request, 5)); err == nil {
		t.Error("a sixth redirect was followed")
	}
}

// countingTransport counts the requests it passes on.
type countingTransport struct{ n atomic.Int32 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

func TestWithHTTPClientIsUsedForTheIssuer(t *testing.T) {
	is := newIssuer(t, "", "")
	k := ecKey(t, "k1")
	is.publish(t, k)
	tr := &countingTransport{}
	a, err := New(&File{OAuth: &OAuth{Issuer: is.issuer, Resource: resource, AllowUnlisted: true}},
		WithHTTPClient(&http.Client{Transport: tr, Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Warm(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := tr.n.Load(); n != 2 {
		t.Errorf("the client made %d requests, want 2 (metadata and JWKS)", n)
	}
}
