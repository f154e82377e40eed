package jsonobj

import (
	"encoding/json"
	"math"
	"testing"
)

func TestFloat(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{math.Inf(1), `"+Inf"`}, {math.Inf(-1), `"-Inf"`}, {math.NaN(), `"NaN"`}, {1.5, `1.5`}, {0, `0`}, {-2e-300, `-2e-300`}} {
		got, err := json.Marshal(Float(tc.v))
		if err != nil || string(got) != tc.want {
			t.Errorf("%v: %s, %v; want %s", tc.v, got, err, tc.want)
		}
		var back Float
		if err := json.Unmarshal(got, &back); err != nil || !(float64(back) == tc.v || math.IsNaN(tc.v) && math.IsNaN(float64(back))) {
			t.Errorf("%s read back as %v, %v", got, back, err)
		}
	}
	var f Float
	if err := json.Unmarshal([]byte(`"infinity"`), &f); err == nil {
		t.Error(`"infinity" accepted`)
	}
}

func TestJoin(t *testing.T) {
	got, err := Join([]byte(`{"a":1,"t":8}`), []byte(` {} `), []byte(`{"t":32,"b":{"c":[1,2]}}`))
	if err != nil || string(got) != `{"a":1,"t":8,"b":{"c":[1,2]}}` {
		t.Errorf("%s, %v", got, err)
	}
	if _, err := Join([]byte(`[1]`)); err == nil {
		t.Error("an array joined")
	}
}
