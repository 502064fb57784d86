// Package agent is `kvx agent`: the agent of one node of the fleet that is
// not a server. It keeps the node's services and checks (package local:
// from -config-dir, loaded by package config, and from /v1/agent/*), runs
// the checks (package checks), syncs them to the servers' catalog over
// HTTP, heartbeats to the servers so the leader knows the node is alive,
// and serves the whole Consul HTTP API on its own address: the /v1/agent/*
// endpoints itself, everything else forwarded to a server.
//
// # Servers
//
// The agent knows the servers by the HTTP addresses it was given (-join).
// Every call to a server (catalog writes and reads, heartbeats, forwarded
// requests) goes to the last server that answered, and moves on to the next
// when a server cannot be reached. A forwarded request is retried on the
// next server only when it was not sent (the connection failed), or when it
// is a GET or HEAD, which change nothing; a blocking query cut by its
// server's death is sent again to another server, which answers it anew.
//
// # Liveness
//
// Without gossip, as Nomad's clients: the agent PUTs /v1/kvx/heartbeat/:node
// at the interval the leader asks for (a third of its -node-timeout); the
// leader marks the node's serfHealth critical when they stop, and passing
// on the next one. A heartbeat refused because the node is unknown (the
// catalog lost it) makes the agent sync at once, which registers it again.
// On SIGTERM/SIGINT with LeaveOnTerminate the agent deregisters its node.
//
// # Listeners
//
// Everything the agent serves (HTTP today, DNS tomorrow) is a Listener
// added with Agent.Listen before Run; Run binds them all first (a port in
// use fails the start before the catalog is touched), then starts them
// and stops them together. A listener that reads the catalog uses
// Agent.Call, which has the servers' failover.
//
// # TLS
//
// The agent serves its API over HTTP, HTTPS or both, and calls https://
// servers with its CA and certificate, read again on SIGHUP for the next
// handshake (tls.go); its HTTP servers are hardened as a server's
// (harden.go).
//
// This package must not import raft or the server: it reaches servers only
// through their HTTP API (consul/api clients made by package client).
package agent
