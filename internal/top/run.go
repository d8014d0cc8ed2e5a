package top

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/xdpingest/xdpingest/internal/promtext"
)

// Options says what Run reads and where it draws.
type Options struct {
	// URL of the /metrics page.
	URL string
	// Source is the address the view shows (default: URL, or only its
	// host and port for http://HOST:PORT/metrics).
	Source string
	// Interval between scrapes (default 1s).
	Interval time.Duration
	// Once: scrape twice, Interval apart, write one plain view with the
	// rates between them, and return; a failed scrape is Run's error.
	Once bool
	// Client reads the page (default: no proxy, a timeout of the interval
	// or 2 s, whichever is longer).
	Client *http.Client
	Out    io.Writer
	// Size returns the terminal's size, ok false when Out is no terminal:
	// then each view is a plain block of lines (at most MinWidth columns, no
	// escape sequences) followed by a blank line, written from the second
	// scrape on (the first has no rates yet). Nil means plain.
	Size func() (width, height int, ok bool)
	// Redraw, when it delivers, draws the last view again at once (the
	// terminal was resized: SIGWINCH).
	Redraw <-chan os.Signal
}

// ANSI sequences, the only ones the view uses.
const (
	altScreen  = "\x1b[?1049h" // the terminal's second screen, as top and less use
	mainScreen = "\x1b[?1049l" // back to the first, as it was before
	cursorHome = "\x1b[H"
	eraseLine  = "\x1b[K" // to the end of the line
	eraseBelow = "\x1b[J" // from the cursor to the end of the screen
	hideCursor = "\x1b[?25l"
	showCursor = "\x1b[?25h"
)

// Run scrapes o.URL every o.Interval and draws the view until ctx is done,
// then returns nil, the terminal as it found it. A scrape that fails (no
// server there, or it went away) is drawn as such ("can't reach ...") and
// Run keeps trying, so that a restarting server comes back into view; a
// server that restarted has new counters, and its rates start again from
// the next scrape. With o.Once a failed scrape is the error Run returns.
func Run(ctx context.Context, o Options) error {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Source == "" {
		o.Source = o.URL
		if u, err := url.Parse(o.URL); err == nil && u.Scheme == "http" && u.Path == "/metrics" && u.RawQuery == "" && u.User == nil {
			o.Source = u.Host
		}
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: max(o.Interval, 2*time.Second), Transport: &http.Transport{Proxy: nil}}
	}
	if o.Once {
		return once(ctx, o)
	}
	d := &drawer{out: o.Out, size: o.Size}
	defer d.stop()
	var prev *Snapshot
	var lines func(Layout) []string
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		cur, err := scrape(ctx, o)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil:
			now := time.Now()
			lines = func(l Layout) []string { return RenderError(prev, o.Source, o.Interval, err, now, l) }
		case prev == nil && d.plain():
			// A plain view without rates says nothing the next won't.
			lines = nil
		default:
			was := prev
			lines = func(l Layout) []string { return Render(was, cur, o.Source, l) }
		}
		if err == nil {
			prev = cur
		}
		if lines != nil {
			if err := d.draw(lines); err != nil {
				return fmt.Errorf("can't write the view: %w", err)
			}
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				waiting = false
			case <-o.Redraw:
				if lines != nil {
					if err := d.draw(lines); err != nil {
						return fmt.Errorf("can't write the view: %w", err)
					}
				}
			}
		}
	}
}

// once writes one plain view with the rates between two scrapes.
func once(ctx context.Context, o Options) error {
	prev, err := scrape(ctx, o)
	if err != nil {
		return fmt.Errorf("can't read %s: %w", o.URL, err)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.Interval):
	}
	cur, err := scrape(ctx, o)
	if err != nil {
		return fmt.Errorf("can't read %s: %w", o.URL, err)
	}
	_, err = io.WriteString(o.Out, strings.Join(Render(prev, cur, o.Source, Layout{Width: MinWidth}), "\n")+"\n")
	return err
}

// scrape reads and parses one page.
func scrape(ctx context.Context, o Options) (*Snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		// The URL is in the view already: keep the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the server answered %s", resp.Status)
	}
	s, err := promtext.Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("can't read the page: %w", err)
	}
	return FromSamples(s, time.Now())
}

// drawer writes views: in place on a terminal, as plain blocks otherwise.
type drawer struct {
	out     io.Writer
	size    func() (int, int, bool)
	started bool // on a terminal: on the second screen, the cursor hidden
}

func (d *drawer) plain() bool {
	if d.size == nil {
		return true
	}
	_, _, tty := d.size()
	return !tty
}

func (d *drawer) draw(lines func(Layout) []string) error {
	w, h, tty := 0, 0, false
	if d.size != nil {
		w, h, tty = d.size()
	}
	if !tty {
		_, err := io.WriteString(d.out, strings.Join(lines(Layout{Width: MinWidth}), "\n")+"\n\n")
		return err
	}
	if w <= 0 || h <= 0 {
		w, h = MinWidth, 24
	}
	var b strings.Builder
	if !d.started {
		b.WriteString(altScreen + hideCursor)
		d.started = true
	}
	b.WriteString(cursorHome)
	for i, l := range lines(Layout{Width: w, Height: h}) {
		if i > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString(l + eraseLine)
	}
	b.WriteString(eraseBelow)
	_, err := io.WriteString(d.out, b.String())
	return err
}

// stop gives the terminal back its cursor and its first screen.
func (d *drawer) stop() {
	if d.started {
		io.WriteString(d.out, showCursor+mainScreen)
		d.started = false
	}
}

// WatchKeys reads keys from r (a terminal in cbreak mode) and calls quit
// on q, Q or Ctrl-C (which arrives as a byte only where the terminal does
// not turn it into SIGINT). It returns when r fails or quit was called.
func WatchKeys(r io.Reader, quit func()) {
	buf := make([]byte, 64)
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			if c == 'q' || c == 'Q' || c == 0x03 {
				quit()
				return
			}
		}
		if err != nil {
			return
		}
	}
}
