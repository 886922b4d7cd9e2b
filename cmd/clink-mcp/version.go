package main

import (
	"regexp"
	"runtime/debug"
	"strings"
)

// The version, commit and date of this build, set at link time by release
// builds (.goreleaser.yaml):
//
//	go build -ldflags "-X main.version=1.2.3 -X main.commit=abc1234 -X main.date=2026-12-03T10:00:00Z" ./cmd/clink-mcp
//
// Left empty, they are read from the build information Go records (the
// module version of `go install ...@v1.2.3`, the VCS revision and time of a
// build in a git checkout); a build with neither is "dev".
var (
	version string
	commit  string
	date    string
)

// build is this binary's version, resolved once from the link-time values
// and the build information.
var build = resolveBuild(version, commit, date, debug.ReadBuildInfo)

// buildInfo says which build this is: Version goes to the MCP clients (the
// server's version), to Clink (the User-Agent) and to the logs; the rest is
// printed by `clink-mcp version`.
type buildInfo struct {
	Version string // "1.2.3", or "dev" for a build that is no release
	Module  string // the module version Go recorded for a dev build ("v0.0.0-2026...-abcdef+dirty"), if any
	Commit  string // the VCS revision, if known
	Date    string // when it was built (set at link time), if known
	// Committed is the VCS time of a build without a link-time date: when
	// its commit was made, not when it was built.
	Committed string
}

// pseudoVersion matches a Go pseudo-version's tail (a timestamp and a
// 12-character revision): a module version that is no tagged release.
var pseudoVersion = regexp.MustCompile(`\d{14}-[0-9a-f]{12}`)

// resolveBuild returns the build's version: the link-time values where set,
// else what readBuildInfo reports. A tagged module version (go install
// ...@v1.2.3) is the version, without its "v"; a pseudo-version or a
// modified checkout is "dev", with the module version beside it.
func resolveBuild(version, commit, date string, readBuildInfo func() (*debug.BuildInfo, bool)) buildInfo {
	b := buildInfo{Version: version, Commit: commit, Date: date}
	bi, ok := readBuildInfo()
	if !ok || bi == nil {
		if b.Version == "" {
			b.Version = "dev"
		}
		return b
	}
	if b.Version == "" {
		switch mod := bi.Main.Version; {
		case mod == "" || mod == "(devel)":
			b.Version = "dev"
		case pseudoVersion.MatchString(mod) || strings.Contains(mod, "+dirty"):
			b.Version, b.Module = "dev", mod
		default:
			b.Version = strings.TrimPrefix(mod, "v")
		}
	}
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if b.Commit == "" {
				b.Commit = s.Value
			}
		case "vcs.time":
			if b.Date == "" {
				b.Committed = s.Value
			}
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && commit == "" && b.Commit != "" {
		b.Commit += " (modified)"
	}
	return b
}

// String is the line `clink-mcp version` prints, e.g.
// "clink-mcp 1.2.3 (commit abc1234, built 2026-12-03T10:00:00Z)".
func (b buildInfo) String() string {
	var details []string
	if b.Module != "" {
		details = append(details, "module "+b.Module)
	}
	if b.Commit != "" {
		details = append(details, "commit "+b.Commit)
	}
	if b.Date != "" {
		details = append(details, "built "+b.Date)
	}
	if b.Committed != "" {
		details = append(details, "committed "+b.Committed)
	}
	line := "clink-mcp " + b.Version
	if len(details) > 0 {
		line += " (" + strings.Join(details, ", ") + ")"
	}
	return line
}

// userAgent is the User-Agent this build sends to Clink: "clink-mcp/1.2.3".
func (b buildInfo) userAgent() string { return "clink-mcp/" + b.Version }
