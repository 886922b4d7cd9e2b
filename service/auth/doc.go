// Package auth authenticates the principals that call the HTTP server:
// agents holding a static bearer token listed in the principals file, and,
// when configured, OAuth 2.1 clients presenting a JWT access token from one
// authorization server (this server is then an OAuth resource server).
//
// # The principals file
//
// The file (--principals, CLINK_PRINCIPALS) is strict YAML: unknown keys,
// duplicate keys, wrongly typed values, aliases and several documents are
// refused, and [Load] reports every problem as "FILE:LINE: problem".
//
//	principals:                          # static bearer tokens
//	  - name: agent-a                    # unique; 1-64 of A-Z a-z 0-9 . _ -
//	    token_sha256: 9f86d0…            # 64 lowercase hex: the token's SHA-256
//	    policy: policies/agent-a.yaml    # optional; default: the server's --policy
//	  - name: agent-b
//	    token_sha256: 60303a…
//	oauth:                               # optional
//	  issuer: https://auth.example.com   # exact issuer identifier
//	  resource: https://mcp.example.com/mcp  # this server's URL = the audience
//	  claim: sub                         # or client_id; default sub
//	  scopes: [payments]                 # optional; all are required
//	  principals:                        # optional; claim value -> settings
//	    some-client: { policy: policies/x.yaml }
//	    other-client:                    # listed, with the default policy
//	  allow_unlisted: false              # default false
//
// At least one of principals and oauth must be set. Names and token hashes
// are unique. A policy path is relative to the principals file's folder; it
// is checked at load by the function given to [Load]. The file never holds
// a token: `clink-mcp token new NAME` makes one with [NewToken] and prints it
// once, with the lines to paste ([TokenLines]).
//
// In the oauth section, issuer and resource must be https URLs (http only on
// a loopback host, for tests), without query or fragment. The resource's
// path, under which the protected resource metadata is also served, may
// hold only letters, digits, / and -._~!$&'()*+,;=:@, without empty, . or
// .. segments. Claim values under principals must be quoted if YAML would
// read them as numbers or booleans. With no principals listed,
// allow_unlisted must be true, or no OAuth caller could get in.
//
// # Requests
//
// Only the Authorization: Bearer header carries a token, never the URL.
// A token is compared with every token principal's hash in constant time; if
// none matches and OAuth is configured, it is verified as a JWT:
//
//   - signed with RS256, RS384, RS512, PS256, ES256, ES384 or EdDSA (never
//     none or HMAC) by a key of the issuer's JWKS, found through its
//     metadata (RFC 8414 /.well-known/oauth-authorization-server, then
//     OpenID Connect /.well-known/openid-configuration), whose issuer must
//     be the configured one;
//   - claims read by their exact names: a payload that repeats a name, or
//     spells a claim read here (iss, sub, aud, exp, nbf, iat, client_id,
//     scope, scp) in another case too, is refused;
//   - iss equal to the issuer; aud containing the resource URL; exp present;
//     exp, nbf and iat honoured with 30 s of leeway;
//   - the claim (sub or client_id) present, non-empty, at most 256 bytes,
//     without control or invisible formatting characters (zero-width,
//     bidi, line and paragraph separators);
//   - the claim value listed under oauth.principals, or allow_unlisted
//     (otherwise 403);
//   - every required scope in the scope claim (space-separated) or the scp
//     claim (a list) (otherwise 403, error="insufficient_scope").
//
// An OAuth caller's principal is named "oauth:" + the claim value
// ([OAuthPrefix]); token principals cannot contain a colon, so the names
// never collide.
//
// Keys are fetched on the first OAuth request (or by [Authenticator.Warm]),
// cached, and fetched again after an hour, or at once when a token names an
// unknown key id or the keys held do not verify it (a rotation, whether or
// not the new key has a key id of its own); refetches for each of these two
// causes are at most one per 10 s, and attempts after a failure at most one
// per 2 s. The hourly refresh runs in the background: a token whose key is
// held is verified with it at once meanwhile, so a slow or hanging issuer
// delays only tokens whose key is not held. The server starts while the
// issuer is down and refuses OAuth tokens (401) until the keys can be
// fetched; once fetched, keys are kept if a later refresh fails.
//
// Refusals are 401 with a WWW-Authenticate challenge (naming the protected
// resource metadata when OAuth is configured), or 403; see
// [Authenticator.WriteError]. Tokens appear in no log line, error or
// response.
package auth
