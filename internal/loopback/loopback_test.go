package loopback

import "testing"

func TestHost(t *testing.T) {
	for addr, want := range map[string]bool{
		"localhost": true, "LocalHost:8080": true, "127.0.0.1": true, "127.9.9.9:80": true,
		"::1": true, "[::1]": true, "[::1]:443": true, "::ffff:127.0.0.1": true,
		"": false, "0.0.0.0": false, "::": false, ":8080": false, "192.0.2.1": false,
		"evil.example.com": false, "localhost.evil.example": false, "[::2]:80": false,
		"localhost.": true, "LOCALHOST.:8080": true, "localhost..": false, ".": false,
	} {
		if got := Host(addr); got != want {
			t.Errorf("Host(%q) = %v, want %v", addr, got, want)
		}
	}
}
