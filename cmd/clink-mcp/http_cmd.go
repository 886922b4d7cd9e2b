package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/clink-mcp/clink-mcp/internal/loopback"
	"github.com/clink-mcp/clink-mcp/service"
	"github.com/clink-mcp/clink-mcp/service/auth"
)

// The HTTP server's timeouts. A tool call may wait for an identical call in
// flight (up to two minutes) and then for Clink (its client's timeout), so
// the write timeout leaves room for both; the others only bound slow or
// idle clients.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 3 * time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// httpListener is the socket --http serves on, opened before anything else
// is wired, with its TLS configuration when there is one.
type httpListener struct {
	net.Listener
	tls *tls.Config // nil for plain HTTP
}

// URL is where clients reach /mcp.
func (l *httpListener) URL() string {
	scheme := "http"
	if l.tls != nil {
		scheme = "https"
	}
	return scheme + "://" + l.Addr().String() + "/mcp"
}

// netListen opens the --http socket. Tests replace it to see what listen
// does with an address bound off loopback, which the machine they run on
// may not have.
var netListen = net.Listen

// listen checks the HTTP settings and opens the listener. Without a
// principals file nobody is authenticated, so it listens on loopback only:
// the host named is checked first, and the address bound after, since a
// name ("localhost") is resolved by Listen (/etc/hosts, DNS), possibly to
// another address.
func (c *config) listen() (*httpListener, error) {
	host, _, err := net.SplitHostPort(c.httpAddr)
	if err != nil {
		return nil, fmt.Errorf("http (CLINK_HTTP_ADDR): %q is not host:port, e.g. 127.0.0.1:8080", c.httpAddr)
	}
	if c.principalsPath == "" && !loopback.Host(host) {
		return nil, fmt.Errorf("http (CLINK_HTTP_ADDR): %s is not a loopback address; without a principals file (--principals, CLINK_PRINCIPALS) every caller is trusted, so the server listens on loopback only (127.0.0.1, [::1], localhost)", c.httpAddr)
	}
	l := &httpListener{}
	switch {
	case c.tlsCert != "" && c.tlsKey != "":
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("tls-cert, tls-key (CLINK_TLS_CERT, CLINK_TLS_KEY): %v", err)
		}
		l.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	case c.tlsCert != "" || c.tlsKey != "":
		return nil, errors.New("tls-cert, tls-key (CLINK_TLS_CERT, CLINK_TLS_KEY): give both, or neither")
	}
	if l.Listener, err = netListen("tcp", c.httpAddr); err != nil {
		return nil, fmt.Errorf("http (CLINK_HTTP_ADDR): %v", err)
	}
	if c.principalsPath == "" && !loopbackListener(l) {
		bound := l.Addr().String()
		_ = l.Close()
		return nil, fmt.Errorf("http (CLINK_HTTP_ADDR): %s was bound on %s, which is not a loopback address; without a principals file (--principals, CLINK_PRINCIPALS) every caller is trusted, so the server listens on loopback only (127.0.0.1, [::1], or localhost where it resolves to them)", c.httpAddr, bound)
	}
	if l.tls != nil {
		l.Listener = tls.NewListener(l.Listener, l.tls)
	}
	return l, nil
}

// checkStdioOnly refuses settings that only mean something over HTTP.
func (c *config) checkStdioOnly() error {
	for _, s := range []struct{ val, name string }{
		{c.principalsPath, "principals (CLINK_PRINCIPALS)"},
		{c.tlsCert, "tls-cert (CLINK_TLS_CERT)"},
		{c.tlsKey, "tls-key (CLINK_TLS_KEY)"},
		{c.allowedOrigins, "allowed-origins (CLINK_ALLOWED_ORIGINS)"},
		{c.allowedHosts, "allowed-hosts (CLINK_ALLOWED_HOSTS)"},
	} {
		if s.val != "" {
			return fmt.Errorf("%s: only used with --http (CLINK_HTTP_ADDR); over stdio every call is the local user's", s.name)
		}
	}
	return nil
}

// loopbackListener reports whether l listens on a loopback address only.
func loopbackListener(l *httpListener) bool {
	addr, ok := l.Addr().(*net.TCPAddr)
	return ok && addr.IP.IsLoopback()
}

// serveHTTP serves MCP streamable HTTP on l until ctx is cancelled, then
// drains: /readyz turns 503 and new calls are refused as shutting_down at
// once, calls in flight finish within the grace period, and the listener
// closes.
func serveHTTP(ctx context.Context, cfg *config, a *app, l *httpListener, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           a.svc.Handler(service.HTTPOptions{AllowedOrigins: commaList(cfg.allowedOrigins), AllowedHosts: commaList(cfg.allowedHosts)}),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          log.New(&slogWriter{logger}, "", 0),
	}
	who := "none: loopback only, every call is the local principal's"
	if f := a.principals; f != nil {
		who = fmt.Sprintf("%d with tokens", len(f.Principals))
		if f.OAuth != nil {
			who += ", OAuth from " + f.OAuth.Issuer
		}
	}
	logger.Info("serving MCP over streamable HTTP", "version", build.Version, "env", string(a.env),
		"url", l.URL(), "policy", a.policy.Source(), "principals", who)
	if l.tls == nil && !loopbackListener(l) {
		logger.Warn("serving plain HTTP on a non-loopback address: bearer tokens cross the network in clear; serve TLS (--tls-cert, --tls-key) or put a TLS-terminating proxy in front and listen on loopback",
			"addr", l.Addr().String())
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return fmt.Errorf("http: %v", err)
	case <-ctx.Done():
	}
	if delay := cfg.delayDuration(); delay > 0 {
		// Not ready, still serving: the load balancer's health checks see
		// the 503 and stop sending calls before any is refused.
		a.svc.Unready()
		logger.Info("shutting down: not ready, still taking calls", "reason", context.Cause(ctx), "delay", delay)
		select {
		case <-time.After(delay):
		case err := <-served:
			return fmt.Errorf("http: %v", err)
		}
	}
	grace := cfg.graceDuration()
	logger.Info("shutting down: finishing the calls in flight", "reason", context.Cause(ctx), "grace", grace)
	drainCtx, cancel := context.WithDeadline(context.Background(), a.beginShutdown(grace)) // closing the service shares it
	defer cancel()
	_ = a.svc.Drain(drainCtx)
	if err := srv.Shutdown(drainCtx); err != nil {
		logger.Warn("calls still running at the end of the grace period", "err", err)
		_ = srv.Close()
	}
	return nil
}

// tokenCommand is "token new NAME": a fresh bearer token for a principal,
// printed once, with the lines for the principals file. Only its SHA-256
// is ever stored.
func tokenCommand(args []string, stdout io.Writer) error {
	if len(args) != 2 || args[0] != "new" {
		return errors.New("usage: clink-mcp token new NAME")
	}
	if err := auth.CheckName(args[1]); err != nil {
		return fmt.Errorf("token new: %v", err)
	}
	token, err := auth.NewToken()
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, auth.TokenLines(args[1], token))
	return nil
}

// commaList splits a comma-separated setting, dropping spaces and empty
// items.
func commaList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
