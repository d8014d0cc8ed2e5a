// Package promtext reads the Prometheus text exposition format as far as
// xdpingest's own tools need: the samples of a /metrics page by their
// "name{labels}" key, and sums over the series of one metric. The end-to-end
// tests, the demo and pktbench read the server's metrics with it.
package promtext

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Samples maps "name{labels}" (as the page writes it) to its value.
type Samples map[string]float64

// Parse reads a text-format page. Comments, blank lines and lines without
// a number are skipped.
func Parse(r io.Reader) (Samples, error) {
	out := Samples{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// Get fetches and parses url with c.
func Get(c *http.Client, url string) (Samples, error) {
	return GetContext(context.Background(), c, url)
}

// GetContext fetches and parses url with c; ctx bounds the request.
func GetContext(ctx context.Context, c *http.Client, url string) (Samples, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return Parse(resp.Body)
}

// Sum adds the series of metric name whose labels contain every one of
// labels (each written as on the page: `outcome="redirect"`).
func (s Samples) Sum(name string, labels ...string) float64 {
	var t float64
	for k, v := range s {
		n, l, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, want := range labels {
			ok = ok && strings.Contains(l, want)
		}
		if ok {
			t += v
		}
	}
	return t
}

// Series is one sample of a metric: its labels and value.
type Series struct {
	Labels map[string]string
	Value  float64
}

// Series returns the samples of metric name with their labels, in no
// particular order. Keys whose labels don't parse are left out.
func (s Samples) Series(name string) []Series {
	var out []Series
	for k, v := range s {
		if !strings.HasPrefix(k, name) || (len(k) > len(name) && k[len(name)] != '{') {
			continue
		}
		n, labels, err := SplitKey(k)
		if err != nil || n != name {
			continue
		}
		out = append(out, Series{Labels: labels, Value: v})
	}
	return out
}

// SplitKey splits a "name{labels}" key, as Parse stores it, into the
// metric's name and its labels, with the values unescaped (\\, \" and \n,
// as the text format escapes them). A key without labels has none.
func SplitKey(key string) (name string, labels map[string]string, err error) {
	name, rest, ok := strings.Cut(key, "{")
	labels = map[string]string{}
	if !ok {
		return name, labels, nil
	}
	for {
		rest = strings.TrimLeft(rest, " ,")
		if strings.HasPrefix(rest, "}") {
			if rest != "}" {
				return name, nil, fmt.Errorf("%q: text after the labels", key)
			}
			return name, labels, nil
		}
		l, after, ok := strings.Cut(rest, "=")
		if !ok || !strings.HasPrefix(after, `"`) {
			return name, nil, fmt.Errorf("%q: a label without a quoted value", key)
		}
		var v strings.Builder
		i := 1
		for ; i < len(after) && after[i] != '"'; i++ {
			c := after[i]
			if c == '\\' && i+1 < len(after) {
				i++
				switch c = after[i]; c {
				case 'n':
					c = '\n'
				case '\\', '"':
				default:
					v.WriteByte('\\')
				}
			}
			v.WriteByte(c)
		}
		if i >= len(after) {
			return name, nil, fmt.Errorf("%q: an unterminated label value", key)
		}
		labels[strings.TrimSpace(l)] = v.String()
		rest = after[i+1:]
	}
}
