package phases

import (
	"context"
	"reflect"
	"testing"

	"github.com/privcloud/privcloud/ssh"
	"github.com/privcloud/privcloud/ssh/sshtest"
	"github.com/privcloud/privcloud/upgrade"
)

func TestInstalledVersions(t *testing.T) {
	h := sshtest.NewFake("h1")
	h.OnCommand("if out=$(find", ssh.Result{Stdout: []byte(`kube-apiserver /opt/privcloud/kube-apiserver/v1.37.1/kube-apiserver
kubelet /opt/privcloud/kubelet/v1.36.3/kubelet
kube-scheduler /opt/privcloud/kube-scheduler/v1.37.1/kube-scheduler
kubectl /usr/bin/kubectl
etcd /opt/privcloud/etcd/v3.7.0/etcd
etcdutl 
kube-proxy /opt/privcloud/kubelet/v1.36.3/kube-proxy
kube-apiserver - /opt/privcloud/kube-apiserver/v1.36.3/kube-apiserver
kubelet - /opt/privcloud/kubelet/v1.36.3/kubelet
kube-scheduler - /usr/bin/kube-scheduler
`)}, nil)
	got, err := installedVersions(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	// a binary of another installer, a missing one, and a link into another component's folder are not counted;
	// a service still running the version before its link's counts as that version
	want := upgrade.Installed{"kube-apiserver": "v1.36.3", "kubelet": "v1.36.3", "kube-scheduler": "v1.37.1", "etcd": "v3.7.0"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("installed %v, want %v", got, want)
	}
}
