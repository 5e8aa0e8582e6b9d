package v1alpha1

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Example is a three-host cluster with every default filled in: the content of `config print-defaults`.
func Example() *Cluster {
	c := &Cluster{
		Metadata: ObjectMeta{Name: "example"},
		Spec: ClusterSpec{
			Hosts: []Host{
				{Name: "cp1", Address: "192.168.10.11", Roles: []Role{RoleControlPlane, RoleEtcd}},
				{Name: "worker1", Address: "192.168.10.21", Roles: []Role{RoleWorker}},
				{Name: "worker2", Address: "192.168.10.22", Roles: []Role{RoleWorker}},
			},
		},
	}
	SetDefaults(c)
	return c
}

// CommentedYAML renders c as YAML with every field present and each preceded by its documentation.
// List items after the first are written without comments and without their empty fields, to stay readable.
func CommentedYAML(c *Cluster) string {
	var b strings.Builder
	b.WriteString("# privcloud cluster configuration. Every field is shown with its default value.\n")
	b.WriteString("# Validate with: privcloud config validate -f cluster.yaml\n")
	writeStruct(&b, reflect.ValueOf(*c), 0, true, true)
	return b.String()
}

func writeStruct(b *strings.Builder, v reflect.Value, indent int, comments, showEmpty bool) {
	t := v.Type()
	first := true
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := jsonName(f)
		if name == "" {
			continue
		}
		fv := v.Field(i)
		if !showEmpty && fv.IsZero() {
			continue
		}
		pad := strings.Repeat("  ", indent)
		if first && indent > 0 && strings.HasSuffix(b.String(), "- ") {
			pad = "" // the first field of a list item shares the "- " line
		}
		if comments {
			for _, line := range wrap(f.Tag.Get("doc"), 100-2*indent) {
				fmt.Fprintf(b, "%s# %s\n", pad, line)
				pad = strings.Repeat("  ", indent)
			}
		}
		first = false
		writeField(b, pad, name, fv, indent, comments, showEmpty)
	}
}

func writeField(b *strings.Builder, pad, name string, v reflect.Value, indent int, comments, showEmpty bool) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			fmt.Fprintf(b, "%s%s: null\n", pad, name)
			return
		}
		v = v.Elem()
	}
	switch {
	case v.Type() == durationType:
		fmt.Fprintf(b, "%s%s: %s\n", pad, name, v.Interface().(Duration).String())
	case v.Kind() == reflect.Struct:
		fmt.Fprintf(b, "%s%s:\n", pad, name)
		writeStruct(b, v, indent+1, comments, showEmpty)
	case v.Kind() == reflect.Slice && v.Len() == 0:
		fmt.Fprintf(b, "%s%s: []\n", pad, name)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		fmt.Fprintf(b, "%s%s:\n", pad, name)
		for i := 0; i < v.Len(); i++ {
			fmt.Fprintf(b, "%s- ", strings.Repeat("  ", indent))
			// Only the first item is documented; the rest show just what they set.
			writeStruct(b, v.Index(i), indent+1, comments && i == 0, showEmpty && i == 0)
		}
	case v.Kind() == reflect.Slice:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = scalarYAML(v.Index(i).Interface())
		}
		fmt.Fprintf(b, "%s%s: [%s]\n", pad, name, strings.Join(items, ", "))
	case v.Kind() == reflect.Map && v.Len() == 0:
		fmt.Fprintf(b, "%s%s: {}\n", pad, name)
	case v.Kind() == reflect.Map:
		fmt.Fprintf(b, "%s%s:\n", pad, name)
		keys := v.MapKeys()
		strs := make([]string, len(keys))
		for i, k := range keys {
			strs[i] = k.String()
		}
		sort.Strings(strs)
		for _, k := range strs {
			fmt.Fprintf(b, "%s  %s: %s\n", strings.Repeat("  ", indent), scalarYAML(k), scalarYAML(v.MapIndex(reflect.ValueOf(k)).Interface()))
		}
	default:
		fmt.Fprintf(b, "%s%s: %s\n", pad, name, scalarYAML(v.Interface()))
	}
}

// scalarYAML quotes a scalar exactly where YAML needs it (e.g. "" or a string that reads as a number).
func scalarYAML(v any) string {
	out, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(string(out), "\n")
}

func wrap(text string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, word := range strings.Fields(text) {
		if cur.Len() > 0 && cur.Len()+1+len(word) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(word)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

// JSONSchema returns a JSON Schema (draft 2020-12) for cluster.yaml, for editors and CI linters.
func JSONSchema() ([]byte, error) {
	s := schemaFor(reflect.TypeOf(Cluster{}), "")
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = "https://privcloud.io/schemas/v1alpha1/cluster.json"
	s["title"] = "privcloud Cluster (" + APIVersion + ")"
	return json.MarshalIndent(s, "", "  ")
}

func schemaFor(t reflect.Type, enum string) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s := map[string]any{}
	switch {
	case t == durationType:
		s["type"] = "string"
		s["pattern"] = `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	case t.Kind() == reflect.Struct:
		s["type"] = "object"
		s["additionalProperties"] = false
		props := map[string]any{}
		var required []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := jsonName(f)
			if name == "" {
				continue
			}
			p := schemaFor(f.Type, f.Tag.Get("enum"))
			if d := f.Tag.Get("doc"); d != "" {
				p["description"] = d
			}
			props[name] = p
			if !strings.Contains(f.Tag.Get("json"), "omitempty") {
				required = append(required, name)
			}
		}
		s["properties"] = props
		if len(required) > 0 {
			s["required"] = required
		}
	case t.Kind() == reflect.Slice:
		s["type"] = "array"
		s["items"] = schemaFor(t.Elem(), enum)
		return s
	case t.Kind() == reflect.Map:
		s["type"] = "object"
		s["additionalProperties"] = schemaFor(t.Elem(), "")
	case t.Kind() == reflect.String:
		s["type"] = "string"
	case t.Kind() == reflect.Bool:
		s["type"] = "boolean"
	default:
		s["type"] = "integer"
	}
	if enum != "" {
		s["enum"] = strings.Split(enum, ",")
	}
	return s
}
