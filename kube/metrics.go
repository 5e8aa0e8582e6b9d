package kube

import (
	"fmt"
	"strconv"
	"strings"
)

// MetricValue is the value of a metric in Prometheus text; a metric that is not there is an error.
func MetricValue(text, name string) (int, error) {
	n, found := MetricSum(text, name)
	if !found {
		return 0, fmt.Errorf("no %s in its metrics", name)
	}
	return n, nil
}

// MetricSum adds the samples of metric name in Prometheus text whose labels include every one of labels
// (`verb="WATCH"`), and tells whether there was any.
func MetricSum(text, name string, labels ...string) (int, bool) {
	n, found := 0, false
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || rest[0] != ' ' && rest[0] != '{' || !containsAll(rest, labels) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			n, found = n+int(v), true
		}
	}
	return n, found
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
