package addons

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"

	"github.com/privcloud/privcloud/internal/atomicfile"
	"github.com/privcloud/privcloud/pki"
)

// QuayImages are the bundle components the Quay add-on runs.
var QuayImages = []string{"quay", "postgresql", "redis"}

// QuayNodePort is where every node reaches Quay (containerd's mirror entry points at it on 127.0.0.1).
const QuayNodePort = 30443

// QuaySecrets are Quay's generated credentials. They are made once and kept in privcloud's state directory
// (0600), so re-applying the add-on changes nothing and a backup of the state holds them.
type QuaySecrets struct {
	DatabasePassword  string `json:"databasePassword"`
	RedisPassword     string `json:"redisPassword"`
	SecretKey         string `json:"secretKey"`
	DatabaseSecretKey string `json:"databaseSecretKey"`
}

// QuayState is what the Quay add-on takes from privcloud's state: secrets, the TLS pair issued by the
// cluster CA, and the node that keeps hostPath data.
type QuayState struct {
	Secrets         QuaySecrets
	TLSCert, TLSKey []byte
	CACert          []byte
	Node            string
}

// LoadOrCreateQuaySecrets reads the secrets file, creating it with fresh random values when it is missing.
func LoadOrCreateQuaySecrets(path string) (QuaySecrets, error) {
	var s QuaySecrets
	data, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(data, &s); err != nil {
			return s, fmt.Errorf("%s: %w", path, err)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	for _, f := range []*string{&s.DatabasePassword, &s.RedisPassword, &s.SecretKey, &s.DatabaseSecretKey} {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return s, err
		}
		*f = hex.EncodeToString(b)
	}
	data, _ = json.MarshalIndent(s, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return s, err
	}
	return s, atomicfile.Write(path, data, 0o600)
}

func quayData(in *Inputs) (any, error) {
	if in.Quay == nil {
		return nil, errors.New("add-on quay: its secrets and certificate were not loaded")
	}
	images := map[string]string{}
	for _, c := range QuayImages {
		img, err := in.image(c)
		if err != nil {
			return nil, err
		}
		images[c] = img
	}
	q, s := in.Quay, in.Cluster.Spec.Addons.Quay
	svc := func(name string) string {
		return name + "." + pki.QuayNamespace + ".svc." + in.Cluster.Spec.Network.DNSDomain
	}
	redis := map[string]any{"host": svc("quay-redis"), "port": 6379, "password": q.Secrets.RedisPassword}
	config, err := yaml.Marshal(map[string]any{
		"SERVER_HOSTNAME":                       s.Hostname,
		"PREFERRED_URL_SCHEME":                  "https",
		"EXTERNAL_TLS_TERMINATION":              false,
		"SETUP_COMPLETE":                        true,
		"REGISTRY_TITLE":                        in.Cluster.Metadata.Name + " registry",
		"AUTHENTICATION_TYPE":                   "Database",
		"FEATURE_USER_INITIALIZE":               true,
		"FEATURE_MAILING":                       false,
		"SECRET_KEY":                            q.Secrets.SecretKey,
		"DATABASE_SECRET_KEY":                   q.Secrets.DatabaseSecretKey,
		"DB_URI":                                fmt.Sprintf("postgresql://quay:%s@%s:5432/quay", q.Secrets.DatabasePassword, svc("quay-postgresql")),
		"BUILDLOG_REDIS":                        redis,
		"USER_EVENTS_REDIS":                     redis,
		"DISTRIBUTED_STORAGE_CONFIG":            map[string]any{"default": []any{"LocalStorage", map[string]string{"storage_path": "/datastorage/registry"}}},
		"DISTRIBUTED_STORAGE_PREFERENCE":        []string{"default"},
		"DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS": []string{"default"},
		"TAG_EXPIRATION_OPTIONS":                []string{"2w"},
		"DEFAULT_TAG_EXPIRATION":                "2w",
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"Namespace": pki.QuayNamespace, "Secrets": q.Secrets, "Config": string(config),
		"TLSCert": q.TLSCert, "TLSKey": q.TLSKey, "CACert": q.CACert,
		"ConfigSHA256": sha256Hex(config, q.TLSCert, q.CACert),
		"StorageClass": s.StorageClass, "HostPathDir": s.HostPathDir, "Node": q.Node, "NodePort": QuayNodePort,
		"QuayImage": images["quay"], "PostgreSQLImage": images["postgresql"], "RedisImage": images["redis"],
	}, nil
}
