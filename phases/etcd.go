package phases

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/hostops"
	"github.com/privcloud/privcloud/internal/parallel"
	"github.com/privcloud/privcloud/internal/wait"
	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/templates"
)

// etcdBootstrapFile holds what etcd reads only on its first start (initial cluster, state, token). It is
// written once per member and never rewritten: a membership change then leaves every running member's unit
// untouched, so nothing restarts when a member joins.
const etcdBootstrapFile = "/etc/kubernetes/etcd-bootstrap.env"

func etcd() workflow.Phase {
	return workflow.Phase{Name: "etcd", Short: "Run etcd with TLS peer and client authentication; add new members one at a time as learners; wait for health",
		Roles: etcdMembers, Run: runEtcd}
}

// etcdHost is one etcd host and its bootstrap file as found ("" when it has none: a host that never ran a
// member, or was reset).
type etcdHost struct {
	*workflow.Target
	bootstrap string
}

func (h etcdHost) peerURL() string { return peerURL(h.Spec) }

// peerURL is where an etcd host's member talks to the others.
func peerURL(h api.Host) string { return "https://" + net.JoinHostPort(h.InternalAddress, "2380") }

// foundingPeers is the initial cluster of every etcd host of cluster.yaml: a new cluster's, or a restored one's.
func foundingPeers(r *workflow.Run) []string {
	var peers []string
	for _, t := range r.TargetsFor(etcdMembers) {
		peers = append(peers, t.Spec.Name+"="+peerURL(t.Spec))
	}
	return peers
}

// runEtcd brings every etcd host's member up. A new cluster starts all its members at once (they wait for
// each other to form a quorum). In a running cluster the hosts that are members keep their units, and each
// new host is added through a running member as a learner, started, and promoted once it has caught up: one
// at a time, so the quorum never counts a member that is not there yet.
func runEtcd(ctx context.Context, r *workflow.Run) error {
	var hosts []etcdHost
	for _, t := range r.TargetsFor(etcdMembers) {
		data, err := hostops.ReadIfExists(ctx, t.Host, etcdBootstrapFile)
		if err != nil {
			return fmt.Errorf("host %s: %w", t.Spec.Name, err)
		}
		hosts = append(hosts, etcdHost{Target: t, bootstrap: string(data)})
	}
	var members, joining []etcdHost
	for _, h := range hosts {
		if h.bootstrap != "" {
			members = append(members, h)
		} else {
			joining = append(joining, h)
		}
	}
	if len(members) == 0 {
		// a new cluster: every member bootstraps with the same initial list
		env := bootstrapEnv(foundingPeers(r), "new", r.Cluster.Metadata.Name)
		return parallel.Each(hosts, func(h etcdHost) error { return startMember(ctx, r, h, env) })
	}
	// at once: a member's start returns once it has joined a quorum, so stopped members start together
	if err := parallel.Each(members, func(h etcdHost) error { return startMember(ctx, r, h, h.bootstrap) }); err != nil {
		return err
	}
	for _, h := range joining {
		if err := addMember(ctx, r, h, members); err != nil {
			return err
		}
		members = append(members, h)
	}
	if r.DryRun { // a plan started nothing to wait for or talk to
		return nil
	}
	if err := parallel.Each(members, func(h etcdHost) error { return waitEtcd(ctx, r, h.Target) }); err != nil {
		return err
	}
	return promoteLearners(ctx, r, members)
}

func bootstrapEnv(peers []string, state, token string) string {
	return "# Written by privcloud when this etcd member was first started; etcd reads it only while its data\n" +
		"# directory is empty. Never rewritten: membership changes go through the etcd API.\n" +
		"ETCD_INITIAL_CLUSTER=" + strings.Join(peers, ",") + "\nETCD_INITIAL_CLUSTER_STATE=" + state +
		"\nETCD_INITIAL_CLUSTER_TOKEN=" + token + "\n"
}

// startMember writes the member's bootstrap file (when it has none) and unit, and starts or restarts etcd
// as they require. A new cluster's members are waited for here; the others once every member is up.
func startMember(ctx context.Context, r *workflow.Run, h etcdHost, env string) error {
	spec := r.Cluster.Spec
	unit, err := templates.Render("etcd.service", templates.Etcd{Name: h.Spec.Name, IP: h.Spec.InternalAddress, DataDir: spec.Etcd.DataDir,
		BootstrapFile: etcdBootstrapFile, ExtraArgs: flagList(spec.Etcd.ExtraArgs)})
	if err != nil {
		return err
	}
	// etcd runs as its own system user, made once; reset removes it again
	if err := runScript(ctx, r, h.Target, "create the etcd user", `getent passwd etcd >/dev/null || { useradd --system --user-group --no-create-home --home-dir /var/lib/etcd --shell /usr/sbin/nologin --comment "etcd (privcloud)" etcd && echo "created user etcd"; }`); err != nil {
		return err
	}
	files := []hostops.File{{Path: "/etc/systemd/system/etcd.service", Content: unit, Mode: 0o600}}
	if h.bootstrap == "" {
		files = append(files, hostops.File{Path: etcdBootstrapFile, Content: []byte(env), Mode: 0o644})
	}
	// a running member whose flags change restarts in its turn, one member at a time: the quorum holds
	if err := ensureRolled(ctx, r, h.Target, "etcd", files...); err != nil {
		return err
	}
	if r.DryRun || h.bootstrap != "" {
		return nil
	}
	// a lone new member is healthy at once; members of a new 3-member cluster once a quorum has started
	return waitEtcd(ctx, r, h.Target)
}

func waitEtcd(ctx context.Context, r *workflow.Run, t *workflow.Target) error {
	store := PKIStore(r.Cluster)
	cfg, err := hostops.ClientTLS(store.CertPath(pki.EtcdCA), store.CertPath("etcd/healthcheck-client"), store.KeyPath("etcd/healthcheck-client"))
	if err != nil {
		return err
	}
	return hostops.WaitHealthy(ctx, t.Host, "etcd", "127.0.0.1:2379", "/health", `"health":"true"`, cfg, 2*time.Minute)
}

// addMember brings a new host into the running etcd cluster: the cluster learns it as a learner first (a
// learner does not count for quorum, so a 1-member cluster keeps working while the second catches up), then
// the host starts with the cluster's current members as its initial list, and is promoted to a voting member
// once its log has caught up with the leader's. A host the cluster already lists (a run that stopped after
// adding it) is started, not added twice.
func addMember(ctx context.Context, r *workflow.Run, h etcdHost, members []etcdHost) error {
	via, list, err := memberList(ctx, members)
	if err != nil {
		if env := foundingEnv(members, h); env != "" {
			// a member of the cluster's founding list that never started: the others wait for it to form
			// their quorum, so it starts as they did
			return startMember(ctx, r, h, env)
		}
		return fmt.Errorf("adding etcd member %s: %w", h.Spec.Name, err)
	}
	if !r.Wet(via.Spec.Name, fmt.Sprintf("etcdctl member add %s --learner --peer-urls=%s, start it, promote it", h.Spec.Name, h.peerURL())) {
		return nil
	}
	if m := list.unstartedOther(h.peerURL()); m != nil {
		// the new member's initial list must name every member, and one that never started has no name yet
		return fmt.Errorf("etcd lists member %x at %s that never started: start its host, or remove it ('etcdctl member remove %x' on %s), then re-run",
			m.ID, strings.Join(m.PeerURLs, ","), m.ID, via.Spec.Name)
	}
	if list.find(h.Spec.Name, h.peerURL()) == nil {
		var res ssh.Result
		// etcd refuses membership changes until every voting member has been connected for a few seconds
		// ("unhealthy cluster"), as right after the previous member's promotion
		err := wait.Poll(ctx, time.Minute, time.Second, func() error {
			res, err = hostops.Etcdctl(ctx, via.Host, fmt.Sprintf("member add %s --learner --peer-urls=%s -w json", ssh.ShellQuote(h.Spec.Name), ssh.ShellQuote(h.peerURL())))
			if err != nil && !strings.Contains(string(res.Stderr), "unhealthy cluster") {
				return wait.Stop(err)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("etcd member add %s on %s: %w", h.Spec.Name, via.Spec.Name, err)
		}
		if list, err = parseMembers(res.Stdout); err != nil {
			return fmt.Errorf("etcd member add %s on %s: %w", h.Spec.Name, via.Spec.Name, err)
		}
		r.Changed(h.Spec.Name, fmt.Sprintf("added etcd member %s as a learner (%d members)", h.Spec.Name, len(list.Members)))
	}
	if err := startMember(ctx, r, h, bootstrapEnv(list.initialCluster(h.Spec.Name, h.peerURL()), "existing", r.Cluster.Metadata.Name)); err != nil {
		return err
	}
	return promoteLearners(ctx, r, slices.Concat(members, []etcdHost{h}))
}

// foundingEnv is the bootstrap file of a new cluster's member that lists h among the founding members, or "".
func foundingEnv(members []etcdHost, h etcdHost) string {
	for _, m := range members {
		if strings.Contains(m.bootstrap, "ETCD_INITIAL_CLUSTER_STATE=new\n") &&
			slices.Contains(strings.Split(envValue(m.bootstrap, "ETCD_INITIAL_CLUSTER"), ","), h.Spec.Name+"="+h.peerURL()) {
			return m.bootstrap
		}
	}
	return ""
}

// envValue is the value of key in an environment file.
func envValue(env, key string) string {
	for _, line := range strings.Split(env, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return v
		}
	}
	return ""
}

// promoteLearners makes every learner of the cluster a voting member, waiting while the cluster refuses
// because a learner's log is still behind the leader's.
func promoteLearners(ctx context.Context, r *workflow.Run, members []etcdHost) error {
	via, list, err := memberList(ctx, members)
	if err != nil {
		return err
	}
	for _, m := range list.Members {
		if !m.IsLearner {
			continue
		}
		id := strconv.FormatUint(m.ID, 16)
		err := wait.Poll(ctx, 2*time.Minute, time.Second, func() error {
			_, err := hostops.Etcdctl(ctx, via.Host, "member promote "+id)
			return err
		})
		if err != nil {
			return fmt.Errorf("etcd member promote %s (%s) on %s: %w", m.Name, id, via.Spec.Name, err)
		}
		r.Changed(m.Name, fmt.Sprintf("promoted etcd member %s to voting (%d voting members)", m.Name, list.voters()+1))
		list, err = listMembers(ctx, via)
		if err != nil {
			return err
		}
	}
	return nil
}

// etcdMembersList is what 'etcdctl member list -w json' and 'member add -w json' print.
type etcdMembersList struct {
	Members []etcdMember `json:"members"`
}

type etcdMember struct {
	ID        uint64   `json:"ID"`
	Name      string   `json:"name"`
	PeerURLs  []string `json:"peerURLs"`
	IsLearner bool     `json:"isLearner"`
}

func (m etcdMember) has(peerURL string) bool { return slices.Contains(m.PeerURLs, peerURL) }

// find returns the member with this name or, for a member that never started and so has no name yet, this
// peer URL.
func (l etcdMembersList) find(name, peerURL string) *etcdMember {
	for i, m := range l.Members {
		if m.Name == name || m.has(peerURL) {
			return &l.Members[i]
		}
	}
	return nil
}

// unstartedOther returns a member other than the one at peerURL that has never started (it has no name).
func (l etcdMembersList) unstartedOther(peerURL string) *etcdMember {
	for i, m := range l.Members {
		if m.Name == "" && !m.has(peerURL) {
			return &l.Members[i]
		}
	}
	return nil
}

// initialCluster is the initial list a member joining as name at peerURL starts with: every member, itself
// included (etcd refuses to join when the count differs from the cluster's).
func (l etcdMembersList) initialCluster(name, peerURL string) []string {
	var peers []string
	for _, m := range l.Members {
		n := m.Name
		if m.has(peerURL) {
			n = name // the joining member has not started, so the cluster does not know its name yet
		}
		for _, u := range m.PeerURLs {
			peers = append(peers, n+"="+u)
		}
	}
	return peers
}

func (l etcdMembersList) voters() int {
	n := 0
	for _, m := range l.Members {
		if !m.IsLearner {
			n++
		}
	}
	return n
}

func parseMembers(out []byte) (etcdMembersList, error) {
	var l etcdMembersList
	if err := json.Unmarshal(out, &l); err != nil {
		return l, fmt.Errorf("etcdctl output: %w", err)
	}
	return l, nil
}

// memberList asks the members in turn for the cluster's member list, retrying for a while: members whose
// configuration just changed are restarting. It returns the member that answered.
func memberList(ctx context.Context, members []etcdHost) (*workflow.Target, etcdMembersList, error) {
	var (
		via  *workflow.Target
		list etcdMembersList
	)
	err := wait.Poll(ctx, time.Minute, time.Second, func() error {
		var errs []string
		for _, h := range members {
			l, err := listMembers(ctx, h.Target)
			if err == nil {
				via, list = h.Target, l
				return nil
			}
			errs = append(errs, fmt.Sprintf("%s: %v", h.Spec.Name, err))
		}
		return fmt.Errorf("no etcd member answers (%s)", strings.Join(errs, "; "))
	})
	return via, list, err
}

func listMembers(ctx context.Context, t *workflow.Target) (etcdMembersList, error) {
	res, err := hostops.Etcdctl(ctx, t.Host, "member list -w json", ssh.ReadOnly())
	if err != nil {
		return etcdMembersList{}, err
	}
	return parseMembers(res.Stdout)
}
