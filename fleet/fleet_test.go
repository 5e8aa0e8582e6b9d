package fleet

import (
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
)

func TestCommand(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"systemctl is-active kubelet || journalctl -u kubelet"}, "systemctl is-active kubelet || journalctl -u kubelet"},
		{[]string{"echo", "a b", "it's"}, `'echo' 'a b' 'it'\''s'`},
		{[]string{"sh", "-c", "echo $HOME; true"}, `'sh' '-c' 'echo $HOME; true'`},
	}
	for _, tc := range cases {
		if got := Command(tc.args); got != tc.want {
			t.Errorf("Command(%q) = %s, want %s", tc.args, got, tc.want)
		}
	}
}

func TestSelect(t *testing.T) {
	hosts := api.Example().Spec.Hosts // cp1 (control-plane, etcd), worker1, worker2
	names := func(hs []api.Host) string {
		var out []string
		for _, h := range hs {
			out = append(out, h.Name)
		}
		return strings.Join(out, ",")
	}
	cases := []struct {
		names, roles []string
		want, err    string
	}{
		{nil, nil, "cp1,worker1,worker2", ""},
		{nil, []string{"worker"}, "worker1,worker2", ""},
		{nil, []string{"etcd", "worker"}, "cp1,worker1,worker2", ""},
		{[]string{"worker2", "cp1"}, nil, "cp1,worker2", ""},
		{[]string{"cp1"}, []string{"worker"}, "", "no host matches"},
		{[]string{"cp9"}, nil, "", `no host named "cp9"`},
		{nil, []string{"master"}, "", `unknown role "master"`},
	}
	for _, tc := range cases {
		got, err := Select(hosts, tc.names, tc.roles)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Select(%v, %v) error %v, want %q", tc.names, tc.roles, err, tc.err)
			}
			continue
		}
		if err != nil || names(got) != tc.want {
			t.Errorf("Select(%v, %v) = %s, %v; want %s", tc.names, tc.roles, names(got), err, tc.want)
		}
	}
}
