//go:build integration

package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These tests build the real binary and run it as a separate process, as a CI pipeline would.

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "privcloud")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("command did not run: %v", err)
	return -1
}

func TestBinaryExitCodes(t *testing.T) {
	bin := build(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	data, err := os.ReadFile("../../cluster.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(strings.Replace(string(data), "podCIDR:", "podCDIR:", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args   []string
		env    []string
		code   int
		output string
	}{
		{[]string{"config", "validate", "-f", "../../cluster.example.yaml"}, nil, 0, "valid: 3 hosts"},
		{[]string{"config", "validate", "-f", bad}, nil, 3, `spec.network.podCDIR (line`},
		{[]string{"config", "validate"}, []string{"PRIVCLOUD_CONFIG=" + bad}, 3, `did you mean "podCIDR"`},
		{[]string{"init", "-f", "../../cluster.example.yaml"}, nil, 6, "not implemented yet"},
		{[]string{"init", "--from", "nowhere", "-f", "../../cluster.example.yaml"}, nil, 2, `no phase "nowhere"`},
		{[]string{"help", "exit-codes"}, nil, 0, "6  the command or phase asked for is not implemented yet"},
	}
	for _, tc := range cases {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = append(os.Environ(), tc.env...)
		out, err := cmd.CombinedOutput()
		if code := exitCode(t, err); code != tc.code {
			t.Errorf("privcloud %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), code, tc.code, out)
		}
		if !strings.Contains(string(out), tc.output) {
			t.Errorf("privcloud %s: output lacks %q:\n%s", strings.Join(tc.args, " "), tc.output, out)
		}
	}
}
