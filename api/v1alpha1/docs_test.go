package v1alpha1

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/privcloud/privcloud/internal/golden"
)

func TestPrintDefaults(t *testing.T) {
	golden.Assert(t, CommentedYAML(Example()))
}

// The printed defaults must be a valid config that spells out every default: decoding it without applying
// defaults gives the same cluster as decoding it with them.
func TestPrintDefaultsIsCompleteAndValid(t *testing.T) {
	out := CommentedYAML(Example())
	raw, _, err := Decode([]byte(out))
	if err != nil {
		t.Fatalf("print-defaults output does not decode: %v", err)
	}
	defaulted, _, _ := Decode([]byte(out))
	SetDefaults(defaulted)
	if !reflect.DeepEqual(raw, defaulted) {
		t.Errorf("print-defaults leaves out defaulted fields:\nraw:       %+v\ndefaulted: %+v", raw.Spec, defaulted.Spec)
	}
	if _, err := LoadBytes([]byte(out), "defaults", "/", "/root"); err != nil {
		t.Errorf("print-defaults output is not valid: %v", err)
	}
}

// Every field of every type must be documented, or print-defaults and the schema describe nothing.
func TestEveryFieldDocumented(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var check func(reflect.Type)
	check = func(tp reflect.Type) {
		for tp.Kind() == reflect.Pointer || tp.Kind() == reflect.Slice || tp.Kind() == reflect.Map {
			tp = tp.Elem()
		}
		if tp.Kind() != reflect.Struct || tp == durationType || seen[tp] {
			return
		}
		seen[tp] = true
		for i := 0; i < tp.NumField(); i++ {
			f := tp.Field(i)
			if f.Tag.Get("doc") == "" {
				t.Errorf("%s.%s has no doc tag", tp.Name(), f.Name)
			}
			check(f.Type)
		}
	}
	check(reflect.TypeOf(Cluster{}))
}

func TestJSONSchema(t *testing.T) {
	raw, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	spec := s["properties"].(map[string]any)["spec"].(map[string]any)
	if spec["additionalProperties"] != false {
		t.Error("spec must reject unknown properties, as the loader does")
	}
	hosts := spec["properties"].(map[string]any)["hosts"].(map[string]any)
	host := hosts["items"].(map[string]any)
	roles := host["properties"].(map[string]any)["roles"].(map[string]any)
	enum := roles["items"].(map[string]any)["enum"].([]any)
	if len(enum) != len(Roles) {
		t.Errorf("roles enum = %v, want %v", enum, Roles)
	}
	req := host["required"].([]any)
	if len(req) != 3 || req[0] != "name" || req[1] != "address" || req[2] != "roles" {
		t.Errorf("host required = %v, want [name address roles]", req)
	}
	timeout := spec["properties"].(map[string]any)["ssh"].(map[string]any)["properties"].(map[string]any)["connectTimeout"].(map[string]any)
	if timeout["type"] != "string" || timeout["description"] == nil {
		t.Errorf("durations must be documented strings in the schema: %v", timeout)
	}
}
