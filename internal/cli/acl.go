package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/acl"
	"github.com/kvxproject/kvx/pkg/client"
)

// aclOptions are the flags every kvx acl subcommand takes.
type aclOptions struct {
	httpAddr, token, datacenter, format string
	tls                                 tlsClientFlags
}

func (o *aclOptions) client() (*consulapi.Client, error) {
	return client.New(client.Options{Address: o.httpAddr, Token: o.token, Datacenter: o.datacenter, TLS: o.tls.options()})
}

func (o *aclOptions) check() error {
	if o.format != "text" && o.format != "json" {
		return usageError{fmt.Errorf("-format %q: want text or json", o.format)}
	}
	return nil
}

func newACLCmd() *cobra.Command {
	o := &aclOptions{}
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Bootstrap ACLs and create policies and tokens, as consul acl",
		Long: `Manage the ACLs of servers started with -acl-enabled: bootstrap the first
management token, create policies from rules in Consul's syntax, create
tokens linked to policies. The token of the request comes from -token,
else CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE.`,
	}
	pf := cmd.PersistentFlags()
	o.tls.register(pf)
	pf.StringVar(&o.httpAddr, "http-addr", "", "server HTTP address (default: CONSUL_HTTP_ADDR, else 127.0.0.1:8500)")
	pf.StringVar(&o.token, "token", "", "ACL token (default: CONSUL_HTTP_TOKEN, else the file CONSUL_HTTP_TOKEN_FILE names)")
	pf.StringVar(&o.datacenter, "datacenter", "", "datacenter to talk to (default: the server's)")
	pf.StringVar(&o.format, "format", "text", "output: text, or json (Consul's API objects)")

	bootstrap := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create the first management token (once; its SecretID is shown only now)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			tok, _, err := c.ACL().Bootstrap()
			if err != nil {
				return fmt.Errorf("acl bootstrap: %w", err)
			}
			return printToken(cmd.OutOrStdout(), o.format, tok)
		},
	}

	var pname, pdesc, prules string
	policy := &cobra.Command{Use: "policy", Short: "Create policies"}
	policyCreate := &cobra.Command{
		Use:   "create -name NAME -rules RULES|@FILE",
		Short: "Create a policy from rules in Consul's HCL or JSON syntax",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			if pname == "" {
				return usageError{fmt.Errorf("-name is required")}
			}
			rules, where, err := readRules(prules)
			if err != nil {
				return usageError{err}
			}
			if _, err := acl.Parse(rules); err != nil { // refused here, naming the file, before anything is sent
				return usageError{fmt.Errorf("%s: %w", where, err)}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			p, _, err := c.ACL().PolicyCreate(&consulapi.ACLPolicy{Name: pname, Description: pdesc, Rules: rules}, nil)
			if err != nil {
				return fmt.Errorf("create policy %s: %w", pname, err)
			}
			if o.format == "json" {
				printJSON(cmd.OutOrStdout(), p)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ID:           %s\nName:         %s\nDescription:  %s\nRules:\n%s\n", p.ID, p.Name, p.Description, p.Rules)
			return nil
		},
	}
	pf2 := policyCreate.Flags()
	pf2.StringVar(&pname, "name", "", "policy name: letters, digits, - and _ (required)")
	pf2.StringVar(&pdesc, "description", "", "what the policy is for")
	pf2.StringVar(&prules, "rules", "", "the rules, or @FILE to read them from a file (@- for stdin)")
	policy.AddCommand(policyCreate)

	var (
		tnames, tids []string
		tdesc        string
		tttl         time.Duration
		tlocal       bool
	)
	token := &cobra.Command{Use: "token", Short: "Create tokens"}
	tokenCreate := &cobra.Command{
		Use:   "create -policy-name NAME [-policy-name NAME...] [-description D] [-expires-ttl D]",
		Short: "Create a token linked to policies; its SecretID is shown once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			if tttl < 0 {
				return usageError{fmt.Errorf("-expires-ttl %s: must be positive", tttl)}
			}
			t := &consulapi.ACLToken{Description: tdesc, Local: tlocal, ExpirationTTL: tttl}
			for _, n := range tnames {
				t.Policies = append(t.Policies, &consulapi.ACLTokenPolicyLink{Name: n})
			}
			for _, id := range tids {
				t.Policies = append(t.Policies, &consulapi.ACLTokenPolicyLink{ID: id})
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			tok, _, err := c.ACL().TokenCreate(t, nil)
			if err != nil {
				return fmt.Errorf("create token: %w", err)
			}
			return printToken(cmd.OutOrStdout(), o.format, tok)
		},
	}
	tf := tokenCreate.Flags()
	tf.StringSliceVar(&tnames, "policy-name", nil, "name of a policy to link (repeatable)")
	tf.StringSliceVar(&tids, "policy-id", nil, "ID of a policy to link (repeatable)")
	tf.StringVar(&tdesc, "description", "", "what the token is for (say, the node it is given to)")
	tf.DurationVar(&tttl, "expires-ttl", 0, "the token expires this long after its creation (0: never)")
	tf.BoolVar(&tlocal, "local", false, "mark the token local to this datacenter (Consul's Local; kvx has one datacenter)")
	token.AddCommand(tokenCreate)

	cmd.AddCommand(bootstrap, policy, token)
	return cmd
}

// readRules returns -rules: the text itself, or a file's (@FILE, @- for
// stdin), and what to call it in an error.
func readRules(arg string) (string, string, error) {
	name, ok := strings.CutPrefix(arg, "@")
	if !ok {
		return arg, "-rules", nil
	}
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return "", "", fmt.Errorf("-rules %s: %w", arg, err)
	}
	return string(b), name, nil
}

// printToken prints a token as consul acl does.
func printToken(w io.Writer, format string, t *consulapi.ACLToken) error {
	if format == "json" {
		printJSON(w, t)
		return nil
	}
	fmt.Fprintf(w, "AccessorID:       %s\nSecretID:         %s\nDescription:      %s\nLocal:            %t\nCreate Time:      %s\n",
		t.AccessorID, t.SecretID, t.Description, t.Local, t.CreateTime)
	if t.ExpirationTime != nil {
		fmt.Fprintf(w, "Expiration Time:  %s\n", t.ExpirationTime)
	}
	if len(t.Policies) > 0 {
		fmt.Fprintln(w, "Policies:")
		for _, p := range t.Policies {
			fmt.Fprintf(w, "   %s - %s\n", p.ID, p.Name)
		}
	}
	return nil
}
