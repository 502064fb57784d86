// Package httpd is a small HTTP/1.1 server for an ordinary http.Handler,
// built for many keep-alive connections that mostly wait (a fleet's
// blocking queries), with net/http's semantics and a lower cost per
// exchange.
//
// One goroutine per connection reads requests through a pooled
// bufio.Reader, parses the request line and headers by hand and runs the
// handler itself: no second goroutine and no hand-over per request (each
// hand-over woke a thread, the largest cost of a lone request on an idle
// server). A client that goes away while its bodyless request waits in
// its handler is noticed by the sweeper, which peeks at the socket of each
// such request once it is a second old, then whenever its age has doubled
// (at least once a minute; alive.go), and cancels its context on an end of
// file or an error: a blocking query whose client went away at once frees
// its handler within about two seconds. The bytes of a
// pipelined request wait in the socket until the answer is written. On
// Linux, a plain TCP or Unix connection (or one under a transparent
// wrapper) is read and written through syscall.RawConn with raw system
// calls on its non-blocking socket (rawio.go), without the runtime's
// blocking-call bookkeeping, which woke its monitor thread after every idle
// moment and moved a long write's processor to another thread. Timeouts cost no deadline per request: a
// connection notes when it entered its state (idle, reading headers) and
// one goroutine per server sweeps the connections a few times per timeout
// (timeouts.go).
//
// A response whose length is known when its handler writes it (the
// handler set Content-Length) goes out as the status line, the headers and
// the body in one writev, the body not copied. Without a Content-Length,
// up to 2 kB are gathered and sent with one computed when the handler
// returns; more (or a Flush) switch to chunked encoding, as net/http. The
// head follows net/http's rules byte for byte: sorted headers, Date
// (formatted once a second), Content-Type sniffed when the handler set
// none, Connection and keep-alive decisions, HEAD, 1xx/204/304 without a
// body, an unread request body drained up to 256 kB or the connection
// closed.
//
// Everything unusual is left to net/http: a request the fast parser does
// not take (malformed or oversized headers, Transfer-Encoding or Expect
// or Upgrade on a request, HTTP versions other than 1.0 and 1.1, an h2c
// preface, CONNECT, absolute-form targets, lines not ended by CRLF) hands
// its whole connection, the bytes already read replayed first, to an
// internal *http.Server with the same handler and timeouts, which answers
// it (400, 431, 417, 100 Continue...) and owns the connection from then on.
//
// Differences from net/http kept on purpose: no Hijack (Upgrade requests
// go to net/http, which can), no response trailers, no
// ResponseController.SetReadDeadline or EnableFullDuplex, header changes
// after WriteHeader but before the first body byte is written still reach
// the client, a client's departure cancels a request within about two
// seconds rather than at once, and not at all for a request with a body
// (only bodyless requests are watched) or on systems without MSG_PEEK, and
// http.MaxBytesReader cannot ask for the connection's close (its hook is
// unexported): a body left unread past 256 kB closes it anyway. A request
// handed to net/http over TLS sees no Request.TLS. A timeout fires up to an eighth of it late (at most
// a second). Request contexts carry no http.ServerContextKey or
// http.LocalAddrContextKey.
package httpd
