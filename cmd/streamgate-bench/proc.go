package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// procResult is the JSON line of a proc run: what a process and all its
// descendants (nginx's workers, say) have cost so far.
type procResult struct {
	Mode       string  `json:"mode"`
	PID        int     `json:"pid"`
	PIDs       []int   `json:"pids"`    // the process and its live descendants
	CPUSeconds float64 `json:"cpu_s"`   // utime+stime, plus those of reaped children
	RSSKiB     int64   `json:"rss_kib"` // sum of VmRSS
}

// runProc reads /proc for a process tree. A script samples it before and
// after a workload and takes the difference: CPU seconds spent relaying,
// resident memory added by idle connections. Shared pages count once per
// process, which cancels out in a difference.
func runProc(args []string, fs *flag.FlagSet) (any, error) {
	pid := fs.Int("pid", 0, "root process id")
	hz := fs.Int("hz", 100, "clock ticks per second of /proc/<pid>/stat (getconf CLK_TCK)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *pid <= 0 || *hz <= 0 {
		return nil, fmt.Errorf("need -pid > 0 and -hz > 0")
	}
	return procTree("/proc", *pid, *hz)
}

// procTree sums the costs of pid and its descendants under procRoot.
func procTree(procRoot string, pid, hz int) (procResult, error) {
	res := procResult{Mode: "proc", PID: pid}
	children, err := childMap(procRoot)
	if err != nil {
		return res, err
	}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		st, err := readStat(procRoot, p)
		if err != nil {
			if p == pid {
				return res, fmt.Errorf("read process %d: %w", pid, err)
			}
			continue // exited meanwhile
		}
		res.PIDs = append(res.PIDs, p)
		res.CPUSeconds += float64(st.ticks) / float64(hz)
		res.RSSKiB += vmRSS(procRoot, p)
		queue = append(queue, children[p]...)
	}
	slices.Sort(res.PIDs)
	return res, nil
}

// procStat holds the fields of /proc/<pid>/stat we use.
type procStat struct {
	ppid  int
	ticks int64 // utime + stime + cutime + cstime
}

// readStat parses /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted from its last ')'.
func readStat(procRoot string, pid int) (procStat, error) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse %d/stat: no command name", pid)
	}
	// After ')': state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("parse %d/stat: %d fields", pid, len(f))
	}
	var st procStat
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("parse %d/stat ppid: %w", pid, err)
	}
	for _, s := range f[11:15] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("parse %d/stat times: %w", pid, err)
		}
		st.ticks += n
	}
	return st, nil
}

// childMap maps every process id to its children's.
func childMap(procRoot string) (map[int][]int, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	m := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(procRoot, pid)
		if err != nil {
			continue
		}
		m[st.ppid] = append(m[st.ppid], pid)
	}
	return m, nil
}

// vmRSS returns the VmRSS of pid in KiB, 0 if unknown (a zombie has none).
func vmRSS(procRoot string, pid int) int64 {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}
