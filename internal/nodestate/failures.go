package nodestate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// FailureCount is how often setup failed for one reason, and the last time.
type FailureCount struct {
	Count     uint64    `json:"count"`
	LastError string    `json:"lastError"`
	LastPod   string    `json:"lastPod"`
	LastTime  time.Time `json:"lastTime"`
}

// Failures are the setup failures of a node by reason, as kept in
// <stateDir>/failures.json.
type Failures map[string]FailureCount

// ReadFailures reads the failure counters of the state folder; empty when
// nothing ever failed.
func ReadFailures(stateDir string) (Failures, error) {
	path := FailuresPath(stateDir)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Failures{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read failure counters: %w", err)
	}
	f := Failures{}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("failure counters %s are corrupt: %w", path, err)
	}
	return f, nil
}
