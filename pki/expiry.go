package pki

import (
	"crypto/x509"
	"fmt"
	"time"
)

// Expiry is one entry of the expiration report.
type Expiry struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"` // ca, certificate, kubeconfig
	CA        string    `json:"ca,omitempty"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	ExpiresIn string    `json:"expiresIn,omitempty"`
	External  bool      `json:"external,omitempty"`
	Problem   string    `json:"problem,omitempty"`
}

// CheckExpiration reads the store and reports every certificate and kubeconfig of the tree with its expiry,
// without writing anything. Entries that are missing or unreadable carry a Problem.
func CheckExpiration(s Store, t *Tree, now time.Time) []Expiry {
	var out []Expiry
	for _, c := range t.CAs {
		out = append(out, expiryOf(Expiry{Name: c.Name, Kind: "ca", External: t.ExternalCA}, s.CertPath(c.Name), now))
	}
	for _, c := range t.Leaves {
		out = append(out, expiryOf(Expiry{Name: c.Name, Kind: "certificate", CA: c.CA, External: t.ExternalCA}, s.CertPath(c.Name), now))
	}
	for _, k := range t.Kubeconfigs {
		out = append(out, expiryOf(Expiry{Name: "kubeconfig/" + k.Name, Kind: "kubeconfig", CA: ClusterCA, External: t.ExternalCA},
			s.KubeconfigPath(k.Name), now))
	}
	return out
}

// expiryOf reads the file at path and fills e's expiry from it: a certificate, or a kubeconfig's client
// certificate.
func expiryOf(e Expiry, path string, now time.Time) Expiry {
	data, err := read(path)
	switch {
	case err != nil:
		e.Problem = err.Error()
	case data == nil:
		e.Problem = "missing"
	case e.Kind == "kubeconfig":
		external := e.External
		e = KubeconfigExpiry(e.Name, data, now)
		e.External = external
	default:
		e.FromPEM(data, now)
	}
	return e
}

// FromPEM fills the expiry from a PEM certificate (read from a host, say).
func (e *Expiry) FromPEM(data []byte, now time.Time) {
	certs, err := ParseCerts(data)
	if err != nil {
		e.Problem = "unreadable: " + err.Error()
		return
	}
	e.setExpiry(certs[0], now)
}

func (e *Expiry) setExpiry(c *x509.Certificate, now time.Time) {
	e.NotAfter = c.NotAfter
	left := c.NotAfter.Sub(now)
	if left <= 0 {
		e.ExpiresIn = "expired"
		e.Problem = "expired " + c.NotAfter.Format(time.DateOnly)
		return
	}
	e.ExpiresIn = fmt.Sprintf("%dd", int(left.Hours()/24))
	if left < 24*time.Hour {
		e.ExpiresIn = left.Round(time.Minute).String()
	}
}

// KubeconfigExpiry reports the expiry of a kubeconfig's client certificate.
func KubeconfigExpiry(name string, data []byte, now time.Time) Expiry {
	e := Expiry{Name: name, Kind: "kubeconfig", CA: ClusterCA}
	p, err := parseKubeconfig(data)
	if err != nil {
		e.Problem = "unreadable: " + err.Error()
		return e
	}
	e.setExpiry(p.cert, now)
	return e
}
