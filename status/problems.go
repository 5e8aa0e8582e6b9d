package status

import (
	"fmt"
	"sort"
	"strings"

	api "github.com/privcloud/privcloud/api/v1alpha1"
)

// problems reads what is wrong out of a report, each named by host and component with what to look at.
func problems(c *api.Cluster, rep *Report) []Problem {
	var out []Problem
	add := func(severity, host, component, format string, args ...any) {
		out = append(out, Problem{Severity: severity, Host: host, Component: component, Message: fmt.Sprintf(format, args...)})
	}
	for _, h := range rep.Hosts {
		if !h.Reachable || (h.Error != "" && len(h.Components) == 0) {
			add("error", h.Name, "host", "unreachable: %s", h.Error)
			continue
		}
		for _, comp := range h.Components {
			switch {
			case !comp.Expected:
			case comp.Version == "":
				add("error", h.Name, comp.Name, "not installed (privcloud init or join installs it)")
			case comp.Unit != "" && comp.State == "":
				add("error", h.Name, comp.Name, "its unit %s is not installed (privcloud init or join writes it)", comp.Unit)
			case comp.Unit != "" && comp.State != "active":
				add("error", h.Name, comp.Name, "%s is %s (journalctl -u %s; systemctl start %s)", comp.Unit, comp.State, comp.Unit, comp.Unit)
			}
		}
		if h.APIServer != "" && h.APIServer != "ready" {
			add("error", h.Name, "kube-apiserver", "%s", h.APIServer)
		}
	}
	leaders, healthy := 0, 0
	var down []string
	for _, m := range rep.Etcd {
		if m.Health != "healthy" {
			add("error", m.Host, "etcd", "member %s", m.Health)
			down = append(down, m.Host)
		} else {
			healthy++
		}
		if m.Leader {
			leaders++
		}
	}
	if need := len(rep.Etcd)/2 + 1; len(rep.Etcd) > 0 && healthy < need {
		// the cluster's state can be neither read nor written: this is the line to read first
		add("error", "", "etcd", "etcd has lost quorum: %d of %d members healthy, %d needed (down: %s); start the members that are down",
			healthy, len(rep.Etcd), need, strings.Join(down, ", "))
	} else if len(rep.Etcd) > 0 && leaders == 0 {
		add("error", "", "etcd", "no member reports itself as the leader")
	}
	if rep.Nodes != nil {
		registered := map[string]bool{}
		for _, n := range rep.Nodes {
			registered[n.Name] = true
			if !n.Ready {
				add("error", n.Name, "node", "not Ready: %s", n.Reason)
			}
		}
		for _, h := range c.Spec.Hosts {
			if h.IsNode() && !registered[h.Name] {
				add("error", h.Name, "node", "not registered with the API server")
			}
		}
	}
	for _, a := range rep.Addons {
		if a.State == "not ready" {
			add("error", "", "add-on "+a.Name, "not ready: %s", a.Detail)
		}
	}
	for _, cert := range rep.Certificates {
		switch {
		case cert.Problem != "":
			add("error", "", "certificate "+cert.Name, "%s", cert.Problem)
		case cert.ExpiresInDays < 0:
			add("error", "", "certificate "+cert.Name, "expired on %s: privcloud certs renew", cert.NotAfter.Format("2006-01-02"))
		case cert.NotAfter.Sub(rep.Time) < CertificateWarning:
			add("warning", "", "certificate "+cert.Name, "expires on %s, in %d days: privcloud certs renew", cert.NotAfter.Format("2006-01-02"), cert.ExpiresInDays)
		}
	}
	return out
}

// sortProblems puts errors first, then by host and component.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.Severity != b.Severity {
			return a.Severity == "error"
		}
		return strings.Compare(a.Host+"\x00"+a.Component, b.Host+"\x00"+b.Component) < 0
	})
}
