package addons

import (
	_ "embed"
	"encoding/json"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	api "github.com/privcloud/privcloud/api/v1alpha1"
	"github.com/privcloud/privcloud/kube"
)

//go:embed crds/multus.yaml
var multusCRD []byte

// MultusCRDs is the kind of Multus's networks, NetworkAttachmentDefinition: established before the networks
// of cluster.yaml are applied.
func MultusCRDs() ([]*unstructured.Unstructured, error) {
	return kube.Decode("Multus's CRD", multusCRD)
}

// CNIVersion is the CNI specification version of the configurations privcloud writes.
const CNIVersion = "1.0.0"

type network struct {
	Name, Namespace string
	Addresses       []string
	Config          string
}

func multusData(in *Inputs) (any, error) {
	var nets []network
	for _, n := range in.Cluster.Spec.Addons.Multus.Networks {
		cfg, err := NetworkConfig(n)
		if err != nil {
			return nil, err
		}
		nets = append(nets, network{Name: n.Name, Namespace: n.Namespace, Addresses: n.Addresses, Config: cfg})
	}
	return map[string]any{"Networks": nets}, nil
}

// NetworkConfig is the CNI configuration of an extra network: a macvlan on a host interface or a bridge,
// addressed by host-local IPAM from its subnet, or by static IPAM from the address each pod asks for in its
// network annotation ("ips"), which the static plugin receives as a runtime capability.
func NetworkConfig(n api.ExtraNetwork) (string, error) {
	cfg := map[string]any{"cniVersion": CNIVersion, "name": n.Name, "type": n.Type}
	switch n.Type {
	case "macvlan":
		cfg["master"], cfg["mode"] = n.Master, "bridge"
	case "bridge":
		br := n.Bridge
		if br == "" {
			br = "br-" + n.Name
			if len(br) > 15 { // an interface name has at most 15 characters
				br = br[:15]
			}
		}
		cfg["bridge"] = br
	}
	switch n.IPAM {
	case "host-local":
		cfg["ipam"] = map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": n.Subnet}}}}
	case "static":
		cfg["ipam"] = map[string]any{"type": "static"}
		cfg["capabilities"] = map[string]bool{"ips": true}
	}
	b, err := json.Marshal(cfg)
	return string(b), err
}
