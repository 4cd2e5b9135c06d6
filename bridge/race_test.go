//go:build race

package bridge

// raceEnabled is true under -race, whose detector allows at most 8128
// live goroutines: load tests scale down.
const raceEnabled = true
