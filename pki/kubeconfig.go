package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// The kubeconfig file format (client-go's clientcmd v1), reduced to what privcloud writes and reads.
type kubeconfigFile struct {
	APIVersion     string         `json:"apiVersion"`
	Kind           string         `json:"kind"`
	Clusters       []namedCluster `json:"clusters"`
	Contexts       []namedContext `json:"contexts"`
	CurrentContext string         `json:"current-context"`
	Users          []namedUser    `json:"users"`
	Preferences    struct{}       `json:"preferences"`
}

type namedCluster struct {
	Name    string `json:"name"`
	Cluster struct {
		Server                   string `json:"server"`
		CertificateAuthorityData []byte `json:"certificate-authority-data"`
	} `json:"cluster"`
}

type namedContext struct {
	Name    string `json:"name"`
	Context struct {
		Cluster string `json:"cluster"`
		User    string `json:"user"`
	} `json:"context"`
}

type namedUser struct {
	Name string `json:"name"`
	User struct {
		ClientCertificateData []byte `json:"client-certificate-data"`
		ClientKeyData         []byte `json:"client-key-data"`
	} `json:"user"`
}

// renderKubeconfig writes a kubeconfig with one cluster, one user and one context, all data embedded.
func renderKubeconfig(cluster, user, server string, caBundle []byte, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	var k kubeconfigFile
	k.APIVersion, k.Kind = "v1", "Config"
	var c namedCluster
	c.Name = cluster
	c.Cluster.Server = server
	c.Cluster.CertificateAuthorityData = caBundle
	var u namedUser
	u.Name = user
	u.User.ClientCertificateData = encodeCert(cert)
	u.User.ClientKeyData = keyPEM
	var ctx namedContext
	ctx.Name = user + "@" + cluster
	ctx.Context.Cluster, ctx.Context.User = cluster, user
	k.Clusters, k.Users, k.Contexts, k.CurrentContext = []namedCluster{c}, []namedUser{u}, []namedContext{ctx}, ctx.Name
	return yaml.Marshal(k)
}

// parsedKubeconfig is what a kubeconfig holds that privcloud checks.
type parsedKubeconfig struct {
	server   string
	caBundle []byte
	cert     *x509.Certificate
	key      crypto.Signer
}

func parseKubeconfig(data []byte) (*parsedKubeconfig, error) {
	var k kubeconfigFile
	if err := yaml.Unmarshal(data, &k); err != nil {
		return nil, err
	}
	if len(k.Clusters) != 1 || len(k.Users) != 1 {
		return nil, errors.New("expected exactly one cluster and one user")
	}
	certs, err := ParseCerts(k.Users[0].User.ClientCertificateData)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(k.Users[0].User.ClientKeyData)
	if err != nil {
		return nil, err
	}
	return &parsedKubeconfig{server: k.Clusters[0].Cluster.Server, caBundle: k.Clusters[0].Cluster.CertificateAuthorityData,
		cert: certs[0], key: key}, nil
}

// Credentials returns a kubeconfig's client certificate and key (as a TLS key pair) and its CA bundle, for
// talking to the API server without client-go.
func Credentials(path string) (tls.Certificate, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	p, err := parseKubeconfig(data)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	return tls.Certificate{Certificate: [][]byte{p.cert.Raw}, PrivateKey: p.key, Leaf: p.cert}, p.caBundle, nil
}

// Endpoint is one API server a kubeconfig can point at, named for its context.
type Endpoint struct {
	Name   string // the context's suffix: a control-plane host's name
	Server string // https://host:port
}

// WithEndpoints adds to a kubeconfig of one cluster, one user and one context a cluster and a context per
// endpoint ("USER@CLUSTER-NAME"), sharing the user: kubectl --context reaches any control plane directly when
// the first one is gone. current names the current context's endpoint ("" keeps the original context).
func WithEndpoints(data []byte, endpoints []Endpoint, current string) ([]byte, error) {
	var k kubeconfigFile
	if err := yaml.Unmarshal(data, &k); err != nil {
		return nil, err
	}
	if len(k.Clusters) != 1 || len(k.Users) != 1 || len(k.Contexts) != 1 {
		return nil, errors.New("expected a kubeconfig of exactly one cluster, user and context")
	}
	base, user := k.Clusters[0], k.Users[0].Name
	for _, e := range endpoints {
		c := base
		c.Name = base.Name + "-" + e.Name
		c.Cluster.Server = e.Server
		var ctx namedContext
		ctx.Name = user + "@" + c.Name
		ctx.Context.Cluster, ctx.Context.User = c.Name, user
		k.Clusters = append(k.Clusters, c)
		k.Contexts = append(k.Contexts, ctx)
		if e.Name == current {
			k.CurrentContext = ctx.Name
		}
	}
	return yaml.Marshal(k)
}
