package apilb

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Credential file names inside the directory StageCredentials fills.
const (
	StagedCA   = "ca.crt"
	StagedCert = "client.crt"
	StagedKey  = "client.key"
)

// StageCredentials copies the CA, the client certificate and its key into dir (the service's runtime
// directory), each owned by dir's owner with mode 0400 and replaced atomically. It runs as root before the
// service starts and before each reload, so the load balancer itself, an unprivileged user, reads new
// credentials on SIGHUP instead of restarting: a restart would cut every connection the node has to the API
// (systemd's credentials are copied at start only). A certificate that does not match its key stages nothing.
func StageCredentials(caFile, certFile, keyFile, dir string) error {
	_, pems, err := loadCredentials(caFile, certFile, keyFile)
	if err != nil {
		return err
	}
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || !info.IsDir() {
		return fmt.Errorf("%s: not a directory", dir)
	}
	// the key last: a reader that finds it new finds the certificate new as well
	for i, name := range []string{StagedCA, StagedCert, StagedKey} {
		if err := writeOwned(filepath.Join(dir, name), pems[i], int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	return nil
}

// writeOwned writes data to path through a temporary file in the same directory, owned by uid:gid, 0400.
func writeOwned(path string, data []byte, uid, gid int) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(0o400)
	if err == nil {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
