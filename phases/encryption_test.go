package phases

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/privcloud/privcloud/phases/workflow"
	"github.com/privcloud/privcloud/pki"
)

// The rotation plans its stages in a dry run, and its start keeps the new key beside the old one, recorded.
func TestRotateEncryptionKeyStarts(t *testing.T) {
	c, _, ex, out := fakeCluster(t)
	ex.Selection = workflow.Selection{Only: []string{"certs"}}
	if err := Execute(context.Background(), Init(), c, ex); err != nil {
		t.Fatal(err)
	}
	store := PKIStore(c)
	before, err := pki.EncryptionKeys(store)
	if err != nil || len(before) != 1 {
		t.Fatalf("keys after init: %v %v", before, err)
	}

	out.Reset()
	ex.Selection, ex.DryRun = workflow.Selection{}, true
	if err := Execute(context.Background(), RotateEncryptionKey(), c, ex); err != nil {
		t.Fatal(err)
	}
	for _, stage := range []string{"add: write the EncryptionConfiguration", "primary: write", "rewrite: update every Secret", "retire: write"} {
		if !strings.Contains(out.String(), stage) {
			t.Errorf("the dry run does not plan %q:\n%s", stage, out.String())
		}
	}
	if _, err := os.Stat(keyRotationPath(c.Spec.StateDir)); !os.IsNotExist(err) {
		t.Errorf("a dry run recorded a rotation: %v", err)
	}

	ex.Selection, ex.DryRun = workflow.Selection{Only: []string{"start"}}, false
	if err := Execute(context.Background(), RotateEncryptionKey(), c, ex); err != nil {
		t.Fatal(err)
	}
	keys, _ := pki.EncryptionKeys(store)
	data, err := os.ReadFile(keyRotationPath(c.Spec.StateDir))
	var rec keyRotation
	if err != nil || json.Unmarshal(data, &rec) != nil {
		t.Fatalf("no record of the rotation: %v", err)
	}
	if len(keys) != 2 || keys[0] != before[0] || keys[1].Name != rec.NewKey || len(rec.OldKey) != 1 || rec.OldKey[0] != before[0].Name {
		t.Errorf("after the start: keys %v, record %+v", keys, rec)
	}
}
