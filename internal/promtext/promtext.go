// Package promtext reads the Prometheus text exposition format as far as
// xdpingest's own tools need: the samples of a /metrics page by their
// "name{labels}" key, and sums over the series of one metric. The end-to-end
// tests, the demo and pktbench read the server's metrics with it.
package promtext

import (
	"bufio"
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
	resp, err := c.Get(url)
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
