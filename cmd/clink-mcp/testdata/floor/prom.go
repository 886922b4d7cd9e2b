//go:build floorprom

// Built with the floorprom tag, the floor (main.go) links, besides,
// Prometheus's Go client as clink-mcp's service imports it, unused: what
// that one dependency's initialisation costs every start
// (BenchmarkFloorLinkedStartup).
package main

import (
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/collectors"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
)
