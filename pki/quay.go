package pki

import api "github.com/privcloud/privcloud/api/v1alpha1"

// QuayCert is the name of the Quay registry's serving certificate, issued by the cluster CA.
const QuayCert = "addons/quay"

// QuayNamespace is where the Quay add-on runs. Its Service names are in Quay's certificate, so the add-on
// takes the namespace from here and the two cannot drift apart.
const QuayNamespace = "quay"

// QuayDNSNames are the names Quay's serving certificate carries: the registry name clients use, then its
// Service's names in the cluster.
func QuayDNSNames(s *api.ClusterSpec) []string {
	svc := "quay." + QuayNamespace + ".svc"
	return []string{s.Addons.Quay.Hostname, svc, svc + "." + s.Network.DNSDomain}
}
