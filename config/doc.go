// Package config is the proxy.yaml schema of streamgate: its Go types,
// defaults, loading with line numbers, STREAMGATE_* environment overrides,
// and validation.
//
// Load (or Parse) decodes a file onto Default with yaml.v3 in strict mode
// (unknown keys are errors), applies environment overrides, and validates
// the result. Every problem is reported at once, as an Errors list of
// *FieldError values naming the file, line and dotted key path:
//
//	proxy.yaml:3: websocket.ping_intervall: unknown key "ping_intervall"
//	proxy.yaml:7: timeouts.shutdown: invalid duration "30": missing unit, e.g. "30s"
//	env STREAMGATE_LISTEN: listen: "8080" is not host:port (e.g. ":8080" or "127.0.0.1:8080")
//
// Environment overrides follow DESIGN.md: STREAMGATE_ and the key path
// upper-cased with its segments joined by "_", e.g.
// STREAMGATE_WEBSOCKET_PING_INTERVAL for websocket.ping_interval. The names
// are derived from the yaml tags of Config, so every scalar key and every
// list of strings (comma-separated) can be overridden; routes cannot.
//
// The package imports nothing of streamgate and holds no mutable state; a
// Config is a plain value that the proxy maps onto its own options.
package config
