package v1alpha1

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestBundlePublicKeysResolveNextToClusterYAML(t *testing.T) {
	c, err := load(t, base+"  bundle:\n    publicKeys: [keys/release.pub, ~/ci.pub, /etc/privcloud/../pki/root.pub]\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/etc/privcloud/keys/release.pub", "/home/op/ci.pub", "/etc/pki/root.pub"}
	if got := c.Spec.Bundle.PublicKeys; !reflect.DeepEqual(got, want) {
		t.Errorf("publicKeys resolved to %v, want %v", got, want)
	}
}

func TestEmptyBundlePublicKeyRefused(t *testing.T) {
	_, err := load(t, base+"  bundle:\n    publicKeys: [keys/release.pub, '']\n")
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "spec.bundle.publicKeys[1]") || !strings.Contains(err.Error(), "must not be empty") {
		t.Errorf("an empty key path: %v", err)
	}
}
