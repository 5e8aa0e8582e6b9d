package phases

import (
	"reflect"
	"strings"
	"testing"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/phases/workflow"
)

// what 'etcdctl member add h4 --learner -w json' prints in a cluster of h1 and an unstarted h3
const memberAddJSON = `{"header":{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"raft_term":2},
"member":{"ID":9372538179322589801,"peerURLs":["https://10.77.0.14:2380"],"isLearner":true},
"members":[{"ID":10276657743932975437,"name":"h1","peerURLs":["https://10.77.0.11:2380"],"clientURLs":["https://10.77.0.11:2379"]},
{"ID":9372538179322589801,"peerURLs":["https://10.77.0.14:2380"],"isLearner":true},
{"ID":18249187646912138824,"peerURLs":["https://10.77.0.13:2380"]}]}`

func TestEtcdMemberList(t *testing.T) {
	l, err := parseMembers([]byte(memberAddJSON))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Members) != 3 || l.Members[0].ID != 10276657743932975437 || l.voters() != 2 {
		t.Fatalf("parsed %+v", l)
	}
	if m := l.find("h4", "https://10.77.0.14:2380"); m == nil || !m.IsLearner || m.ID != 9372538179322589801 {
		t.Errorf("an unstarted member is found by its peer URL: %+v", m)
	}
	if m := l.find("h1", "https://10.77.0.99:2380"); m == nil || m.Name != "h1" {
		t.Errorf("a started member is found by its name: %+v", m)
	}
	if m := l.find("h9", "https://10.77.0.19:2380"); m != nil {
		t.Errorf("found a member that is not there: %+v", m)
	}
	// h3 never started: joining h4 must stop on it, as h4's initial list could not name it
	if m := l.unstartedOther("https://10.77.0.14:2380"); m == nil || m.ID != 18249187646912138824 {
		t.Errorf("the unstarted h3 is not found: %+v", m)
	}
	l.Members = l.Members[:2]
	if m := l.unstartedOther("https://10.77.0.14:2380"); m != nil {
		t.Errorf("h4 itself counts as another unstarted member: %+v", m)
	}
	want := []string{"h1=https://10.77.0.11:2380", "h4=https://10.77.0.14:2380"}
	if got := l.initialCluster("h4", "https://10.77.0.14:2380"); !reflect.DeepEqual(got, want) {
		t.Errorf("initial cluster %v, want %v", got, want)
	}
	if _, err := parseMembers([]byte("Error: context deadline exceeded")); err == nil {
		t.Error("etcdctl's error text parsed as a member list")
	}
}

func TestFoundingEnv(t *testing.T) {
	host := func(name, ip, bootstrap string) etcdHost {
		return etcdHost{Target: &workflow.Target{Spec: api.Host{Name: name, InternalAddress: ip}}, bootstrap: bootstrap}
	}
	founding := bootstrapEnv([]string{"h1=https://10.77.0.11:2380", "h2=https://10.77.0.12:2380", "h3=https://10.77.0.13:2380"}, "new", "lab")
	joined := bootstrapEnv([]string{"h1=https://10.77.0.11:2380", "h4=https://10.77.0.14:2380"}, "existing", "lab")
	if !strings.Contains(founding, "\nETCD_INITIAL_CLUSTER_STATE=new\n") || envValue(founding, "ETCD_INITIAL_CLUSTER_TOKEN") != "lab" {
		t.Fatalf("bootstrap file:\n%s", founding)
	}
	members := []etcdHost{host("h4", "10.77.0.14", joined), host("h1", "10.77.0.11", founding)}
	if got := foundingEnv(members, host("h2", "10.77.0.12", "")); got != founding {
		t.Errorf("h2 is a founding member, got %q", got)
	}
	// an address that changed, a host never listed, and a list of a member that joined later do not count
	for _, h := range []etcdHost{host("h2", "10.77.0.22", ""), host("h5", "10.77.0.15", "")} {
		if got := foundingEnv(members, h); got != "" {
			t.Errorf("%s is no founding member, got %q", h.Spec.Name, got)
		}
	}
	if got := foundingEnv(members[:1], host("h1", "10.77.0.11", "")); got != "" {
		t.Errorf("a joined member's list is not a founding list, got %q", got)
	}
}
