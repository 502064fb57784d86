package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kvxproject/kvx/pkg/transport"
)

type keyOptions struct {
	common
	key, file, reason string
}

// simpleCmd builds a command over keyOptions; flags says which of -k, -f
// and -r it takes (all required but -r on freeze), and common which of the
// optional common flags.
func simpleCmd(use, short string, flags string, common int, run func(cmd *cobra.Command, s *session, o *keyOptions) error) *cobra.Command {
	o := &keyOptions{}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, name := range []string{"key", "file", "reason"} {
				if f := cmd.Flags().Lookup(name); f != nil && f.Annotations["required"] != nil {
					if err := required(cmd, name); err != nil {
						return err
					}
				}
			}
			if cmd.Flags().Lookup("key") != nil {
				if err := o.checkKey("-k", o.key); err != nil {
					return err
				}
			}
			if err := absFile(&o.file); err != nil {
				return err
			}
			s, err := o.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			return run(cmd, s, o)
		},
	}
	f := cmd.Flags()
	o.register(f, common)
	for _, c := range flags {
		switch c {
		case 'k':
			f.StringVarP(&o.key, "key", "k", "", "key name under the prefix (required)")
			f.SetAnnotation("key", "required", []string{"true"})
		case 'f':
			f.StringVarP(&o.file, "file", "f", "", "target file (required)")
			f.SetAnnotation("file", "required", []string{"true"})
		case 'r':
			f.StringVarP(&o.reason, "reason", "r", "", "why (required)")
			f.SetAnnotation("reason", "required", []string{"true"})
		case 'o':
			f.StringVarP(&o.reason, "reason", "r", "", "why (recorded with the freeze)")
		}
	}
	return cmd
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	if sum == "" {
		return "-"
	}
	return sum
}

func newStopCmd() *cobra.Command {
	return simpleCmd("stop", "Turn a key's fleet-wide stop switch on: in and out refuse until start", "kr", withPrefix|withNode|withDogstatsd,
		func(cmd *cobra.Command, s *session, o *keyOptions) error {
			if err := s.Stop(cmd.Context(), o.key, o.reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stopped %s/%s: %s\n", o.prefix, o.key, o.reason)
			if s.events != nil {
				s.events.Event("Set Stop Key: "+o.key, o.reason, "warning", "kvx:stop_set", "key:"+o.key, "host:"+s.Node)
			}
			return nil
		})
}

func newStartCmd() *cobra.Command {
	return simpleCmd("start", "Turn a key's stop switch off", "k", withPrefix|withNode|withDogstatsd,
		func(cmd *cobra.Command, s *session, o *keyOptions) error {
			if err := s.Start(cmd.Context(), o.key); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "started %s/%s\n", o.prefix, o.key)
			if s.events != nil {
				s.events.Event("Removed Stop Key: "+o.key, "deliveries resume", "info", "kvx:stop_removed", "key:"+o.key, "host:"+s.Node)
			}
			return nil
		})
}

func newFreezeCmd() *cobra.Command {
	return simpleCmd("freeze", "Stop deliveries to a file on this node only", "fo", withPrefix|withNode,
		func(cmd *cobra.Command, s *session, o *keyOptions) error {
			if err := s.Freeze(cmd.Context(), o.file, o.reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "froze %s on %s\n", o.file, s.Node)
			return nil
		})
}

func newUnfreezeCmd() *cobra.Command {
	return simpleCmd("unfreeze", "Let deliveries to a file on this node resume", "f", withPrefix|withNode,
		func(cmd *cobra.Command, s *session, o *keyOptions) error {
			if err := s.Unfreeze(cmd.Context(), o.file); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unfroze %s on %s\n", o.file, s.Node)
			return nil
		})
}

func newCopyCmd() *cobra.Command {
	o := &struct {
		common
		from, to, compress string
	}{}
	cmd := &cobra.Command{
		Use:   "copy",
		Short: "Copy a key's verified content to another key (same protocol: no re-upload, atomic)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := required(cmd, "from", "to"); err != nil {
				return err
			}
			if err := o.checkKey("-from", o.from); err != nil {
				return err
			}
			if err := o.checkKey("-to", o.to); err != nil {
				return err
			}
			codec, err := transport.ParseCodec(o.compress)
			if err != nil {
				return usageError{err}
			}
			s, err := o.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			content, err := s.Fetch(cmd.Context(), o.from)
			if err != nil {
				return refusal(err)
			}
			res, err := s.Push(cmd.Context(), transport.PushOptions{Key: o.to, Content: content, Codec: codec})
			if err != nil {
				return refusal(err)
			}
			verb := "copied"
			if !res.Uploaded {
				verb = "unchanged"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s to %s: %s\n", verb, o.from, o.to, res.Checksum)
			if res.Uploaded && s.events != nil {
				s.events.Event("Copy: "+o.from+" to "+o.to, "checksum "+res.Checksum, "info", "kvx:success", "key:"+o.to, "host:"+s.Node)
			}
			return nil
		},
	}
	f := cmd.Flags()
	o.register(f, withPrefix|withNode|withDogstatsd)
	f.StringVar(&o.from, "from", "", "source key (required)")
	f.StringVar(&o.to, "to", "", "destination key (required)")
	f.StringVarP(&o.compress, "compress", "z", "none", "store the copy compressed: gzip, zstd, brotli or none")
	return cmd
}

func newRawCmd() *cobra.Command {
	o := &struct {
		common
		target
	}{}
	cmd := &cobra.Command{
		Use:   "raw",
		Short: "Write one key's value to a file as it is (no checksum layout); only when it changed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, fo, err := o.target.open(cmd, &o.common)
			if err != nil {
				return err
			}
			defer s.close()
			return finish(cmd, s, s.Raw(cmd.Context(), transport.RawOptions{Key: o.key, Path: o.file, MinLines: o.minLines, File: fo, Command: o.exec, Timeout: o.execTimeout}))
		},
	}
	o.common.register(cmd.Flags(), withDogstatsd)
	o.target.register(cmd.Flags(), "full key, no prefix added (required)")
	return cmd
}
