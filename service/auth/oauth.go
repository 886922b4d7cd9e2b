package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// allowedAlgorithms are the JWS algorithms an access token may be signed
// with: asymmetric ones only, never none or HMAC (whose "key" would be
// public in the JWKS).
var allowedAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA,
}

const (
	// leeway is the clock skew allowed on exp, nbf and iat.
	leeway = 30 * time.Second
	// missRefetchInterval spaces the key refetches that tokens with an
	// unknown kid trigger. The first after a quiet spell is immediate, so a
	// rotation costs no refused token.
	missRefetchInterval = 10 * time.Second
	// failureRetryInterval spaces attempts after a failed fetch, while the
	// issuer is down.
	failureRetryInterval = 2 * time.Second
	// keysMaxAge is how long fetched keys are used before they are fetched
	// again, so that keys the issuer withdraws stop being accepted. The
	// refresh runs in the background: a token whose key is held is verified
	// with it at once, and if the refresh fails the old keys are kept.
	keysMaxAge = time.Hour
	// fetchTimeout bounds one fetch (discovery and JWKS together), whatever
	// the HTTP client's own timeout.
	fetchTimeout = 15 * time.Second
	// maxDocSize bounds a metadata document or JWKS.
	maxDocSize = 1 << 20
)

// verifier verifies OAuth access tokens. Keys are fetched lazily and cached;
// fetches are serialised through sem so that concurrent requests that need
// new keys cause one fetch.
type verifier struct {
	cfg         OAuth
	a           *Authenticator
	metadataURL string
	sem         chan struct{} // held while fetching; guards jwksURI

	jwksURI string

	mu       sync.Mutex // guards the fields below
	keys     []jose.JSONWebKey
	keysAt   time.Time // when keys were fetched; zero: never
	gen      uint64    // counts successful fetches
	lastFail time.Time // last failed fetch
	lastMiss time.Time // last refetch caused by an unknown kid
	// lastMismatch is the last refetch caused by a token the keys held did
	// not verify.
	lastMismatch time.Time
	lastError    string // why the last fetch failed, for refused requests
}

func newVerifier(o *OAuth, a *Authenticator) (*verifier, error) {
	if err := checkURL(o.Issuer); err != nil {
		return nil, fmt.Errorf("auth: oauth: issuer %w", err)
	}
	if err := checkResource(o.Resource); err != nil {
		return nil, fmt.Errorf("auth: oauth: resource %w", err)
	}
	cfg := *o
	if cfg.Claim == "" {
		cfg.Claim = ClaimSubject
	}
	if cfg.Claim != ClaimSubject && cfg.Claim != ClaimClientID {
		return nil, fmt.Errorf("auth: oauth: claim must be %s or %s, not %q", ClaimSubject, ClaimClientID, cfg.Claim)
	}
	for _, s := range cfg.Scopes {
		if err := checkScope(s); err != nil {
			return nil, fmt.Errorf("auth: oauth: scopes: %w", err)
		}
	}
	for value := range cfg.Principals {
		if err := checkClaimValue(value); err != nil {
			return nil, fmt.Errorf("auth: oauth: principals: %w", err)
		}
	}
	if len(cfg.Principals) == 0 && !cfg.AllowUnlisted {
		return nil, errors.New("auth: oauth: no principals are listed and allow_unlisted is false, so every OAuth caller would be refused")
	}
	cfg.Scopes = slices.Clone(cfg.Scopes)
	cfg.Principals = maps.Clone(cfg.Principals)
	return &verifier{
		cfg:         cfg,
		a:           a,
		metadataURL: metadataURL(cfg.Resource),
		sem:         make(chan struct{}, 1),
	}, nil
}

// accessClaims are the claims read from an access token besides the
// registered ones.
type accessClaims struct {
	ClientID jsontext.Value `json:"client_id"`
	Scope    jsontext.Value `json:"scope"`
	Scp      jsontext.Value `json:"scp"`
}

// claimsRead are the names of the claims authenticate reads; the
// configured claim (sub or client_id) is one of them.
var claimsRead = []string{"iss", "sub", "aud", "exp", "nbf", "iat", ClaimClientID, "scope", "scp"}

// errClaims refuses a payload that is not a JSON object of JWT claims.
func errClaims() *Error {
	return invalidf("the token's claims are not a JSON object of JWT claims")
}

// decodeClaims reads a token's claims by their exact names (JSON v2).
// encoding/json matches names in any case and lets the last of "sub" and
// "Sub" win, so a claim the issuer signs for another purpose could name
// the principal or the audience: a payload that repeats a name, or that
// spells a claim read here in another case as well, is refused.
func (v *verifier) decodeClaims(payload []byte) (jwt.Claims, accessClaims, error) {
	var std jwt.Claims
	var extra accessClaims
	var members map[string]jsontext.Value
	if err := jsonv2.Unmarshal(payload, &members); err != nil {
		if errors.Is(err, jsontext.ErrDuplicateName) {
			return std, extra, invalidf("the token's claims name a claim twice")
		}
		return std, extra, errClaims()
	}
	for name := range members {
		for _, c := range claimsRead {
			if name != c && strings.EqualFold(name, c) {
				return std, extra, invalidf("the token's claims spell the %s claim in another case too", c)
			}
		}
	}
	if jsonv2.Unmarshal(payload, &std) != nil || jsonv2.Unmarshal(payload, &extra) != nil {
		return std, extra, errClaims()
	}
	return std, extra, nil
}

func (v *verifier) authenticate(ctx context.Context, raw string) (Principal, error) {
	tok, err := jwt.ParseSigned(raw, allowedAlgorithms)
	if err != nil {
		return Principal{}, invalidf("not a JWT signed with an allowed algorithm (RS256, RS384, RS512, PS256, ES256, ES384, EdDSA)")
	}
	if len(tok.Headers) != 1 {
		return Principal{}, invalidf("the token must have exactly one signature")
	}
	h := tok.Headers[0]

	// Tokens of another issuer are refused before any key is fetched, so
	// that they cannot make us call the issuer. (The claims are checked
	// again once the signature is verified.)
	var unverifiedPayload json.RawMessage
	if err := tok.UnsafeClaimsWithoutVerification(&unverifiedPayload); err != nil {
		return Principal{}, errClaims()
	}
	unverified, _, err := v.decodeClaims(unverifiedPayload)
	if err != nil {
		return Principal{}, err
	}
	if unverified.Issuer != v.cfg.Issuer {
		return Principal{}, invalidf("the token was not issued by %s", v.cfg.Issuer)
	}

	keys, tried, err := v.keysFor(ctx, h.KeyID, nil)
	if err != nil {
		return Principal{}, err
	}
	payload := verifiedClaims(tok, h.Algorithm, keys)
	if payload == nil {
		// The issuer may have rotated a key its tokens name by no kid, or
		// by a kid it used before: the token is tried on keys fetched
		// since, fetching them as for an unknown kid if none were.
		if keys, _, err = v.keysFor(ctx, h.KeyID, &tried); err != nil {
			return Principal{}, err
		}
		payload = verifiedClaims(tok, h.Algorithm, keys)
	}
	if payload == nil {
		return Principal{}, badSignature()
	}
	std, extra, err := v.decodeClaims(payload)
	if err != nil {
		return Principal{}, err
	}

	if std.Expiry == nil {
		return Principal{}, invalidf("the token has no expiry (exp)")
	}
	err = std.ValidateWithLeeway(jwt.Expected{
		Issuer:      v.cfg.Issuer,
		AnyAudience: jwt.Audience{v.cfg.Resource},
		Time:        v.a.now(),
	}, leeway)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrExpired):
		return Principal{}, invalidf("the token has expired")
	case errors.Is(err, jwt.ErrNotValidYet):
		return Principal{}, invalidf("the token is not valid yet (nbf)")
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Principal{}, invalidf("the token is issued in the future (iat)")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return Principal{}, invalidf("the token is not for this resource (aud must contain %s)", v.cfg.Resource)
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return Principal{}, invalidf("the token was not issued by %s", v.cfg.Issuer)
	default:
		return Principal{}, invalidf("the token's claims are not valid")
	}

	var value string
	switch v.cfg.Claim {
	case ClaimClientID:
		if len(extra.ClientID) > 0 && string(extra.ClientID) != "null" && jsonv2.Unmarshal(extra.ClientID, &value) != nil {
			return Principal{}, invalidf("the token's client_id claim is not a string")
		}
	default:
		value = std.Subject
	}
	if value == "" {
		return Principal{}, invalidf("the token has no %s claim to name its principal", v.cfg.Claim)
	}
	if err := checkClaimValue(value); err != nil {
		return Principal{}, invalidf("the token's %s claim is not usable: %v", v.cfg.Claim, err)
	}
	p := Principal{Name: OAuthPrefix + value, Method: MethodOAuth}
	if listed, ok := v.cfg.Principals[value]; ok {
		p.Policy, p.Admin = listed.Policy, listed.Admin
	} else if !v.cfg.AllowUnlisted {
		return Principal{}, &Error{Kind: ErrForbidden, Reason: fmt.Sprintf("%s %q is not allowed on this server", v.cfg.Claim, value)}
	}

	if len(v.cfg.Scopes) > 0 {
		have, err := tokenScopes(extra)
		if err != nil {
			return Principal{}, invalidf("%v", err)
		}
		var missing []string
		for _, s := range v.cfg.Scopes {
			if !have[s] {
				missing = append(missing, s)
			}
		}
		if len(missing) > 0 {
			return Principal{}, &Error{
				Kind:   ErrInsufficientScope,
				Reason: "the token lacks the scope " + strings.Join(missing, ", "),
				Scopes: slices.Clone(v.cfg.Scopes),
			}
		}
	}
	return p, nil
}

// tokenScopes reads the scope claim (RFC 9068: a space-separated string)
// and the scp claim (a list, or a string, as some issuers send it).
func tokenScopes(c accessClaims) (map[string]bool, error) {
	have := map[string]bool{}
	add := func(raw jsontext.Value, name string) error {
		if len(raw) == 0 || string(raw) == "null" {
			return nil
		}
		var s string
		if err := jsonv2.Unmarshal(raw, &s); err == nil {
			for _, f := range strings.Fields(s) {
				have[f] = true
			}
			return nil
		}
		var list []string
		if err := jsonv2.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("the token's %s claim is neither a string nor a list of strings", name)
		}
		for _, f := range list {
			have[f] = true
		}
		return nil
	}
	if err := add(c.Scope, "scope"); err != nil {
		return nil, err
	}
	if err := add(c.Scp, "scp"); err != nil {
		return nil, err
	}
	return have, nil
}

// candidates returns the keys that may have signed a token with kid: those
// with that kid, or every key when the token names none.
func candidates(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return keys
	}
	var out []jose.JSONWebKey
	for _, k := range keys {
		if k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

var errKeysUnavailable = errors.New("keys unavailable")

// badSignature refuses a token that none of the issuer's keys verifies.
func badSignature() *Error {
	return invalidf("the token's signature does not verify with the issuer's keys")
}

// verifiedClaims returns the claims of tok if one of keys (of the token's
// algorithm alg, or of none named) verifies its signature, nil otherwise.
func verifiedClaims(tok *jwt.JSONWebToken, alg string, keys []jose.JSONWebKey) json.RawMessage {
	var payload json.RawMessage
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != alg {
			continue
		}
		if err := tok.Claims(k.Key, &payload); err == nil {
			return payload
		}
	}
	return nil
}

// keysFor returns the keys that may verify a token with kid, fetching the
// JWKS when there are none yet, or when kid is unknown (at most once per
// missRefetchInterval, the first time at once; at once too when the keys
// held are older than keysMaxAge). Keys older than keysMaxAge that name kid
// are returned at once and refreshed in the background
// (refreshInBackground), so that a slow or hanging issuer never delays
// tokens whose key is held. It fails closed: without keys, the token is
// invalid.
//
// It also returns the generation of the keys it returns (v.gen when they
// were fetched), read with them: tried, when not nil, is the generation
// of keys that did not verify the token, and keysFor then returns keys
// fetched since, if any, or fetches them as for an unknown kid, and
// badSignature() when there are none new to try.
func (v *verifier) keysFor(ctx context.Context, kid string, tried *uint64) ([]jose.JSONWebKey, uint64, error) {
	mismatch := tried != nil
	v.mu.Lock()
	keys, at, gen := v.keys, v.keysAt, v.gen
	v.mu.Unlock()
	if c := candidates(keys, kid); len(c) > 0 && !at.IsZero() && !mismatch {
		if v.a.now().Sub(at) >= keysMaxAge {
			v.refreshInBackground()
		}
		return c, gen, nil
	}
	if mismatch {
		gen = *tried
	}

	// One fetch at a time; whoever waited sees the keys it fetched.
	select {
	case v.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, invalidf("the request ended while the issuer's keys were being fetched")
	}
	defer func() { <-v.sem }()

	v.mu.Lock()
	now := v.a.now()
	keys, at, held := v.keys, v.keysAt, v.gen
	fresh := !at.IsZero() && now.Sub(at) < keysMaxAge
	c := candidates(keys, kid)
	var reason string
	switch {
	case len(c) > 0 && !mismatch:
		// Fetched while we waited (keys of one generation are the same
		// keys, and those first read named no kid).
		v.mu.Unlock()
		return c, held, nil
	case held != gen:
		// Keys were fetched while we waited (or since those tried):
		// fetching again now would find the same.
		v.mu.Unlock()
		if mismatch && len(c) > 0 {
			return c, held, nil
		}
		return nil, 0, v.noKey(kid, keys, at, mismatch)
	case v.failedRecently(now):
		v.mu.Unlock()
		return nil, 0, v.noKey(kid, keys, at, mismatch)
	case at.IsZero():
		reason = "first use"
	case !fresh:
		reason = "keys older than " + keysMaxAge.String()
	default: // fresh keys, unknown kid or none that verified the token
		// The two causes are spaced apart separately, so that tokens the
		// keys do not verify (stale ones during a rotation, or forged)
		// never delay the fetch of a key published under a new kid.
		last := &v.lastMiss
		reason = "unknown key id"
		if mismatch {
			last, reason = &v.lastMismatch, "a token's signature does not verify with the keys held"
		}
		if !last.IsZero() && now.Sub(*last) < missRefetchInterval {
			v.mu.Unlock()
			return nil, 0, v.noKey(kid, keys, at, mismatch)
		}
		*last = now
	}
	v.mu.Unlock()

	fetched, fetchedAt, fetchedGen, err := v.refetch(ctx, reason)
	if err != nil {
		if mismatch {
			return nil, 0, badSignature()
		}
		return nil, 0, invalidf("the issuer's keys cannot be fetched now")
	}
	if c := candidates(fetched, kid); len(c) > 0 {
		return c, fetchedGen, nil
	}
	return nil, 0, v.noKey(kid, fetched, fetchedAt, mismatch)
}

// failedRecently reports whether the last fetch failed less than
// failureRetryInterval before now. Called with v.mu held.
func (v *verifier) failedRecently(now time.Time) bool {
	return !v.lastFail.IsZero() && now.Sub(v.lastFail) < failureRetryInterval
}

// refreshInBackground starts a fetch of keys older than keysMaxAge, unless
// a fetch is running (it takes v.sem, or leaves it) or the last one failed
// less than failureRetryInterval ago. The caller goes on with the old keys,
// which are kept if the fetch fails.
func (v *verifier) refreshInBackground() {
	v.mu.Lock()
	recent := v.failedRecently(v.a.now())
	v.mu.Unlock()
	if recent {
		return
	}
	select {
	case v.sem <- struct{}{}:
	default:
		return // a fetch is running: it brings new keys, or fails
	}
	go func() {
		defer func() { <-v.sem }()
		v.mu.Lock()
		now := v.a.now()
		due := now.Sub(v.keysAt) >= keysMaxAge && !v.failedRecently(now)
		v.mu.Unlock()
		if due { // not fetched, nor failed, since the caller looked
			_, _, _, _ = v.refetch(context.Background(), "keys older than "+keysMaxAge.String())
		}
	}()
}

// refetch fetches the keys and keeps them, or, if the fetch fails, notes
// (and logs) the failure and keeps the old ones. It returns the keys
// fetched, when and their generation. Called with v.sem held; reason says
// why, for the log.
func (v *verifier) refetch(ctx context.Context, reason string) ([]jose.JSONWebKey, time.Time, uint64, error) {
	fetched, err := v.fetch(ctx)

	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		v.lastFail = v.a.now()
		v.lastError = err.Error()
		v.a.log.Warn("auth: cannot fetch the OAuth issuer's keys", "issuer", v.cfg.Issuer, "why", reason, "err", err)
		return nil, time.Time{}, 0, err
	}
	v.keys, v.keysAt, v.lastFail, v.lastError = fetched, v.a.now(), time.Time{}, ""
	v.gen++
	v.a.log.Info("auth: fetched the OAuth issuer's keys", "issuer", v.cfg.Issuer, "why", reason, "keys", len(fetched))
	return fetched, v.keysAt, v.gen, nil
}

// noKey is the error for a token whose key is not (yet) available, or,
// after a mismatch (see keysFor), that none of the keys verified it.
func (v *verifier) noKey(kid string, keys []jose.JSONWebKey, at time.Time, mismatch bool) error {
	if mismatch && len(candidates(keys, kid)) > 0 {
		return badSignature()
	}
	if at.IsZero() {
		return invalidf("the issuer's keys cannot be fetched now")
	}
	if kid == "" && len(keys) == 0 {
		return invalidf("the issuer publishes no usable signing keys")
	}
	if len(kid) > 64 {
		return invalidf("the token's signing key (a kid of %d bytes) is not among the issuer's keys", len(kid))
	}
	return invalidf("the token's signing key (kid %q) is not among the issuer's keys", kid)
}

// warm fetches the keys if there are none yet.
func (v *verifier) warm(ctx context.Context) error {
	_, _, err := v.keysFor(ctx, "", nil)
	var e *Error
	if errors.As(err, &e) {
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.keysAt.IsZero() {
			if v.lastError != "" {
				return fmt.Errorf("auth: oauth: %s", v.lastError)
			}
			return fmt.Errorf("auth: oauth: %w", errKeysUnavailable)
		}
		return nil // keys fetched, just none for kid ""
	}
	return err
}

// fetch discovers the JWKS URL (once) and fetches the keys. Called with
// v.sem held.
func (v *verifier) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	if v.jwksURI == "" {
		uri, err := v.discover(ctx)
		if err != nil {
			return nil, err
		}
		v.jwksURI = uri
	}
	keys, err := v.fetchJWKS(ctx, v.jwksURI)
	if err != nil {
		v.jwksURI = "" // discover again next time: the metadata may have moved
		return nil, err
	}
	return keys, nil
}

// discoveryURLs are the issuer's metadata URLs, in the order the MCP
// authorization spec tries them: RFC 8414 (path inserted after the host),
// then OpenID Connect Discovery with the path inserted, then appended.
func discoveryURLs(issuer string) []string {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil
	}
	path := strings.TrimSuffix(u.Path, "/")
	at := func(p string) string {
		c := *u
		c.Path, c.RawPath = p, ""
		return c.String()
	}
	if path == "" {
		return []string{
			at("/.well-known/oauth-authorization-server"),
			at("/.well-known/openid-configuration"),
		}
	}
	return []string{
		at("/.well-known/oauth-authorization-server" + path),
		at("/.well-known/openid-configuration" + path),
		at(path + "/.well-known/openid-configuration"),
	}
}

type issuerMetadata struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// discover finds the JWKS URL in the issuer's metadata, whose issuer must
// be the configured one.
func (v *verifier) discover(ctx context.Context) (string, error) {
	var errs []string
	for _, u := range discoveryURLs(v.cfg.Issuer) {
		var m issuerMetadata
		if err := v.getJSON(ctx, u, &m); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if m.Issuer != v.cfg.Issuer {
			errs = append(errs, fmt.Sprintf("%s: issuer is %q, not %q", u, m.Issuer, v.cfg.Issuer))
			continue
		}
		if m.JWKSURI == "" {
			errs = append(errs, u+": no jwks_uri")
			continue
		}
		if err := checkURL(m.JWKSURI); err != nil {
			errs = append(errs, fmt.Sprintf("%s: jwks_uri %v", u, err))
			continue
		}
		return m.JWKSURI, nil
	}
	return "", fmt.Errorf("no usable authorization server metadata: %s", strings.Join(errs, "; "))
}

// fetchJWKS fetches a JWK set and keeps its usable verification keys,
// skipping (with a log line) keys it cannot use rather than failing the
// whole set.
func (v *verifier) fetchJWKS(ctx context.Context, u string) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := v.getJSON(ctx, u, &set); err != nil {
		return nil, err
	}
	if set.Keys == nil {
		return nil, fmt.Errorf("%s: not a JWK set (no keys)", u)
	}
	var keys []jose.JSONWebKey
	for i, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			v.a.log.Info("auth: skipping a JWKS key", "jwks", u, "index", i, "err", err)
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			k = k.Public()
		default: // symmetric or unsupported: never a verification key here
			v.a.log.Info("auth: skipping a JWKS key that is not an RSA, EC or Ed25519 public key", "jwks", u, "index", i, "kid", k.KeyID)
			continue
		}
		if !k.Valid() {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		v.a.log.Warn("auth: the OAuth issuer's JWKS has no usable signing key", "jwks", u)
	}
	return keys, nil
}

// getJSON GETs u and decodes its JSON body into dst.
func (v *verifier) getJSON(ctx context.Context, u string, dst any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.a.client.Do(req)
	if err != nil {
		return err // *url.Error names the URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocSize))
		return fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDocSize+1))
	if err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	if len(data) > maxDocSize {
		return fmt.Errorf("%s: the document is larger than %d bytes", u, maxDocSize)
	}
	if err := json.Unmarshal(data, dst); err != nil {
		return fmt.Errorf("%s: not the expected JSON: %v", u, err)
	}
	return nil
}
