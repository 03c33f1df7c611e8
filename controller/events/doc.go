// Package events is the controller's side of the event streams: reading a
// sandboxd events stream (Stream), the daemon's event bus (Bus) that fans
// events out to bounded, non-blocking sinks, and the per-sandbox rotated
// host log (Log). Events flow one way: sandboxd sources -> Stream -> Bus
// -> sinks (API subscribers, the host log). A slow sink skips events and
// counts them; it never back-pressures a sandbox.
package events
