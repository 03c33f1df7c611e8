package events

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/bohica-labs/darkshell/protocol"
)

// fill sets every field of the struct v points to (found by reflection,
// so a field added to protocol.Event is covered) to a non-zero value made
// from s and n.
func fill(t testing.TB, v reflect.Value, s string, n int64) {
	t.Helper()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(s + v.Type().Field(i).Name)
		case reflect.Int, reflect.Int64, reflect.Int32:
			f.SetInt(n + int64(i))
		case reflect.Uint64, reflect.Uint32:
			f.SetUint(uint64(n) + uint64(i))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{s, "", "b"}))
		case reflect.Pointer:
			p := reflect.New(f.Type().Elem())
			if p.Elem().Kind() == reflect.Struct {
				fill(t, p.Elem(), s, n)
			} else {
				p.Elem().SetInt(n - int64(i))
			}
			f.Set(p)
		case reflect.Struct:
			if f.Type() != reflect.TypeFor[time.Time]() {
				t.Fatalf("field %s: a struct the test cannot fill", v.Type().Field(i).Name)
			}
			f.Set(reflect.ValueOf(time.Unix(n, n%1e9).In(time.FixedZone("x", 3600))))
		default:
			t.Fatalf("field %s of kind %s: teach AppendEvent and this test about it", v.Type().Field(i).Name, f.Kind())
		}
	}
}

func checkAppendEvent(t testing.TB, e *protocol.Event) {
	t.Helper()
	want, werr := json.Marshal(e)
	got, gerr := AppendEvent([]byte("prefix"), e)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("errors differ: json.Marshal %v, AppendEvent %v", werr, gerr)
	}
	if werr != nil {
		if string(got) != "prefix" {
			t.Fatalf("failed AppendEvent left %q", got)
		}
		return
	}
	if !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("AppendEvent differs from json.Marshal:\n got %s\nwant prefix%s", got, want)
	}
}

// TestAppendEventMatchesMarshal: every field set, each field alone (its
// omitempty), odd strings and times, and a time json.Marshal refuses.
func TestAppendEventMatchesMarshal(t *testing.T) {
	for _, s := range []string{"plain", "a<b>&\"q\"\\ \x01\t\n\u2028 é \xff"} {
		var e protocol.Event
		fill(t, reflect.ValueOf(&e).Elem(), s, 1700000000)
		checkAppendEvent(t, &e)
		// Each field alone.
		v := reflect.ValueOf(&e).Elem()
		for i := range v.NumField() {
			var one protocol.Event
			reflect.ValueOf(&one).Elem().Field(i).Set(v.Field(i))
			checkAppendEvent(t, &one)
		}
	}
	checkAppendEvent(t, &protocol.Event{})
	checkAppendEvent(t, &protocol.Event{Time: time.Now(), Argv: []string{}})
	checkAppendEvent(t, &protocol.Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	neg, zero := -1, 0
	checkAppendEvent(t, &protocol.Event{Time: time.Now(), UID: &zero, ExitCode: &neg, PID: -5, Inference: &protocol.Inference{}})
}

// FuzzAppendEvent holds AppendEvent to json.Marshal for arbitrary strings
// and numbers in every field.
func FuzzAppendEvent(f *testing.F) {
	f.Add("x", int64(1))
	f.Add("<\xff\u2028", int64(-1<<40))
	f.Fuzz(func(t *testing.T, s string, n int64) {
		var e protocol.Event
		fill(t, reflect.ValueOf(&e).Elem(), s, n)
		checkAppendEvent(t, &e)
	})
}
