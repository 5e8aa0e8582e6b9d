package v1alpha1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads a cluster.yaml, decodes it strictly, applies defaults, resolves its paths relative to the file's
// folder and validates it. Every problem comes back at once in a *ValidationError whose entries carry the field
// path and, where the field is in the file, its line.
func Load(path string) (*Cluster, error) {
	data, err := readDocument(path, "cluster configuration")
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	home, _ := os.UserHomeDir()
	return LoadBytes(data, path, filepath.Dir(abs), home)
}

// LoadBytes is Load for a document already in memory. file names it in errors; baseDir anchors relative paths
// and home expands "~".
func LoadBytes(data []byte, file, baseDir, home string) (*Cluster, error) {
	c, lines, err := Decode(data)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			ve.File = file
		}
		return nil, err
	}
	SetDefaults(c)
	ResolvePaths(c, baseDir, home)
	if ve := Validate(c); ve != nil {
		ve.File = file
		for i := range ve.Errors {
			ve.Errors[i].Line = lines.find(ve.Errors[i].Path)
		}
		return nil, ve
	}
	return c, nil
}

// maxDocumentBytes bounds what is read of a cluster.yaml or bundle.yaml. A cluster.yaml of 1000 hosts with
// every host field written (labels, taints, a bastion) is about 630 KB; 4 MiB leaves room for six times that,
// while a wrong path (/dev/zero, a disk image, a log) fails at once instead of filling memory.
const maxDocumentBytes = 4 << 20

// readDocument reads the YAML file at path, what it holds naming it in errors ("cluster configuration").
// Anything but a regular file, or a file over maxDocumentBytes, is refused with a *ValidationError, as it
// is a configuration the user has to correct.
func readDocument(path, what string) ([]byte, error) {
	// Stat before opening: opening a FIFO would wait for a writer.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fileError(path, "not a regular file but %s: name a YAML file", fileKind(fi.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	// The limit also holds should the file grow, or be swapped, between the Stat and the read.
	data, err := io.ReadAll(io.LimitReader(f, maxDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if len(data) > maxDocumentBytes {
		return nil, fileError(path, "larger than %d MiB, the most privcloud reads of a YAML file", maxDocumentBytes>>20)
	}
	return data, nil
}

// fileKind names what a non-regular file is.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	}
	return "a special file"
}

// fileError is a problem with the file as a whole, in the form every configuration error takes.
func fileError(path, format string, args ...any) error {
	ve := documentError(0, fmt.Sprintf(format, args...))
	ve.File = path
	return ve
}

// documentError is a problem with the document as a whole; line is 0 when unknown.
func documentError(line int, msg string) *ValidationError {
	return &ValidationError{Errors: []FieldError{{Path: "(document)", Line: line, Msg: msg}}}
}

// yamlLineRE matches the "yaml: line N: " that starts yaml.v3's syntax errors.
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxError turns a yaml.v3 parse error into a document error on the line it names.
func syntaxError(what string, err error) *ValidationError {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return documentError(line, what+": "+msg)
}

// Lines maps field paths to the line they stand on in the decoded document.
type Lines map[string]int

// find returns the line of path, or of its nearest ancestor present in the file.
func (l Lines) find(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if n, ok := l[p]; ok {
			return n
		}
	}
	return 0
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Decode parses one cluster document strictly: unknown or misspelled fields, values of the wrong type,
// duplicate keys and an unknown apiVersion or kind are all errors naming the field and its line.
// Nothing is defaulted or validated here.
func Decode(data []byte) (*Cluster, Lines, error) {
	var c Cluster
	lines, err := decodeStrict(data, KindCluster, &c)
	if err != nil {
		return nil, nil, err
	}
	return &c, lines, nil
}

// decodeStrict parses one document of kind into out, a pointer to that kind's type.
func decodeStrict(data []byte, kind string, out any) (Lines, error) {
	// yaml.v3 keeps aliases as references when decoding into a Node, so a tree of aliases costs its size in
	// the file here; the walker below is what expands them, and it is bounded.
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, documentError(0, "the file is empty")
		}
		return nil, syntaxError("not valid YAML", err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, documentError(extra.Line, "more than one YAML document: a file holds exactly one "+kind)
	case !errors.Is(err, io.EOF):
		// Whatever follows the document is read too, so that a broken second document is not ignored.
		return nil, syntaxError("more than one YAML document, and the second is not valid YAML", err)
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return nil, &ValidationError{Errors: []FieldError{{Path: "(document)", Line: doc.Line, Msg: "must be a mapping with apiVersion, kind, metadata and spec"}}}
	}
	if err := checkTypeMeta(doc, kind); err != nil {
		return nil, err
	}
	w := &walker{lines: Lines{}}
	value := w.walk(doc, reflect.TypeOf(out).Elem(), "")
	if w.over != nil {
		// The errors met on the way are mostly the same few repeated through aliases.
		return nil, &ValidationError{Errors: []FieldError{*w.over}}
	}
	if len(w.errs) > 0 {
		return nil, &ValidationError{Errors: w.errs}
	}
	raw, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	jd := json.NewDecoder(bytes.NewReader(raw))
	jd.DisallowUnknownFields()
	if err := jd.Decode(out); err != nil {
		// The walker checks types first, so this is a value a type rejected.
		return nil, &ValidationError{Errors: []FieldError{jsonFieldError(err, w.lines)}}
	}
	return w.lines, nil
}

// checkTypeMeta is the version switch: the document must declare this package's apiVersion and kind before
// anything else is read, so a document of another version gets one clear error rather than a list of
// unknown fields.
func checkTypeMeta(doc *yaml.Node, kind string) error {
	var errs []FieldError
	found := map[string]*yaml.Node{}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		found[doc.Content[i].Value] = doc.Content[i+1]
	}
	for _, f := range []struct{ key, want string }{{"apiVersion", APIVersion}, {"kind", kind}} {
		n, ok := found[f.key]
		switch {
		case !ok:
			errs = append(errs, FieldError{Path: f.key, Line: doc.Line, Msg: fmt.Sprintf("missing: this file must declare %s: %s", f.key, f.want)})
		case n.Value != f.want:
			msg := fmt.Sprintf("%q is not supported: this version of privcloud reads %s", n.Value, f.want)
			errs = append(errs, FieldError{Path: f.key, Line: n.Line, Msg: msg})
		}
	}
	if len(errs) > 0 {
		return &ValidationError{Errors: errs}
	}
	return nil
}

// walker checks a YAML node tree against a Go type and turns it into plain values ready for encoding/json.
// It records the line of every field path it meets.
type walker struct {
	errs    []FieldError
	lines   Lines
	nodes   int         // nodes visited, an aliased node once each time it is reached
	aliased bool        // an alias was followed
	over    *FieldError // set once nodes passes maxWalkNodes; the walk then stops
}

// maxWalkNodes bounds the walk. Aliases and merge keys let a small file name far more nodes than it holds
// (a "billion laughs"); counting each node every time it is reached stops such a file early. A cluster.yaml
// of 1000 hosts with every host field written (labels, taints, a bastion) visits about 51,000 nodes, a tenth
// of the limit, and reaching the limit costs about half a second.
const maxWalkNodes = 1 << 19

// visit counts one node and reports whether the walk may go on.
func (w *walker) visit(path string, line int) bool {
	if w.over != nil {
		return false
	}
	w.nodes++
	if w.nodes <= maxWalkNodes {
		return true
	}
	msg := fmt.Sprintf("too many YAML nodes: the document passes the limit of %d nodes", maxWalkNodes)
	if w.aliased {
		msg = fmt.Sprintf("too many YAML nodes through aliases: the document passes the limit of %d nodes, "+
			"counting an alias's nodes each time it is used", maxWalkNodes)
	}
	w.over = &FieldError{Path: displayPath(path), Line: line, Msg: msg}
	return false
}

// deref returns the node an alias stands for, or n itself.
func (w *walker) deref(n *yaml.Node) *yaml.Node {
	if n.Kind != yaml.AliasNode {
		return n
	}
	w.aliased = true
	return n.Alias
}

func (w *walker) fail(path string, line int, format string, args ...any) {
	w.errs = append(w.errs, FieldError{Path: displayPath(path), Line: line, Msg: fmt.Sprintf(format, args...)})
}

func displayPath(p string) string {
	if p == "" {
		return "(document)"
	}
	return p
}

var durationType = reflect.TypeOf(Duration{})

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) any {
	if !w.visit(path, n.Line) {
		return nil
	}
	n = w.deref(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			w.fail(path, n.Line, "expected a duration string such as \"30s\" or \"8760h\"")
			return nil
		}
		var d Duration
		if err := d.UnmarshalJSON([]byte(strconv.Quote(n.Value))); err != nil {
			w.fail(path, n.Line, "%v", err)
			return nil
		}
		return n.Value
	}
	switch t.Kind() {
	case reflect.Struct:
		return w.walkStruct(n, t, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.fail(path, n.Line, "expected a mapping of names to values, got %s", describe(n))
			return nil
		}
		out := map[string]any{}
		w.eachPair(n, path, func(key string, kn, vn *yaml.Node) {
			child := path + "." + key
			w.lines[child] = kn.Line
			out[key] = w.walk(vn, t.Elem(), child)
		})
		return out
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(path, n.Line, "expected a list, got %s", describe(n))
			return nil
		}
		out := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			if w.over != nil {
				return nil
			}
			child := fmt.Sprintf("%s[%d]", path, i)
			w.lines[child] = item.Line
			out = append(out, w.walk(item, t.Elem(), child))
		}
		return out
	default:
		return w.scalar(n, t, path)
	}
}

func (w *walker) walkStruct(n *yaml.Node, t reflect.Type, path string) any {
	if n.Kind != yaml.MappingNode {
		w.fail(path, n.Line, "expected a mapping of fields, got %s", describe(n))
		return nil
	}
	fields := jsonFields(t)
	out := map[string]any{}
	w.eachPair(n, path, func(key string, kn, vn *yaml.Node) {
		child := key
		if path != "" {
			child = path + "." + key
		}
		f, ok := fields[key]
		if !ok {
			msg := "unknown field"
			if s := suggest(key, fields); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			w.fail(child, kn.Line, "%s", msg)
			return
		}
		w.lines[child] = kn.Line
		out[key] = w.walk(vn, f.Type, child)
	})
	return out
}

// eachPair visits the key/value pairs of a mapping, rejecting duplicate keys. Merge keys ("<<") are resolved
// as YAML defines them: keys written in the mapping win over merged ones, earlier merge sources over later.
func (w *walker) eachPair(n *yaml.Node, path string, visit func(key string, kn, vn *yaml.Node)) {
	seen := map[string]int{}
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if !w.visit(path, kn.Line) {
			return
		}
		if kn.Tag == "!!merge" {
			merged = append(merged, w.mergeSources(vn, path)...)
			continue
		}
		if kn.Kind != yaml.ScalarNode {
			w.fail(path, kn.Line, "mapping keys must be plain strings")
			continue
		}
		if first, dup := seen[kn.Value]; dup {
			w.fail(joinPath(path, kn.Value), kn.Line, "duplicate key (first on line %d)", first)
			continue
		}
		seen[kn.Value] = kn.Line
		visit(kn.Value, kn, vn)
	}
	for _, m := range merged {
		for i := 0; i+1 < len(m.Content); i += 2 {
			kn, vn := m.Content[i], m.Content[i+1]
			if !w.visit(path, kn.Line) {
				return
			}
			if _, done := seen[kn.Value]; done || kn.Kind != yaml.ScalarNode {
				continue
			}
			seen[kn.Value] = kn.Line
			visit(kn.Value, kn, vn)
		}
	}
}

// mergeSources returns the mappings a merge key refers to: a mapping or a list of mappings, each possibly an
// alias, as YAML defines merge keys. Lists inside the list are refused rather than followed: an alias may name
// a list that holds it, and following it would never end.
func (w *walker) mergeSources(n *yaml.Node, path string) []*yaml.Node {
	items := []*yaml.Node{n}
	if list := w.deref(n); list.Kind == yaml.SequenceNode {
		items = list.Content
	}
	var out []*yaml.Node
	for _, item := range items {
		if !w.visit(path, item.Line) {
			return nil
		}
		m := w.deref(item)
		if m.Kind != yaml.MappingNode {
			w.fail(joinPath(path, "<<"), item.Line, "a merge key takes a mapping or a list of mappings, got %s", describe(m))
			continue
		}
		out = append(out, m)
	}
	return out
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (w *walker) scalar(n *yaml.Node, t reflect.Type, path string) any {
	if n.Kind != yaml.ScalarNode {
		w.fail(path, n.Line, "expected %s, got %s", kindName(t), describe(n))
		return nil
	}
	switch t.Kind() {
	case reflect.String:
		if n.Tag != "!!str" {
			w.fail(path, n.Line, "expected a string, got %s %q: quote it if a string is meant", strings.TrimPrefix(n.Tag, "!!"), n.Value)
			return nil
		}
		return n.Value
	case reflect.Bool:
		var b bool
		if n.Tag != "!!bool" || n.Decode(&b) != nil {
			w.fail(path, n.Line, "expected true or false, got %q", n.Value)
			return nil
		}
		return b
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Tag != "!!int" || n.Decode(&i) != nil {
			w.fail(path, n.Line, "expected a whole number, got %q", n.Value)
			return nil
		}
		if bits := t.Bits(); bits < 64 && (i > math.MaxInt32 || i < math.MinInt32) {
			w.fail(path, n.Line, "%d is out of range", i)
			return nil
		}
		return i
	}
	w.fail(path, n.Line, "unsupported field type %s", t)
	return nil
}

type jsonField struct{ Type reflect.Type }

// jsonFields maps the JSON names of a struct's exported fields to their types.
func jsonFields(t reflect.Type) map[string]jsonField {
	out := map[string]jsonField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := jsonName(f)
		if name == "" {
			continue
		}
		out[name] = jsonField{Type: f.Type}
	}
	return out
}

// jsonName is the field's JSON key, or "" for fields encoding/json skips.
func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag := f.Tag.Get("json")
	if tag == "-" {
		return ""
	}
	if name, _, _ := strings.Cut(tag, ","); name != "" {
		return name
	}
	return f.Name
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	default:
		return "a number"
	}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

// suggest returns the known field closest to a misspelled key, if one is close enough to be a likely typo.
func suggest(key string, fields map[string]jsonField) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	best, bestDist := "", 3
	for _, name := range names {
		if strings.EqualFold(name, key) {
			return name
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(name)); d < bestDist {
			best, bestDist = name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// jsonFieldError turns an encoding/json error into a field error with the YAML path and line.
func jsonFieldError(err error, lines Lines) FieldError {
	var ute *json.UnmarshalTypeError
	path := "(document)"
	if errors.As(err, &ute) && ute.Field != "" {
		path = ute.Field
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "json: ") {
		msg = msg[i+2:]
	}
	return FieldError{Path: path, Line: lines.find(path), Msg: msg}
}

// ResolvePaths expands "~" with home and anchors relative local paths (state directory, bundle, keys,
// known_hosts files) at baseDir, the folder of cluster.yaml, so the file means the same wherever privcloud
// is started from.
func ResolvePaths(c *Cluster, baseDir, home string) {
	s := &c.Spec
	s.StateDir = localPath(s.StateDir, baseDir, home)
	s.Bundle.Path = localPath(s.Bundle.Path, baseDir, home)
	for i := range s.Bundle.PublicKeys {
		s.Bundle.PublicKeys[i] = localPath(s.Bundle.PublicKeys[i], baseDir, home)
	}
	for i := range s.SSH.KnownHostsFiles {
		s.SSH.KnownHostsFiles[i] = localPath(s.SSH.KnownHostsFiles[i], baseDir, home)
	}
	for i := range s.Hosts {
		h := &s.Hosts[i]
		h.SSHKeyPath = localPath(h.SSHKeyPath, baseDir, home)
		for j := range h.Bastions {
			h.Bastions[j].SSHKeyPath = localPath(h.Bastions[j].SSHKeyPath, baseDir, home)
		}
	}
}

func localPath(p, baseDir, home string) string {
	switch {
	case p == "":
		return p
	case p == "~" || strings.HasPrefix(p, "~/"):
		return filepath.Join(home, p[1:])
	case filepath.IsAbs(p):
		return filepath.Clean(p)
	default:
		return filepath.Join(baseDir, p)
	}
}
