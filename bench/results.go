package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// figure is one measured quantity for both sides: every round's value and the median.
type figure struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Unit string `json:"unit"`
	// Better is "higher" or "lower".
	Better      string    `json:"better"`
	Ours        *float64  `json:"ours,omitempty"`
	Stock       *float64  `json:"stock,omitempty"`
	Ratio       *float64  `json:"ratio,omitempty"` // ours / stock
	OursRounds  []float64 `json:"ours_rounds,omitempty"`
	StockRounds []float64 `json:"stock_rounds,omitempty"`
	Target      string    `json:"target,omitempty"`
	Met         *bool     `json:"met,omitempty"`
	Note        string    `json:"note,omitempty"`
}

// results is the whole run, as written to results/latest.json.
type results struct {
	Started       string    `json:"started"`
	Cores         int       `json:"cores"`
	GoVersion     string    `json:"go_version"`
	Quick         bool      `json:"quick"`
	Rounds        int       `json:"rounds"`
	LoadAvgBefore []float64 `json:"load_avg_before"`
	LoadAvgAfter  []float64 `json:"load_avg_after"`
	DurationSec   float64   `json:"duration_seconds"`
	Figures       []*figure `json:"figures"`
	Errors        []string  `json:"errors,omitempty"`
}

// add records a figure from per-round values (either side may be empty).
func (r *results) add(f *figure, oursRounds, stockRounds []float64) *figure {
	f.OursRounds = oursRounds
	f.StockRounds = stockRounds
	if len(oursRounds) > 0 {
		m := median(oursRounds)
		f.Ours = &m
	}
	if len(stockRounds) > 0 {
		m := median(stockRounds)
		f.Stock = &m
	}
	// A rate below one job per second is a side that stalled (stock boltdb in scenario 8): a ratio
	// against it would be a meaningless huge number, so there is none.
	stalled := f.Unit == "jobs/s" && f.Stock != nil && *f.Stock < 1
	if f.Ours != nil && f.Stock != nil && *f.Stock != 0 && !stalled {
		ratio := *f.Ours / *f.Stock
		f.Ratio = &ratio
	}
	r.Figures = append(r.Figures, f)
	return f
}

func (r *results) get(id string) *figure {
	for _, f := range r.Figures {
		if f.ID == id {
			return f
		}
	}
	return nil
}

// finish evaluates the targets of the issue against the medians.
func (r *results) finish(started time.Time) {
	r.LoadAvgAfter = loadAvg()
	r.DurationSec = math.Round(time.Since(started).Seconds()*10) / 10
	check := func(id, target string, met func(f *figure) (bool, bool)) {
		f := r.get(id)
		if f == nil {
			return
		}
		f.Target = target
		if ok, known := met(f); known {
			f.Met = &ok
		}
	}
	ratioAtLeast := func(x float64) func(f *figure) (bool, bool) {
		return func(f *figure) (bool, bool) {
			if f.Ratio == nil {
				return false, false
			}
			return *f.Ratio >= x, true
		}
	}
	oursBelow := func(x float64) func(f *figure) (bool, bool) {
		return func(f *figure) (bool, bool) {
			if f.Ours == nil {
				return false, false
			}
			return *f.Ours < x, true
		}
	}
	check("pushbatch_accepted", ">= 3x stock", ratioAtLeast(3))
	check("e2e_echo", ">= 1.5x stock", ratioAtLeast(1.5))
	check("push_8conn", ">= 2x stock", ratioAtLeast(2))
	check("latency_p99", "ours < 1 ms", oursBelow(1))
	check("e2e_fraction_of_limit", "ours >= 0.90", func(f *figure) (bool, bool) {
		if f.Ours == nil {
			return false, false
		}
		return *f.Ours >= 0.9, true
	})
	check("memory_bytes_per_job", "ours <= 400 B", func(f *figure) (bool, bool) {
		if f.Ours == nil {
			return false, false
		}
		return *f.Ours <= 400, true
	})
	check("memory_bytes_per_job_1m", "ours <= 400 B", func(f *figure) (bool, bool) {
		if f.Ours == nil {
			return false, false
		}
		return *f.Ours <= 400, true
	})
	check("shutdown_idle", "ours < 1 s", oursBelow(1))
	check("boltdb_e2e", "ours >= 5000 jobs/s", func(f *figure) (bool, bool) {
		if f.Ours == nil {
			return false, false
		}
		return *f.Ours >= 5000, true
	})
	check("priority_violations", "ours = 0", func(f *figure) (bool, bool) {
		if f.Ours == nil {
			return false, false
		}
		return *f.Ours == 0, true
	})
}

// table renders the figures as a fixed-width text table.
func (r *results) table() string {
	var b strings.Builder
	la := func(v []float64) string {
		if len(v) == 0 {
			return "?"
		}
		return fmt.Sprintf("%.2f %.2f %.2f", v[0], v[1], v[2])
	}
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&b, "\nrrjobs vs stock RoadRunner jobs (jobs/v5 v5.1.9 + memory/v5 v5.2.9): %s run, %d round(s), medians\n", mode, r.Rounds)
	fmt.Fprintf(&b, "%d cores, %s, load average before %s, after %s, %.0f s\n\n", r.Cores, r.GoVersion, la(r.LoadAvgBefore), la(r.LoadAvgAfter), r.DurationSec)
	rows := [][]string{{"figure", "unit", "ours", "stock", "ours/stock", "target", "met"}}
	for _, f := range r.Figures {
		met := ""
		if f.Met != nil {
			met = "no"
			if *f.Met {
				met = "yes"
			}
		}
		rows = append(rows, []string{f.Name, f.Unit, num(f.Ours), num(f.Stock), ratioStr(f.Ratio), f.Target, met})
	}
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len(c))
		}
	}
	for i, row := range rows {
		b.WriteString("| ")
		for j, c := range row {
			if j >= 2 && j <= 4 {
				fmt.Fprintf(&b, "%*s | ", widths[j], c)
			} else {
				fmt.Fprintf(&b, "%-*s | ", widths[j], c)
			}
		}
		b.WriteString("\n")
		if i == 0 {
			b.WriteString("|")
			for j := range row {
				b.WriteString(strings.Repeat("-", widths[j]+2) + "|")
			}
			b.WriteString("\n")
		}
	}
	for _, f := range r.Figures {
		if f.Note != "" {
			fmt.Fprintf(&b, "\n* %s: %s", f.Name, f.Note)
		}
	}
	if len(r.Errors) > 0 {
		b.WriteString("\n\nerrors:\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	b.WriteString("\n")
	return b.String()
}

func num(v *float64) string {
	if v == nil {
		return "-"
	}
	x := *v
	switch a := math.Abs(x); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	case a >= 1:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.3f", x)
	}
}

func ratioStr(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2fx", *v)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile of sorted values (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	rank = min(max(rank, 0), len(sorted)-1)
	return sorted[rank]
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}
