package config

import (
	"time"
)

// Check statuses, as Consul spells them.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

// Kind says how a check decides its status.
type Kind string

// The kinds of check kvx runs.
const (
	KindScript Kind = "script" // Args run as a process
	KindHTTP   Kind = "http"
	KindTCP    Kind = "tcp"
	KindGRPC   Kind = "grpc"
	KindTTL    Kind = "ttl" // status set through the agent API
)

// Definitions is everything a config directory defines, in load order
// (file name, then position in the file).
type Definitions struct {
	Services []Service
	Checks   []Check // top-level checks; a service's own checks are in Service.Checks
	Watches  []Watch
	// Warnings are things skipped or ignored, each naming its file.
	Warnings []string
}

// Watch is one entry of a file's "watches": Consul's watch parameters and
// handler, as written (Options.ValidateWatch checks them).
type Watch struct {
	File   string // the file it came from
	Path   string // its place in the file: watches[i]
	Params map[string]any
}

// AllChecks returns every check: each service's own checks, then the
// top-level ones, in load order.
func (d *Definitions) AllChecks() []Check {
	var out []Check
	for _, s := range d.Services {
		out = append(out, s.Checks...)
	}
	return append(out, d.Checks...)
}

// Service is one service definition. Field names follow Consul's
// AgentServiceRegistration.
type Service struct {
	ID                string // defaults to Name
	Name              string
	Tags              []string
	Address           string
	TaggedAddresses   map[string]ServiceAddress
	Meta              map[string]string
	Port              int
	Weights           Weights // {Passing: 1, Warning: 1} unless given
	EnableTagOverride bool
	// Checks are the service's own `check` and `checks`, with ID, Name and
	// ServiceID filled in as Consul fills them.
	Checks []Check

	File string // the file it was read from, for messages
}

// ServiceAddress is one entry of a service's tagged_addresses.
type ServiceAddress struct {
	Address string
	Port    int
}

// Weights are a service's DNS SRV weights.
type Weights struct {
	Passing int
	Warning int
}

// Check is one check definition, validated: exactly one of Args, HTTP,
// TCP, GRPC or TTL is set, and Interval is set unless it is a TTL check.
type Check struct {
	ID        string // defaults to Name; "service:<id>[:<n>]" for a service's check
	Name      string
	Notes     string
	ServiceID string
	Status    string // initial status; "" means critical, as Consul

	Args []string // script check

	HTTP             string // http check: the URL
	Method           string // default GET
	Header           map[string][]string
	Body             string
	TLSServerName    string
	TLSSkipVerify    bool
	DisableRedirects bool

	TCP string // tcp check: host:port

	GRPC       string // grpc check: host:port[/service]
	GRPCUseTLS bool

	TTL time.Duration // ttl check

	Interval time.Duration
	Timeout  time.Duration // 0: the runner's default for the kind

	SuccessBeforePassing   int
	FailuresBeforeWarning  int // 0: same as FailuresBeforeCritical, as Consul
	FailuresBeforeCritical int

	DeregisterCriticalServiceAfter time.Duration
	OutputMaxSize                  int // 0: 4 KiB

	File string // the file it was read from, for messages
}

// Kind says which kind of check c is; "" for an invalid definition.
func (c *Check) Kind() Kind {
	switch {
	case len(c.Args) > 0:
		return KindScript
	case c.HTTP != "":
		return KindHTTP
	case c.TCP != "":
		return KindTCP
	case c.GRPC != "":
		return KindGRPC
	case c.TTL > 0:
		return KindTTL
	}
	return ""
}

// InitialStatus is the status the check starts with: Status, or critical.
func (c *Check) InitialStatus() string {
	if c.Status == "" {
		return StatusCritical
	}
	return c.Status
}
