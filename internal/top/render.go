package top

import (
	"cmp"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Layout is the space Render may fill.
type Layout struct {
	// Width in columns. The view is laid out for 80; a wider terminal gives
	// sink names more room, a narrower one gets its lines cut.
	Width int
	// Height in rows; 0 for as many as the view needs (plain output). When
	// the queues and sinks don't fit, the view lists the first ones and
	// says how many more there are.
	Height int
}

// MinWidth is the width the view is laid out for.
const MinWidth = 80

// XDP outcomes worth a place in the view, in the order shown: where
// matches went, then what the program refused or could not parse. The
// outcomes for frames that aren't ours (other ports, TCP, ICMP, ARP, other
// L3 and L4) are summed as "not_ours".
var (
	shownOutcomes = []string{"pass_match", "no_socket", "fragment", "ipv6_ext", "oversize", "deny", "not_allowed", "drop_mode", "malformed", "truncated", "vlan_depth"}
	notOurs       = []string{"other_port", "tcp", "icmp", "arp", "other_l3", "other_l4"}
	// The socket filter's refusals (its other outcome is "accepted").
	filterRefusals = []string{"denied", "not_allowed", "unreadable", "other_iface"}
)

// view computes rates between two snapshots.
type view struct {
	prev, cur *Snapshot
	dt        float64 // seconds; 0 when there are no rates yet
}

func newView(prev, cur *Snapshot) view {
	v := view{cur: cur}
	// A changed start time means the server restarted: its counters did too.
	if prev != nil && prev.Started == cur.Started && cur.At.After(prev.At) {
		v.prev, v.dt = prev, cur.At.Sub(prev.At).Seconds()
	}
	return v
}

// rate is the per-second increase from was to is; NaN without rates. A
// counter that went backwards restarted from zero.
func (v view) rate(was, is float64, known bool) float64 {
	if v.dt == 0 || !known {
		return math.NaN()
	}
	d := is - was
	if d < 0 {
		d = is
	}
	return d / v.dt
}

func (v view) queue(q Queue) (Queue, bool) {
	if v.prev == nil {
		return Queue{}, false
	}
	i := slices.IndexFunc(v.prev.Queues, func(p Queue) bool { return p.key() == q.key() })
	if i < 0 {
		return Queue{}, false
	}
	return v.prev.Queues[i], true
}

func (v view) sink(name string) (Sink, bool) {
	if v.prev == nil {
		return Sink{}, false
	}
	i := slices.IndexFunc(v.prev.Sinks, func(p Sink) bool { return p.Name == name })
	if i < 0 {
		return Sink{}, false
	}
	return v.prev.Sinks[i], true
}

// Render lays out cur, with rates from prev (nil before the second
// scrape: rates show as "-"), as read from src (the address shown).
func Render(prev, cur *Snapshot, src string, l Layout) []string {
	v := newView(prev, cur)
	width := max(l.Width, 1)
	var head, queues, xdpLines, sinks, tail []string

	// The header: what we're looking at and how it runs.
	up := "-"
	if cur.Started > 0 {
		up = duration(time.Duration((float64(cur.At.UnixNano())/1e9 - cur.Started) * float64(time.Second)))
	}
	cpu := "-"
	if v.dt > 0 {
		cpu = fmt.Sprintf("%.0f%%", max(cur.CPU-v.prev.CPU, 0)/v.dt*100)
	}
	rest := fmt.Sprintf("  up %s  cpu %s  %s", up, cpu, cur.At.Format(time.TimeOnly))
	first := "xdpingest " + cur.Version + "  "
	head = append(head, first+abbrev(src, width-len(first)-len(rest))+rest)
	var paths, xdpModes, xskModes []string
	for _, q := range cur.Queues {
		paths = appendNew(paths, q.Path)
		xdpModes = appendNew(xdpModes, q.XDPMode)
		if q.AFXDPMode != "-" {
			xskModes = appendNew(xskModes, q.AFXDPMode)
		}
	}
	mode := "path " + orDash(strings.Join(paths, "+")) + "  xdp " + orDash(strings.Join(xdpModes, ","))
	if len(xskModes) > 0 {
		mode += "  afxdp " + strings.Join(xskModes, ",")
	}
	head = append(head, mode+"  (rates per second)", "")

	// Receive queues.
	qcols := []column{{"QUEUE", 9, true}, {"pkt/s", 6, false}, {"bit/s", 6, false}, {"ring_full", 9, false}, {"rx_dropped", 10, false}, {"overflows", 9, false}, {"malformed", 9, false}}
	queues = append(queues, "RECEIVE  delivered by each queue (bit/s: UDP payload) and drops by reason")
	queues = append(queues, header(qcols))
	var all [6]float64
	var has [6]bool
	for _, q := range cur.Queues {
		p, ok := v.queue(q)
		r := [6]float64{
			v.rate(p.Packets, q.Packets, ok),
			8 * v.rate(p.Bytes, q.Bytes, ok),
			v.rate(p.RingFull, q.RingFull, ok),
			v.rate(p.RxDropped, q.RxDropped, ok),
			v.rate(p.Overflows, q.Overflows, ok),
			v.rate(p.Malformed, q.Malformed, ok),
		}
		applies := [6]bool{true, true, q.Path == "afxdp", q.Path == "afxdp", q.Path == "kernel", true}
		cells := []string{q.Path + " " + q.ID}
		for i := range r {
			if !applies[i] {
				cells = append(cells, "-")
				continue
			}
			cells = append(cells, si(r[i]))
			all[i] += r[i]
			has[i] = true
		}
		queues = append(queues, row(qcols, cells))
	}
	if len(cur.Queues) == 0 {
		queues = append(queues, "  no receivers")
	}
	totalCells := []string{"all"}
	for i := range all {
		if !has[i] {
			totalCells = append(totalCells, "-")
			continue
		}
		totalCells = append(totalCells, si(all[i]))
	}
	queueTotal := row(qcols, totalCells)

	// The XDP program.
	if cur.XDP == nil {
		xdpLines = append(xdpLines, "XDP      no program (the kernel socket path without XDP)")
	} else {
		var seen, seenBytes, wasSeen, wasBytes float64
		for o, c := range cur.XDP {
			seen += c.Packets
			seenBytes += c.Bytes
			if v.prev != nil {
				wasSeen += v.prev.XDP[o].Packets
				wasBytes += v.prev.XDP[o].Bytes
			}
		}
		known := v.prev != nil && v.prev.XDP != nil
		xdpLines = append(xdpLines, fmt.Sprintf("XDP      %s frames/s seen, %s bit/s of Ethernet frames", si(v.rate(wasSeen, seen, known)), si(8*v.rate(wasBytes, seenBytes, known))))
		outcome := func(name string) (rate, total float64) {
			var p float64
			if known {
				p = v.prev.XDP[name].Packets
			}
			return v.rate(p, cur.XDP[name].Packets, known), cur.XDP[name].Packets
		}
		r, _ := outcome("redirect")
		items := []string{"redirect " + si(r)}
		for _, o := range shownOutcomes {
			if r, total := outcome(o); total > 0 {
				items = append(items, o+" "+si(r))
			}
		}
		for _, o := range filterRefusals {
			total := cur.Filter[o]
			if total > 0 {
				var p float64
				ok := v.prev != nil && v.prev.Filter != nil
				if ok {
					p = v.prev.Filter[o]
				}
				items = append(items, "socket_"+o+" "+si(v.rate(p, total, ok)))
			}
		}
		var nr float64
		for _, o := range notOurs {
			r, _ := outcome(o)
			nr += r
		}
		items = append(items, "not_ours "+si(nr))
		xdpLines = append(xdpLines, wrap("         ", items, width, 2, "  ")...)
	}

	// Sinks.
	nameWidth := 4
	for _, s := range cur.Sinks {
		nameWidth = max(nameWidth, utf8.RuneCountInString(s.Name))
	}
	// The numbers take 5+5+9+4 columns (si writes at most 5) and 2 between
	// each; drops get 28 at least (two reasons), the name what is left.
	fixed := 5 + 5 + 9 + 4 + 5*2
	nameWidth = max(min(nameWidth, max(width, MinWidth)-fixed-28), 8)
	scols := []column{{"SINK", nameWidth, true}, {"pkt/s", 5, false}, {"bit/s", 5, false}, {"in_flight", 9, false}, {"conn", 4, true}, {"drops/s by reason", 0, true}}
	dropWidth := max(width, MinWidth) - nameWidth - fixed
	sinks = append(sinks, "SINKS    written (bit/s: UDP payload), queued or inside, connected, drops")
	sinks = append(sinks, header(scols))
	for _, s := range cur.Sinks {
		p, ok := v.sink(s.Name)
		conn := "up"
		if !s.Connected {
			conn = "DOWN"
		}
		type reason struct {
			name string
			rate float64
		}
		var reasons []reason
		for name, n := range s.Dropped {
			if r := v.rate(p.Dropped[name], n, ok); r > 0 {
				reasons = append(reasons, reason{name, r})
			}
		}
		slices.SortFunc(reasons, func(a, b reason) int { return cmp.Or(cmp.Compare(b.rate, a.rate), cmp.Compare(a.name, b.name)) })
		drops := "0"
		if !ok || v.dt == 0 {
			drops = "-"
		}
		if len(reasons) > 0 {
			var parts []string
			for _, r := range reasons {
				parts = append(parts, r.name+" "+si(r.rate))
			}
			drops = wrap("", parts, dropWidth, 1, ", ")[0]
		}
		sinks = append(sinks, row(scols, []string{abbrev(s.Name, nameWidth), si(v.rate(p.Written, s.Written, ok)), si(8 * v.rate(p.Bytes, s.Bytes, ok)), count(s.InFlight), conn, drops}))
	}
	if len(cur.Sinks) == 0 {
		sinks = append(sinks, "  no sinks")
	}

	// What was lost since the server started.
	var lost []string
	var q [4]float64
	for _, x := range cur.Queues {
		q[0] += x.RingFull
		q[1] += x.RxDropped
		q[2] += x.Overflows
		q[3] += x.Malformed
	}
	for i, name := range []string{"ring_full", "rx_dropped", "overflows", "malformed"} {
		if q[i] > 0 {
			lost = append(lost, name+" "+count(q[i]))
		}
	}
	bySink := map[string]float64{}
	for _, s := range cur.Sinks {
		for r, n := range s.Dropped {
			bySink[r] += n
		}
	}
	var sinkLost []string
	for _, r := range sortedKeys(bySink) {
		if bySink[r] > 0 {
			sinkLost = append(sinkLost, r+" "+count(bySink[r]))
		}
	}
	switch {
	case len(lost) == 0 && len(sinkLost) == 0:
		tail = append(tail, "since start: nothing dropped")
	case len(sinkLost) == 0:
		tail = append(tail, "since start, dropped: "+strings.Join(lost, ", "))
	default:
		tail = append(tail, cut("since start, dropped: "+strings.Join(append(lost, "sinks "+strings.Join(sinkLost, ", ")), ", "), width))
	}

	// Fit the height: the queue and sink rows give way, each to a line
	// that says how many were left out.
	qrows, srows := queues[2:], sinks[2:]
	if l.Height > 0 {
		fixedRows := len(head) + 2 + 1 + 1 + len(xdpLines) + 1 + 2 + 1 + len(tail)
		avail := l.Height - fixedRows
		if avail < len(qrows)+len(srows) {
			sfit := min(len(srows), max(avail/2, 1))
			qfit := max(avail-sfit, 1)
			if qfit > len(qrows) {
				sfit = min(len(srows), avail-len(qrows))
			}
			qrows = fit(qrows, qfit, "queues")
			srows = fit(srows, sfit, "sinks")
		}
	}
	out := slices.Concat(head, queues[:2], qrows, []string{queueTotal, ""}, xdpLines, []string{""}, sinks[:2], srows, []string{""}, tail)
	return finish(out, l)
}

// RenderError is the view while the server can't be read: what failed,
// and when it last answered.
func RenderError(last *Snapshot, src string, every time.Duration, err error, at time.Time, l Layout) []string {
	out := []string{"xdpingest top  " + src + "  " + at.Format(time.TimeOnly), ""}
	// The cause is at the end of the message: wrap it rather than cut it.
	out = append(out, wrap("  ", strings.Fields("can't reach "+src+": "+err.Error()), max(l.Width, MinWidth/2), 4, " ")...)
	if last != nil {
		out = append(out, "last answer at "+last.At.Format(time.TimeOnly))
	}
	out = append(out, "trying again every "+every.String()+" (q or Ctrl-C quits)")
	return finish(out, l)
}

// finish cuts lines to the width and the view to the height.
func finish(lines []string, l Layout) []string {
	if l.Height > 0 && len(lines) > l.Height {
		lines = lines[:l.Height]
	}
	for i, s := range lines {
		lines[i] = cut(s, max(l.Width, 1))
	}
	return lines
}

// fit keeps at most n rows, the last of them saying how many are hidden.
func fit(rows []string, n int, what string) []string {
	if len(rows) <= n {
		return rows
	}
	return append(slices.Clip(rows[:n-1]), fmt.Sprintf("  ... %d more %s", len(rows)-n+1, what))
}

// column is a table column; width 0 takes what is left of the line.
type column struct {
	title string
	width int
	left  bool
}

func header(cols []column) string {
	cells := make([]string, len(cols))
	for i, c := range cols {
		cells[i] = c.title
	}
	return row(cols, cells)
}

func row(cols []column, cells []string) string {
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteString("  ")
		}
		s := cells[i]
		pad := strings.Repeat(" ", max(c.width-utf8.RuneCountInString(s), 0))
		if c.left {
			b.WriteString(s + pad)
		} else {
			b.WriteString(pad + s)
		}
	}
	return strings.TrimRight(b.String(), " ")
}

// wrap joins items with sep into lines of at most width columns, each
// starting with indent, at most n lines; what doesn't fit is counted at
// the end of the last ("+3 more"). An item longer than a line gets one of
// its own (finish cuts it).
func wrap(indent string, items []string, width, n int, sep string) []string {
	var lines []string
	var cur []string
	text := func(cur []string) string { return indent + strings.Join(cur, sep) }
	for i, it := range items {
		if len(cur) == 0 || utf8.RuneCountInString(text(append(cur, it))) <= width {
			cur = append(cur, it)
			continue
		}
		if len(lines) == n-1 {
			left := len(items) - i
			for len(cur) > 1 && utf8.RuneCountInString(text(cur)+fmt.Sprintf("%s+%d more", sep, left)) > width {
				cur = cur[:len(cur)-1]
				left++
			}
			return append(lines, text(cur)+fmt.Sprintf("%s+%d more", sep, left))
		}
		lines = append(lines, text(cur))
		cur = []string{it}
	}
	return append(lines, text(cur))
}

// si writes a rate or count in at most 5 columns: 0, 7.5, 999, 1.23k,
// 45.6M, 789G; "-" when unknown.
func si(v float64) string {
	switch {
	case math.IsNaN(v) || v < 0:
		return "-"
	case v == 0:
		return "0"
	case v < 9.95:
		return fmt.Sprintf("%.1f", v)
	case v < 999.5:
		return fmt.Sprintf("%.0f", v)
	}
	for _, u := range []string{"k", "M", "G", "T", "P"} {
		v /= 1000
		switch {
		case v < 9.995:
			return fmt.Sprintf("%.2f%s", v, u)
		case v < 99.95:
			return fmt.Sprintf("%.1f%s", v, u)
		case v < 999.5:
			return fmt.Sprintf("%.0f%s", v, u)
		}
	}
	return "huge"
}

// count writes a number of things (a gauge, a total) like si, but whole
// below 1000: 8, not 8.0.
func count(v float64) string {
	if v >= 0 && v < 999.5 {
		return fmt.Sprintf("%.0f", v)
	}
	return si(v)
}

// duration writes an uptime in at most 6 columns: 45s, 12m3s, 3h12m, 41d7h.
func duration(d time.Duration) string {
	s := int64(d.Seconds())
	switch {
	case s < 0:
		return "-"
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
}

// abbrev shortens a sink name (or an address) to at most w columns. What
// tells sinks apart is kept: the scheme, ?ports= (the routing) while the
// name keeps 12 columns beside it, and the end of the name (the directory,
// subject or topic); other parameters go first, then the middle, which
// becomes "..".
func abbrev(s string, w int) string {
	if utf8.RuneCountInString(s) <= w {
		return s
	}
	if base, query, ok := strings.Cut(s, "?"); ok {
		var ports string
		if vals, err := url.ParseQuery(query); err == nil && vals.Has("ports") {
			ports = "?ports=" + vals.Get("ports")
		}
		n := utf8.RuneCountInString(ports)
		switch {
		case utf8.RuneCountInString(base)+n <= w:
			return base + ports
		case n > 0 && w-n >= 12:
			return abbrev(base, w-n) + ports
		}
		// The name's end tells sinks apart better than a cut ?ports=.
		return abbrev(base, w)
	}
	r := []rune(s)
	if w <= 2 {
		return string(r[:max(w, 0)])
	}
	head := 0
	if i := strings.Index(s, "://"); i >= 0 {
		head = utf8.RuneCountInString(s[:i+3])
	} else if i := strings.IndexByte(s, ':'); i >= 0 {
		head = utf8.RuneCountInString(s[:i+1])
	}
	// The scheme takes at most half; the tail gets the rest.
	head = min(head, (w-2)/2)
	tail := w - 2 - head
	return string(r[:head]) + ".." + string(r[len(r)-tail:])
}

// cut shortens s to w columns, marking the cut with "..".
func cut(s string, w int) string {
	if utf8.RuneCountInString(s) <= w {
		return s
	}
	r := []rune(s)
	if w <= 2 {
		return string(r[:max(w, 0)])
	}
	return string(r[:w-2]) + ".."
}

func appendNew(list []string, s string) []string {
	if s == "" || slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
