package render

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Kind is what a dependency asks the data source for.
type Kind int

// The dependency kinds, one per kind of query.
const (
	KindKey      Kind = iota // kv.get: a key, nil when missing
	KindKeyBlock             // kv.block: a key, not answered until it exists
	KindList                 // kv.list: every key under a prefix (ls and tree)
	KindService              // health.service: a service's instances with their checks
	KindServices             // catalog.services: service names and tags
	KindNode                 // catalog.node: one node and its services
	KindNodes                // catalog.nodes: every node
	KindFile                 // file: a local file's content
)

// Dep is one unique piece of data templates need. Two template calls that
// need the same data make equal Deps (same String), so they share one query.
type Dep struct {
	Kind    Kind
	Path    string   // key, prefix, service name, node name or file path
	Tag     string   // service tag filter
	DC      string   // datacenter, "" for the agent's own
	Near    string   // nearness sort for services and nodes
	Filters []string // service health states accepted, sorted; default passing
}

// String names the dependency as consul-template does in its logs
// ("kv.block(app/port)", "health.service(web|passing)"); it is also the
// dependency's identity.
func (d Dep) String() string {
	at := d.Path
	if d.DC != "" {
		at += "@" + d.DC
	}
	switch d.Kind {
	case KindKey:
		return "kv.get(" + at + ")"
	case KindKeyBlock:
		return "kv.block(" + at + ")"
	case KindList:
		return "kv.list(" + at + ")"
	case KindService:
		name := d.Path
		if d.Tag != "" {
			name = d.Tag + "." + name
		}
		if d.DC != "" {
			name += "@" + d.DC
		}
		if d.Near != "" {
			name += "~" + d.Near
		}
		return "health.service(" + name + "|" + strings.Join(d.Filters, ",") + ")"
	case KindServices:
		if d.DC != "" {
			return "catalog.services(@" + d.DC + ")"
		}
		return "catalog.services"
	case KindNode:
		return "catalog.node(" + at + ")"
	case KindNodes:
		s := "catalog.nodes("
		if d.DC != "" {
			s += "@" + d.DC
		}
		if d.Near != "" {
			s += "~" + d.Near
		}
		return s + ")"
	case KindFile:
		return "file(" + d.Path + ")"
	}
	return fmt.Sprintf("unknown(%d)", d.Kind)
}

// The forms consul-template accepts, from its dependency package: a key or
// prefix with an optional leading slash and @dc; a service as
// [tag.]name[@dc][~near][|filters]; a node as name[@dc].
var (
	dcPart      = `(@(?P<dc>[[:word:]\.\-\_]+))?`
	nearPart    = `(~(?P<near>[[:word:]\.\-\_]+))?`
	keyForm     = regexp.MustCompile(`\A/?(?P<path>[^@\?]+)` + dcPart + `\z`)
	serviceForm = regexp.MustCompile(`\A((?P<tag>[[:word:]=:\.\-\_]+)\.)?(?P<name>[[:word:]\-\_]+)` + dcPart + nearPart + `(\|(?P<filter>[[:word:]\,]+))?\z`)
	nodeForm    = regexp.MustCompile(`\A(?P<name>[[:word:]\.\-\_]+)?` + dcPart + `\z`)
	nodesForm   = regexp.MustCompile(`\A` + dcPart + nearPart + `\z`)
	servicesDC  = regexp.MustCompile(`\A` + dcPart + `\z`)
)

func match(re *regexp.Regexp, s string) (map[string]string, bool) {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return nil, false
	}
	out := map[string]string{}
	for i, name := range re.SubexpNames() {
		if name != "" {
			out[name] = m[i]
		}
	}
	return out, true
}

func parseKeyDep(fn string, kind Kind, s string) (Dep, error) {
	m, ok := match(keyForm, s)
	if !ok {
		return Dep{}, fmt.Errorf("%s: invalid format: %q", fn, s)
	}
	return Dep{Kind: kind, Path: m["path"], DC: m["dc"]}, nil
}

// Health states a service filter may name.
const (
	healthAny      = "any"
	healthPassing  = "passing"
	healthWarning  = "warning"
	healthCritical = "critical"
	healthMaint    = "maintenance"
)

func parseServiceDep(s string) (Dep, error) {
	m, ok := match(serviceForm, s)
	if !ok {
		return Dep{}, fmt.Errorf("service: invalid format: %q", s)
	}
	d := Dep{Kind: KindService, Path: m["name"], Tag: m["tag"], DC: m["dc"], Near: m["near"]}
	for f := range strings.SplitSeq(m["filter"], ",") {
		switch f = strings.TrimSpace(f); f {
		case healthAny, healthPassing, healthWarning, healthCritical, healthMaint:
			d.Filters = append(d.Filters, f)
		case "":
		default:
			return Dep{}, fmt.Errorf("service: invalid filter %q in %q: want any, passing, warning, critical or maintenance", f, s)
		}
	}
	if len(d.Filters) == 0 {
		d.Filters = []string{healthPassing}
	}
	slices.Sort(d.Filters)
	d.Filters = slices.Compact(d.Filters)
	return d, nil
}

func parseNodeDep(s string) (Dep, error) {
	m, ok := match(nodeForm, s)
	if !ok {
		return Dep{}, fmt.Errorf("node: invalid format: %q", s)
	}
	return Dep{Kind: KindNode, Path: m["name"], DC: m["dc"]}, nil
}

func parseNodesDep(s string) (Dep, error) {
	m, ok := match(nodesForm, s)
	if !ok {
		return Dep{}, fmt.Errorf("nodes: invalid format: %q", s)
	}
	return Dep{Kind: KindNodes, DC: m["dc"], Near: m["near"]}, nil
}

func parseServicesDep(s string) (Dep, error) {
	m, ok := match(servicesDC, s)
	if !ok {
		return Dep{}, fmt.Errorf("services: invalid format: %q", s)
	}
	return Dep{Kind: KindServices, DC: m["dc"]}, nil
}
