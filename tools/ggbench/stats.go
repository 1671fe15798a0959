package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value such that at least p percent of
// the values are less than or equal to it. It returns 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// rank = ceil(p/100 * n); the tolerance keeps float error in p/100*n
	// (e.g. 0.99*100 = 98.99999...) from moving the rank.
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// latencySummary is what the report shows of a latency distribution.
type latencySummary struct {
	P50, P99, Max time.Duration
}

// summarize sorts lat in place and returns its p50, p99 and maximum.
func summarize(lat []time.Duration) latencySummary {
	if len(lat) == 0 {
		return latencySummary{}
	}
	slices.Sort(lat)
	return latencySummary{
		P50: percentile(lat, 50),
		P99: percentile(lat, 99),
		Max: lat[len(lat)-1],
	}
}
