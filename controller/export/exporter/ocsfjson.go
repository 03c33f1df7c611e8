package exporter

import (
	"encoding/json"
	"slices"
	"strconv"
)

// appendJSON appends v as encoding/json encodes it, for the values OCSF
// builds (maps of strings, integers and more maps): the same bytes as
// json.Marshal, map keys sorted, without its reflection on every map, which
// made the OCSF form the exporters' largest per-event cost. Values of
// other types (and strings that need escaping) go through json.Marshal.
// FuzzAppendJSON and TestAppendJSON hold it to json.Marshal.
func appendJSON(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...)
	case string:
		return appendJSONString(dst, v)
	case bool:
		return strconv.AppendBool(dst, v)
	case int:
		return strconv.AppendInt(dst, int64(v), 10)
	case int64:
		return strconv.AppendInt(dst, v, 10)
	case int32:
		return strconv.AppendInt(dst, int64(v), 10)
	case uint64:
		return strconv.AppendUint(dst, v, 10)
	case uint32:
		return strconv.AppendUint(dst, uint64(v), 10)
	case map[string]any:
		if v == nil {
			return append(dst, "null"...)
		}
		var arr [32]string
		keys := arr[:0]
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			dst = appendJSON(dst, v[k])
		}
		return append(dst, '}')
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own record types always encode
	}
	return append(dst, b...)
}

// appendJSONString appends s quoted as encoding/json quotes it: printable
// ASCII other than " \ < > & goes as it is; anything else through
// json.Marshal (escapes, HTML escaping, invalid UTF-8, U+2028/9).
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
