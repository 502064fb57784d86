package dns

import "github.com/miekg/dns"

// recurse forwards a query for a name outside the domain to the recursors
// in order and returns the first answer; REFUSED without recursors,
// SERVFAIL when none answers.
func (s *Server) recurse(req *dns.Msg, network string) *dns.Msg {
	if len(s.cfg.Recursors) == 0 {
		resp := new(dns.Msg)
		resp.SetRcode(req, dns.RcodeRefused)
		return resp
	}
	c := &dns.Client{Net: network, Timeout: s.cfg.RecursorTimeout}
	for _, r := range s.cfg.Recursors {
		in, _, err := c.Exchange(req, r)
		if err == nil {
			in.Id = req.Id
			in.Compress = true
			in.RecursionAvailable = true
			return in
		}
		s.logger.Warn("dns recursor failed", "recursor", r, "name", req.Question[0].Name, "err", err)
	}
	resp := new(dns.Msg)
	resp.SetRcode(req, dns.RcodeServerFailure)
	resp.RecursionAvailable = true
	return resp
}
