package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/xdpingest/xdpingest/internal/promtext"
	"github.com/xdpingest/xdpingest/internal/testbed"
	"github.com/xdpingest/xdpingest/internal/testutil"
)

// The files operators install (issue 13, points 4 and 5), relative to this
// package.
const (
	deployDir      = "../../deploy"
	dashboardFile  = deployDir + "/grafana/xdpingest.json"
	dashProvFile   = deployDir + "/grafana/provisioning/dashboards/xdpingest.yaml"
	dsProvFile     = deployDir + "/grafana/provisioning/datasources/xdpingest-prometheus.yaml"
	rulesFile      = deployDir + "/prometheus/xdpingest.rules.yml"
	rulesTestFile  = deployDir + "/prometheus/xdpingest.rules.test.yml"
	promConfigFile = deployDir + "/prometheus/prometheus.yml"
)

// query is one PromQL expression of the dashboard or the alert rules, with
// where it comes from for messages.
type query struct {
	where string // `panel "Received" A`, `alert XdpingestSinkDown #1`
	expr  string
	alert string // the alert's name; empty for the dashboard
	event bool   // an annotation's: data only when something happens
}

// dashboard is the part of Grafana's dashboard model the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name       string         `json:"name"`
			Expr       string         `json:"expr"`
			Datasource *datasourceRef `json:"datasource"`
		} `json:"list"`
	} `json:"annotations"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasourceRef           `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Panels     []panel                  `json:"panels"` // a collapsed row's
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &d
}

// allPanels returns the panels, those inside collapsed rows included.
func (d *dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// labelValues matches a query variable's label_values(SELECTOR, LABEL).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// queries returns every PromQL expression of the dashboard: the panels'
// targets, the annotations' and the selectors of the query variables.
func (d *dashboard) queries(t *testing.T) []query {
	t.Helper()
	var out []query
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			out = append(out, query{where: fmt.Sprintf("panel %q %s", p.Title, tg.RefID), expr: tg.Expr})
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out = append(out, query{where: fmt.Sprintf("annotation %q", a.Name), expr: a.Expr, event: true})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: query: %v", v.Name, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(SELECTOR, LABEL)", v.Name, q.Query)
		}
		out = append(out, query{where: fmt.Sprintf("variable %s", v.Name), expr: m[1]})
	}
	return out
}

// ruleGroups is a Prometheus rule file.
type ruleGroups struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Record      string            `yaml:"record,omitempty"`
	Alert       string            `yaml:"alert,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// alertQueries returns the expression of every alert in the rule file.
func alertQueries(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rg ruleGroups
	if err := yaml.Unmarshal(raw, &rg); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var out []query
	n := map[string]int{}
	for _, g := range rg.Groups {
		for _, r := range g.Rules {
			n[r.Alert]++
			out = append(out, query{where: fmt.Sprintf("alert %s #%d", r.Alert, n[r.Alert]), expr: r.Expr, alert: r.Alert})
		}
	}
	return out
}

// dashboardVars are what the dashboard's variables become in the checks:
// every job and instance, and a rate window of four 15 s scrapes (what
// Grafana's $__rate_interval is with the data source's 15 s interval).
var dashboardVars = strings.NewReplacer(`$job`, `.+`, `$instance`, `.+`, `$__rate_interval`, `1m`)

// concrete returns expr with the dashboard's variables replaced.
func concrete(t *testing.T, q query) string {
	t.Helper()
	e := dashboardVars.Replace(q.expr)
	if strings.Contains(e, "$") {
		t.Errorf("%s: a variable the checks don't know: %s", q.where, q.expr)
	}
	return e
}

// metricName finds the metric names in an expression: ours, and the Go
// and process collectors'. Prometheus' own `up` is the only other one the
// files use.
var metricName = regexp.MustCompile(`\b(?:xdpingest|go|process)_[a-zA-Z0-9_]+`)

// promtool runs promtool with args in dir and returns its output.
func promtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testutil.RequireProgram(t, "promtool"), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Issue 13, points 4 and 5: the rule file passes promtool check rules and
// its unit tests, the example Prometheus config (which loads it) passes
// check config, the dashboard is one Grafana imports, with every query
// bound to the data source, job and instance variables, and the
// provisioning files point where the docs say.
func TestDeployFiles(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join(deployDir, "prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "rules", filepath.Base(rulesFile)},
		{"test", "rules", filepath.Base(rulesTestFile)},
		{"check", "config", filepath.Base(promConfigFile)},
	} {
		out, err := promtool(t, dir, args...)
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	d := loadDashboard(t)
	if d.UID != "xdpingest" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("dashboard: uid %q, title %q, schemaVersion %d: want uid xdpingest, a title, schemaVersion 36 or later (Grafana 9.3+)", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s: data source %+v, want ${datasource}", v.Name, v.Datasource)
		}
	}
	if vars["datasource"] != "datasource" || vars["job"] != "query" || vars["instance"] != "query" {
		t.Errorf("templating: %v; want a datasource variable and query variables job and instance", vars)
	}
	ids := map[int]string{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range d.allPanels() {
		if other, ok := ids[p.ID]; ok || p.ID == 0 {
			t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, other)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside Grafana's 24 columns", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panel %q overlaps %q at %d,%d", p.Title, other, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %+v and %d targets; want ${datasource} and a query", p.Title, p.Datasource, len(p.Targets))
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] || tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: target %s: an expression, a refId of its own and the ${datasource} data source wanted", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
	// Every series a query reads is the chosen job's and instance's.
	bound := regexp.MustCompile(`^\{job=~"\$job", instance=~"\$instance"[,}]`)
	for _, q := range d.queries(t) {
		for _, loc := range metricName.FindAllStringIndex(q.expr, -1) {
			if !bound.MatchString(q.expr[loc[1]:]) && !strings.HasPrefix(q.where, "variable") {
				t.Errorf("%s: %s is not filtered by job and instance: %s", q.where, q.expr[loc[0]:loc[1]], q.expr)
			}
		}
	}

	var prov struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Type    string
			Options struct{ Path string }
		}
	}
	readYAML(t, dashProvFile, &prov)
	if prov.APIVersion != 1 || len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path != "/var/lib/grafana/dashboards/xdpingest" {
		t.Errorf("%s: %+v; want apiVersion 1 and one file provider reading /var/lib/grafana/dashboards/xdpingest (docs/OPERATIONS.md)", dashProvFile, prov)
	}
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct{ Type, URL string }
	}
	readYAML(t, dsProvFile, &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL == "" {
		t.Errorf("%s: %+v; want apiVersion 1 and one prometheus data source with a URL", dsProvFile, ds)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// Issue 13, points 4 and 5: every query of the dashboard and every alert
// expression parses (promtool check rules, each as a recording rule) and
// names only metrics a running server exposes; evaluated by promtool over
// that server's own scrapes (before, during and after traffic through two
// AF_XDP queues, the kernel sockets and two sinks, one routed by port),
// every dashboard query returns data, the identity panels read zero once
// traffic has settled, and no alert fires; the identity alerts do fire
// over the same scrapes with one receive counter off by 100,000.
func TestDeployQueries(t *testing.T) {
	testutil.RequireBPF(t)
	testutil.RequireProgram(t, "promtool")
	b := testutil.NewBed(t, testbed.Config{Queues: 2})
	srv := startServer(t, b, "--ports", "9000,9001", "--sink", "discard", "--sink", "pcap:"+t.TempDir()+"?ports=9000")

	scrapes := []promtext.Samples{srv.scrape()}
	conns := []io.Writer{
		udpConn(t, b, netip.AddrPortFrom(b.Rx.IPv4, 9000)),
		udpConn(t, b, netip.AddrPortFrom(b.Rx.IPv6, 9001)),
	}
	var sent uint64
	for range 6 {
		// 400 datagrams, then wait for them: paced so that nothing is lost
		// on a busy machine, and the loss alerts have nothing to see.
		for range 400 {
			if _, err := conns[sent%2].Write(marked(sent, 100)); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		testutil.MustWaitFor(t, 10*time.Second, fmt.Sprintf("%d datagrams received", sent), func() bool {
			return srv.scrape().Sum("xdpingest_rx_packets_total") >= float64(sent)
		})
		scrapes = append(scrapes, srv.scrape())
	}
	lastTraffic := len(scrapes) - 1
	// Settled: nothing more arrives and nothing is in flight. (waitQuiet's
	// identity leaves out sink_other_ports_total, which the routed sink
	// counts.)
	var quiet promtext.Samples
	prev := -1.0
	testutil.MustWaitFor(t, 10*time.Second, "traffic settled", func() bool {
		quiet = srv.scrape()
		rx := quiet.Sum("xdpingest_rx_packets_total")
		settled := rx == prev && quiet.Sum("xdpingest_sink_in_flight") == 0
		prev = rx
		if !settled {
			time.Sleep(300 * time.Millisecond)
		}
		return settled
	})
	if err := afxdpIdentityErr(quiet); err != nil {
		t.Fatalf("the server's own accounting: %v", err)
	}
	scrapes = append(scrapes, quiet, srv.scrape(), srv.scrape())
	last := scrapes[len(scrapes)-1]
	if sum(last, "xdpingest_sink_other_ports_total") == 0 || sum(last, "xdpingest_rx_packets_total", `path="afxdp"`) < float64(sent) {
		t.Fatalf("the traffic did not go where the checks need it (two AF_XDP queues, a routed sink):\n%s", dump(last))
	}
	lossless := sum(last, "xdpingest_afxdp_rx_ring_full_total")+sum(last, "xdpingest_afxdp_rx_dropped_total")+
		sum(last, "xdpingest_kernel_socket_overflows_total")+sum(last, "xdpingest_sink_dropped_total") == 0

	d := loadDashboard(t)
	dash, alerts := d.queries(t), alertQueries(t)
	if len(dash) < 20 || len(alerts) < 10 {
		t.Fatalf("%d dashboard queries and %d alert expressions: the files were not read", len(dash), len(alerts))
	}

	// Names: every metric a query names is on the scrape.
	names := map[string]bool{}
	for k := range last {
		n, _, _ := strings.Cut(k, "{")
		names[n] = true
	}
	named := map[string]bool{}
	for _, q := range append(slices.Clone(dash), alerts...) {
		for _, n := range metricName.FindAllString(q.expr, -1) {
			named[n] = true
			if !names[n] {
				t.Errorf("%s names %s, which the server does not expose", q.where, n)
			}
		}
	}
	if len(named) < 20 {
		t.Errorf("the queries name only %d metrics: %v", len(named), named)
	}

	// Parsing: each expression as a recording rule, for promtool check
	// rules.
	dir := t.TempDir()
	var rules []rule
	record := func(i int) string { return fmt.Sprintf("xdpingest_check:q%d", i) }
	all := append(slices.Clone(dash), alerts...)
	index := map[string]string{}
	for i, q := range all {
		rules = append(rules, rule{Record: record(i), Expr: concrete(t, q)})
		index[record(i)] = q.where + ": " + q.expr
	}
	writeYAML(t, filepath.Join(dir, "queries.rules.yml"), map[string]any{"groups": []map[string]any{{"name": "xdpingest_check", "rules": rules}}})
	if out, err := promtool(t, dir, "check", "rules", "queries.rules.yml"); err != nil {
		t.Fatalf("promtool check rules on the queries: %v\n%s\n%s", err, out, describe(index, out))
	}

	// Evaluation over the scrapes, 15 s apart.
	step := 15 * time.Second
	at := func(i int) string { return (time.Duration(i) * step).String() }
	var exprTests []map[string]any
	expect := func(expr string, when int, samples []map[string]any) {
		exprTests = append(exprTests, map[string]any{"expr": expr, "eval_time": at(when), "exp_samples": samples})
	}
	nonEmpty := func(rec string, when int) { expect("absent("+rec+")", when, []map[string]any{}) }
	empty := func(expr string, when int) { expect(expr, when, []map[string]any{}) }
	for i, q := range all {
		rec := record(i)
		switch {
		case q.event:
			// No reloads, no annotations.
			empty(rec, len(scrapes)-1)
		case q.alert == "":
			nonEmpty(rec, lastTraffic)
			nonEmpty(rec, len(scrapes)-1)
			if strings.HasPrefix(q.where, `panel "Identity`) {
				empty(rec+" != 0", len(scrapes)-1)
			}
		case strings.HasSuffix(q.alert, "Loss") && !lossless:
			t.Logf("the bed lost datagrams: %s not checked over the scrapes", q.where)
		default:
			for j := range scrapes {
				empty(rec, j)
			}
		}
	}
	input := seriesOf(scrapes)
	writeYAML(t, filepath.Join(dir, "queries.test.yml"), map[string]any{
		"rule_files":          []string{"queries.rules.yml"},
		"evaluation_interval": step.String(),
		"tests": []map[string]any{{
			"interval":         step.String(),
			"input_series":     input,
			"promql_expr_test": exprTests,
		}},
	})
	if out, err := promtool(t, dir, "test", "rules", "queries.test.yml"); err != nil {
		t.Errorf("promtool test rules over the server's scrapes: %v\n%s\n%s", err, out, describe(index, out))
	}

	// The identity alerts see a broken identity: one AF_XDP queue's
	// received counter 100,000 high from the second scrape on.
	broken := make([]promtext.Samples, len(scrapes))
	key := ""
	for k := range last {
		if strings.HasPrefix(k, "xdpingest_rx_packets_total{") && strings.Contains(k, `path="afxdp"`) {
			key = k
			break
		}
	}
	for i, s := range scrapes {
		broken[i] = maps.Clone(s)
		if i > 0 {
			broken[i][key] += 100000
		}
	}
	exprTests = nil
	for i, q := range all {
		if strings.HasSuffix(q.alert, "IdentityBroken") {
			nonEmpty(record(i), len(scrapes)-1)
		}
	}
	if len(exprTests) != 2 {
		t.Fatalf("%d identity alerts, want XdpingestSinkIdentityBroken and XdpingestAFXDPIdentityBroken", len(exprTests))
	}
	writeYAML(t, filepath.Join(dir, "broken.test.yml"), map[string]any{
		"rule_files":          []string{"queries.rules.yml"},
		"evaluation_interval": step.String(),
		"tests": []map[string]any{{
			"interval":         step.String(),
			"input_series":     seriesOf(broken),
			"promql_expr_test": exprTests,
		}},
	})
	if out, err := promtool(t, dir, "test", "rules", "broken.test.yml"); err != nil {
		t.Errorf("promtool test rules with %s 100,000 high: the identity alerts stay quiet: %v\n%s\n%s", key, err, out, describe(index, out))
	}
}

// seriesOf turns scrapes into promtool's input series, one value a scrape
// ("_" where a series is missing), with the labels Prometheus adds to a
// target's series.
func seriesOf(scrapes []promtext.Samples) []map[string]string {
	keys := map[string]bool{}
	for _, s := range scrapes {
		for k := range s {
			keys[k] = true
		}
	}
	var out []map[string]string
	for k := range keys {
		name, labels, err := promtext.SplitKey(k)
		if err != nil {
			continue
		}
		labels["instance"], labels["job"] = "bed:9109", "xdpingest"
		lk := make([]string, 0, len(labels))
		for l := range labels {
			lk = append(lk, l)
		}
		sort.Strings(lk)
		parts := make([]string, len(lk))
		for i, l := range lk {
			parts[i] = l + "=" + strconv.Quote(labels[l])
		}
		vals := make([]string, len(scrapes))
		for i, s := range scrapes {
			if v, ok := s[k]; ok {
				vals[i] = strconv.FormatFloat(v, 'g', -1, 64)
			} else {
				vals[i] = "_"
			}
		}
		out = append(out, map[string]string{"series": name + "{" + strings.Join(parts, ", ") + "}", "values": strings.Join(vals, " ")})
	}
	sort.Slice(out, func(i, j int) bool { return out[i]["series"] < out[j]["series"] })
	return out
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// describe lists the recording rules that promtool's output names with
// the query each holds: its messages name only the rule.
func describe(index map[string]string, out string) string {
	var lines []string
	for rec, q := range index {
		if regexp.MustCompile(regexp.QuoteMeta(rec) + `\b`).MatchString(out) {
			lines = append(lines, rec+" = "+q)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
