package spool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The child process of TestCrash: it appends messages from writers
// goroutines and prints "ok <writer> <i>" after each Append returns, until
// it is killed. In ack mode (one writer) it also acks the oldest message
// whenever more than 10 are spooled, like a consumer trailing behind.
const crashEnv = "SPOOL_CRASH_CHILD"

func crashPayload(g, i int) []byte {
	r := rand.New(rand.NewPCG(uint64(g), uint64(i)))
	b := make([]byte, 50+i*37%400)
	for k := range b {
		b[k] = byte(r.Uint32())
	}
	return b
}

func crashChild(spec string) {
	var path string
	var writers int
	var ack bool
	if _, err := fmt.Sscanf(spec, "%s %d %t", &path, &writers, &ack); err != nil {
		panic(err)
	}
	s, err := Open(Options{Path: path, MaxBytes: 8 << 20, compactBytes: 32 << 10})
	if err != nil {
		panic(err)
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := 0; i < 1e6; i++ {
				if err := s.Append(context.Background(), fmt.Sprintf("%d/%d", g, i), crashPayload(g, i)); err != nil {
					panic(err)
				}
				if ack && s.Stats().Messages > 10 {
					ms, err := s.Peek(1)
					if err != nil {
						panic(err)
					}
					s.Ack(ms[0].Seq)
				}
				out.Lock()
				fmt.Printf("ok %d %d\n", g, i)
				out.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestCrash kills a process that is appending with SIGKILL and checks
// that every message whose Append returned is recovered, in order, intact.
func TestCrash(t *testing.T) {
	if spec := os.Getenv(crashEnv); spec != "" {
		crashChild(spec)
		os.Exit(0)
	}
	tests := []struct {
		name    string
		writers int
		ack     bool
		kill    int // after this many "ok" lines
	}{
		{"first", 1, false, 1},
		{"early", 1, false, 7},
		{"later", 1, false, 400},
		{"4 writers", 4, false, 600},
		{"acks and compactions", 1, true, 1500},
		{"acks, early", 1, true, 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "spool", "cloud.db")
			for round := range 2 { // the second round crashes a recovered spool
				last := crashRun(t, fmt.Sprintf("%s %d %t", path, tt.writers, tt.ack), tt.kill)
				checkCrash(t, path, tt.writers, tt.ack, last, round)
			}
		})
	}
}

// crashRun runs the child until it has reported kill Appends, kills it
// and returns the last i each writer reported.
func crashRun(t *testing.T, spec string, kill int) []int {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$")
	cmd.Env = append(os.Environ(), crashEnv+"="+spec)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	last := map[int]int{}
	sc := bufio.NewScanner(stdout)
	n := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "ok" {
			continue
		}
		g, _ := strconv.Atoi(f[1])
		i, _ := strconv.Atoi(f[2])
		last[g] = max(last[g], i)
		if n++; n == kill {
			cmd.Process.Kill() // SIGKILL
		}
	}
	cmd.Wait()
	if n < kill {
		t.Fatalf("child stopped after %d Appends: %s", n, stderr.String())
	}
	var out []int
	for g := 0; g < len(last) || g < 1; g++ {
		l, ok := last[g]
		if !ok {
			l = -1
		}
		out = append(out, l)
	}
	t.Logf("killed after %d Appends (last per writer %v)", n, out)
	return out
}

// checkCrash reopens the spool and checks it against what the child reported.
func checkCrash(t *testing.T, path string, writers int, ack bool, last []int, round int) {
	s := open(t, Options{Path: path, MaxBytes: 8 << 20})
	ms := peekAll(t, s)
	checkSeqs(t, ms)
	got := make([][]int, writers)
	for _, m := range ms {
		var g, i int
		if _, err := fmt.Sscanf(m.Topic, "%d/%d", &g, &i); err != nil || g >= writers {
			t.Fatalf("bad topic %q", m.Topic)
		}
		if !bytes.Equal(m.Payload, crashPayload(g, i)) {
			t.Fatalf("message %s: payload corrupted", m.Topic)
		}
		got[g] = append(got[g], i)
	}
	for g, is := range got {
		for k := 1; k < len(is); k++ {
			if is[k] != is[k-1]+1 {
				t.Fatalf("writer %d: message %d after %d", g, is[k], is[k-1])
			}
		}
		// Required: every reported message, except those acked (ack mode
		// keeps the newest 10, minus one for a step not reported).
		from := 0
		if ack {
			from = max(0, last[g]-8)
		}
		if last[g] >= from && (len(is) == 0 || is[0] > from || is[len(is)-1] < last[g]) {
			t.Fatalf("round %d writer %d: recovered %d messages %v..., want at least %d..%d",
				round, g, len(is), is[:min(len(is), 3)], from, last[g])
		}
		if len(is) > 0 && is[len(is)-1] > last[g]+1 {
			t.Fatalf("writer %d: message %d was never appended", g, is[len(is)-1])
		}
	}
	// Start the next round afresh, with seqs still increasing.
	var maxSeq uint64
	if len(ms) > 0 {
		maxSeq = ms[len(ms)-1].Seq
	}
	for _, m := range ms {
		s.Ack(m.Seq)
	}
	mustAppend(t, s, "probe", nil)
	p := peekAll(t, s)
	if len(p) != 1 || p[0].Seq <= maxSeq {
		t.Fatalf("after recovery: %v, seq %d <= %d", topics(p), p[0].Seq, maxSeq)
	}
	s.Ack(p[0].Seq)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
