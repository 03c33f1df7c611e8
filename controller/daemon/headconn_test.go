package daemon

import (
	"net"
	"slices"
	"testing"
)

// writesConn records each Write as one element.
type writesConn struct {
	net.Conn
	writes [][]byte
	closed bool
}

func (c *writesConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, slices.Clone(p))
	return len(p), nil
}

func (c *writesConn) Close() error { c.closed = true; return nil }

// TestHeadConn: the 101 head rides in the same write as the first bytes,
// goes out alone on Write(nil) or on a Close with nothing written, and
// never twice.
func TestHeadConn(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(c *headConn)
		want []string
	}{
		{"with the first frame", func(c *headConn) {
			if n, err := c.Write([]byte("frame1")); n != 6 || err != nil {
				t.Errorf("Write = %d, %v; want 6, nil", n, err)
			}
			c.Write([]byte("frame2"))
			c.Close()
		}, []string{"HEAD|frame1", "frame2"}},
		{"alone on Write(nil)", func(c *headConn) {
			c.Write(nil)
			c.Write([]byte("frame1"))
			c.Close()
		}, []string{"HEAD|", "frame1"}},
		{"on Close with nothing written", func(c *headConn) { c.Close() }, []string{"HEAD|"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &writesConn{}
			tc.do(&headConn{Conn: w, head: []byte("HEAD|")})
			var got []string
			for _, b := range w.writes {
				got = append(got, string(b))
			}
			if !slices.Equal(got, tc.want) || !w.closed {
				t.Fatalf("writes %q closed %v; want %q closed", got, w.closed, tc.want)
			}
		})
	}
}
