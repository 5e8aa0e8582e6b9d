package bundle

import (
	"reflect"
	"testing"
)

func TestDiff(t *testing.T) {
	old := &Manifest{Components: []Component{
		{Name: "kube-apiserver", Version: "v1.36.3", Kind: "binary", SHA256: "a"},
		{Name: "kubelet", Version: "v1.36.3", Kind: "binary", SHA256: "b"},
		{Name: "etcd", Version: "v3.6.5", Kind: "binary", SHA256: "c"},
		{Name: "pause", Version: "3.10", Kind: "image", SHA256: "d", ImageRef: "registry.k8s.io/pause:3.10", ImageID: "sha256:1"},
		{Name: "runc", Version: "v1.3.0", Kind: "binary", SHA256: "e"},
		{Name: "quay", Version: "3.12", Kind: "absent", ImageRef: "quay.io/projectquay/quay:v3.12.0"},
		{Name: "old-tool", Version: "1", Kind: "binary", SHA256: "f"},
	}}
	new := &Manifest{Components: []Component{
		{Name: "kube-apiserver", Version: "v1.36.3", Kind: "binary", SHA256: "a"},
		{Name: "kube-apiserver", Version: "v1.37.1", Kind: "binary", SHA256: "a2"},
		{Name: "kubelet", Version: "v1.37.1", Kind: "binary", SHA256: "b2"},
		{Name: "etcd", Version: "v3.7.0", Kind: "binary", SHA256: "c2"},
		{Name: "pause", Version: "3.10", Kind: "image", SHA256: "d2", ImageRef: "registry.k8s.io/pause:3.10", ImageID: "sha256:2"},
		{Name: "runc", Version: "v1.3.0", Kind: "binary", SHA256: "e"},
		{Name: "quay", Version: "3.12", Kind: "image", SHA256: "q", ImageRef: "quay.io/projectquay/quay:v3.12.0", ImageID: "sha256:3"},
		{Name: "new-tool", Version: "2", Kind: "binary", SHA256: "g"},
	}}
	want := []Change{
		{Name: "etcd", Kind: "binary", Change: "version", From: "v3.6.5", To: "v3.7.0"},
		{Name: "kube-apiserver", Kind: "binary", Change: "added", To: "v1.37.1"},
		{Name: "kubelet", Kind: "binary", Change: "version", From: "v1.36.3", To: "v1.37.1"},
		{Name: "new-tool", Kind: "binary", Change: "added", To: "2"},
		{Name: "old-tool", Kind: "binary", Change: "removed", From: "1"},
		{Name: "pause", Kind: "image", Change: "rebuilt", From: "3.10", To: "3.10",
			FromImage: "registry.k8s.io/pause:3.10 (sha256:1)", ToImage: "registry.k8s.io/pause:3.10 (sha256:2)"},
		{Name: "quay", Kind: "image", Change: "present", From: "3.12", To: "3.12",
			FromImage: "quay.io/projectquay/quay:v3.12.0", ToImage: "quay.io/projectquay/quay:v3.12.0 (sha256:3)"},
	}
	if got := Diff(old, new); !reflect.DeepEqual(got, want) {
		t.Errorf("diff:\n got %+v\nwant %+v", got, want)
	}
	if got := Diff(new, new); len(got) != 0 {
		t.Errorf("a bundle differs from itself: %+v", got)
	}
}
