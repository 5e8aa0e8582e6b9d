package phases

import (
	"context"
	"testing"

	"github.com/privcloud/privcloud/ssh/sshtest"
)

func TestPodResolvConf(t *testing.T) {
	stub := "nameserver 127.0.0.53\noptions edns0\n"
	for _, c := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"a plain resolver", map[string]string{hostResolvConf: "nameserver 192.0.2.53\n", resolvedResolvConf: "nameserver 192.0.2.99\n"}, hostResolvConf},
		{"systemd-resolved's stub", map[string]string{hostResolvConf: stub, resolvedResolvConf: "nameserver 192.0.2.53\n"}, resolvedResolvConf},
		{"a stub with nothing behind it", map[string]string{hostResolvConf: stub, resolvedResolvConf: "# no servers\n"}, hostResolvConf},
		{"a stub without systemd-resolved", map[string]string{hostResolvConf: stub}, hostResolvConf},
		{"no resolv.conf at all", map[string]string{}, hostResolvConf},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := sshtest.NewFake("h1")
			for p, data := range c.files {
				h.SetFile(p, []byte(data), 0o644)
			}
			got, data, err := podResolvConf(context.Background(), h)
			if err != nil || got != c.want || string(data) != c.files[got] {
				t.Errorf("got %s (%q, %v), want %s", got, data, err, c.want)
			}
		})
	}
}
