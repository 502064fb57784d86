package local

import (
	"net/http"
	"sort"
	"strconv"
)

// Member is a node of the cluster as /v1/agent/members shows it, built
// from the catalog: the servers are the nodes with the consul service, the
// agents the other nodes with a serfHealth check; a passing serfHealth is
// alive, any other status failed.
type Member struct {
	Name       string
	Addr       string
	Port       int // a server's Raft port; 0 for an agent
	Server     bool
	Alive      bool
	Build      string // the node meta consul-version, if any
	Datacenter string
}

// Serf's member statuses, as Consul reports them.
const (
	MemberAlive  = 1
	MemberFailed = 4
)

type memberJSON struct {
	Name        string
	Addr        string
	Port        int
	Tags        map[string]string
	Status      int
	ProtocolMin int
	ProtocolMax int
	ProtocolCur int
	DelegateMin int
	DelegateMax int
	DelegateCur int
}

// WriteMembers answers /v1/agent/members with ms, servers first, then by
// name.
func WriteMembers(w http.ResponseWriter, ms []Member) {
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Server != ms[j].Server {
			return ms[i].Server
		}
		return ms[i].Name < ms[j].Name
	})
	out := make([]memberJSON, 0, len(ms))
	for _, m := range ms {
		role := "node"
		if m.Server {
			role = "consul"
		}
		status := MemberFailed
		if m.Alive {
			status = MemberAlive
		}
		tags := map[string]string{"role": role, "dc": m.Datacenter, "build": m.Build, "id": m.Name, "segment": "", "vsn": "2", "vsn_min": "2", "vsn_max": "3"}
		if m.Server {
			tags["port"] = strconv.Itoa(m.Port)
		}
		out = append(out, memberJSON{Name: m.Name, Addr: m.Addr, Port: m.Port, Tags: tags, Status: status,
			ProtocolMin: 1, ProtocolMax: 5, ProtocolCur: 2, DelegateMin: 2, DelegateMax: 5, DelegateCur: 4})
	}
	writeJSON(w, http.StatusOK, out)
}

// WriteJSON answers with v as JSON, with its length.
func WriteJSON(w http.ResponseWriter, v any) { writeJSON(w, http.StatusOK, v) }
