// Command pkibench times `privcloud certs generate` (the whole tree of a 3 control-plane, 3 worker cluster)
// against kubeadm's `init phase certs all` plus `init phase kubeconfig all` (the tree of one control-plane
// node), both from scratch, with the same key algorithm, in one run. kubeadm is built from source.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/privcloud/privcloud/bench/benchutil"
)

func main() {
	bin := flag.String("privcloud", "_output/privcloud", "privcloud binary")
	kubeadm := flag.String("kubeadm", "", "kubeadm binary built from source (bench/build-kubeadm.sh)")
	version := flag.String("kubeadm-version", "", "its version, for the report")
	runs := flag.Int("runs", 7, "runs of each measurement (the median is reported)")
	update := flag.String("update", "", "BENCHMARKS.md to update between the pki markers (empty: print only)")
	flag.Parse()
	if *kubeadm == "" {
		log.Fatal("-kubeadm is required")
	}
	abs, err := filepath.Abs(*bin)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "privcloud-pkibench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	var w strings.Builder
	fmt.Fprintf(&w, "Measured %s on this machine; kubeadm %s built from source through the Go module proxy; the median of %d runs, each from an empty folder.\n\n",
		time.Now().UTC().Format("2006-01-02"), *version, *runs)
	w.WriteString("| key algorithm | privcloud: 3 control planes + 3 workers | kubeadm: 1 control-plane node | relative to privcloud |\n|---|---:|---:|---:|\n")
	for _, algo := range []struct{ privcloud, kubeadm string }{{"ecdsa-p256", "ECDSA-P256"}, {"rsa-2048", "RSA-2048"}} {
		if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), []byte(clusterYAML(algo.privcloud)), 0o600); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "kubeadm.yaml"), []byte(kubeadmYAML(algo.kubeadm, *version, filepath.Join(dir, "kpki"))), 0o600); err != nil {
			log.Fatal(err)
		}
		ours, err := benchutil.Median(*runs, dir, nil, "rm -rf state && "+abs+" certs generate -f cluster.yaml >/dev/null")
		if err != nil {
			log.Fatal(err)
		}
		theirs, err := benchutil.Median(*runs, dir, nil, fmt.Sprintf("rm -rf kpki kconf && %[1]s init phase certs all --config kubeadm.yaml >/dev/null && "+
			"%[1]s init phase kubeconfig all --config kubeadm.yaml --kubeconfig-dir kconf >/dev/null", *kubeadm))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(&w, "| %s | %.0f ms | %.0f ms | kubeadm %s |\n", algo.privcloud, ours*1000, theirs*1000, benchutil.Ratio(theirs, ours))
	}
	w.WriteString("\nprivcloud makes 26 keys here (3 CAs, the service-account key, 11 certificates including a server and a peer " +
		"certificate per etcd member, 11 kubeconfigs including one per kubelet), every file fsynced; kubeadm makes 16 for its one node.\n")
	fmt.Print(w.String())
	if *update != "" {
		if err := benchutil.ReplaceSection(*update, "pki", w.String()); err != nil {
			log.Fatal(err)
		}
	}
}

func clusterYAML(algo string) string {
	return `apiVersion: privcloud.io/v1alpha1
kind: Cluster
metadata: {name: bench}
spec:
  stateDir: state
  hosts:
  - {name: cp1, address: 10.77.0.11, roles: [control-plane, etcd]}
  - {name: cp2, address: 10.77.0.12, roles: [control-plane, etcd]}
  - {name: cp3, address: 10.77.0.13, roles: [control-plane, etcd]}
  - {name: w1, address: 10.77.0.21, roles: [worker]}
  - {name: w2, address: 10.77.0.22, roles: [worker]}
  - {name: w3, address: 10.77.0.23, roles: [worker]}
  pki:
    keyAlgorithm: ` + algo + "\n"
}

func kubeadmYAML(algo, version, certDir string) string {
	return `apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint: {advertiseAddress: 10.77.0.11, bindPort: 6443}
nodeRegistration: {name: cp1, criSocket: "unix:///run/containerd/containerd.sock"}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: ` + version + `
controlPlaneEndpoint: 10.77.0.11:6443
certificatesDir: ` + certDir + `
encryptionAlgorithm: ` + algo + `
networking: {serviceSubnet: 10.96.0.0/12, podSubnet: 10.244.0.0/16, dnsDomain: cluster.local}
`
}
