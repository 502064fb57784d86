package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/kvxproject/kvx/pkg/client"
	"github.com/kvxproject/kvx/pkg/render"
	"github.com/kvxproject/kvx/pkg/transport"
)

// demoTemplate is an haproxy-style backend list in consul-template's
// language, from the healthy instances of the web service the demo's nodes
// registered, with a setting from KV.
const demoTemplate = `# rendered by kvx render
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s

frontend http
  bind *:80
  default_backend web

backend web
  balance {{ keyOrDefault "demo/haproxy/balance" "roundrobin" }}
{{- range service "web" }}
  server {{ .Node }} {{ .Address }}:{{ .Port }} check
{{- end }}
`

// demoRender is the demo's render part: the catalog's passing web
// instances are rendered into an haproxy-style file by render, which kvx in
// then pushes (here to the fleet's key, as the render -> kvx in -watch
// pipeline does).
func demoRender(ctx context.Context, w io.Writer, dir, addr string, push func([]byte, string) (transport.PushResult, error)) error {
	c, err := client.New(client.Options{Address: addr})
	if err != nil {
		return err
	}
	if _, err := c.KV().Put(&consulapi.KVPair{Key: "demo/haproxy/balance", Value: []byte("leastconn")}, nil); err != nil {
		return err
	}
	tmpl, err := render.NewTemplate(render.TemplateOptions{Name: "haproxy.ctmpl", Text: demoTemplate})
	if err != nil {
		return err
	}
	dest := filepath.Join(dir, "render", "haproxy.cfg")
	start := time.Now()
	src := render.Source{KV: c.KV(), Health: c.Health(), Catalog: c.Catalog()}
	if err := render.NewRunner(src, []*render.Target{{Template: tmpl, Destination: dest}}, render.Options{Once: true}).Run(ctx); err != nil {
		return fmt.Errorf("demo render: %w", err)
	}
	out, err := os.ReadFile(dest)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nrender     kvx render -once -template haproxy.ctmpl:%s (the passing web instances from the catalog, %v):\n", dest, round(time.Since(start)))
	fmt.Fprint(w, indent(string(out)))
	_, err = push(out, "push 4     kvx in -f "+dest+" (as kvx in -watch does beside a long-running render):")
	return err
}
