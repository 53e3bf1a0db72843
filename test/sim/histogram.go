package sim

import (
	"math/bits"
	"time"
)

// histogram is a log-linear latency histogram (HDR-like): exact below 256 ns,
// then 128 buckets per power of two (relative error below 0.8%). Recording
// is a few instructions, so every sample is kept.
type histogram struct {
	counts [256 + 57*128]uint64
	total  uint64
}

func bucketOf(v uint64) int {
	if v < 256 {
		return int(v)
	}
	shift := bits.Len64(v) - 8 // v>>shift is in [128, 255]
	return 256 + (shift-1)*128 + int(v>>shift) - 128
}

// lowerBound is the smallest value of bucket i.
func lowerBound(i int) uint64 {
	if i < 256 {
		return uint64(i)
	}
	shift := (i-256)/128 + 1
	return uint64((i-256)%128+128) << shift
}

func (h *histogram) record(d time.Duration) {
	h.counts[bucketOf(uint64(max(d, 0)))]++
	h.total++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// quantile returns the value below which a fraction q of the samples lie,
// as the middle of its bucket, in microseconds.
func (h *histogram) quantile(q float64) float64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := lowerBound(i), lowerBound(i+1)
			return float64(lo+hi) / 2 / 1e3
		}
	}
	return 0
}
