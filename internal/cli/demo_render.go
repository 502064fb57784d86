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
// language, from the backends the demo registers under demo/backends.
const demoTemplate = `# rendered by kvx render
backend app
  balance roundrobin
{{- range ls "demo/backends" }}
  server {{ .Key }} {{ .Value }} check
{{- end }}
`

// demoRender is the demo's render part: backends written to KV are rendered
// into an haproxy-style file by render, which kvx in then pushes (here to
// the fleet's key, as the render -> kvx in -watch pipeline does).
func demoRender(ctx context.Context, w io.Writer, dir, addr string, push func([]byte, string) (transport.PushResult, error)) error {
	c, err := client.New(client.Options{Address: addr})
	if err != nil {
		return err
	}
	for i := range 12 {
		p := &consulapi.KVPair{Key: fmt.Sprintf("demo/backends/app-%02d", i), Value: fmt.Appendf(nil, "10.1.0.%d:8080", 10+i)}
		if _, err := c.KV().Put(p, nil); err != nil {
			return err
		}
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
	fmt.Fprintf(w, "\nrender     kvx render -once -template haproxy.ctmpl:%s (12 backends from demo/backends, %v):\n", dest, round(time.Since(start)))
	fmt.Fprint(w, indent(string(out)))
	_, err = push(out, "push 4     kvx in -f "+dest+" (as kvx in -watch does beside a long-running render):")
	return err
}
