// Package exitclass lets an error say what kind of failure it is, so the command line can choose its exit
// code without knowing the error types of every package.
package exitclass

// Class is a kind of failure. The values rank the kinds: when an error wraps several, the highest wins, so a
// phase that failed because a host was unreachable is Unreachable, not PhaseFailed.
type Class int

const (
	Unclassified Class = iota
	Degraded           // a read-only look found the cluster degraded (privcloud status)
	PhaseFailed        // a phase, a check or a remote command failed
	Locked             // another run holds a host's lock
	Unreachable        // a host could not be connected to or authenticated with
	Config             // cluster.yaml, or a file it names, cannot be used
	Usage              // bad flags, arguments or environment variables
)

// Classed is an error that knows its class.
type Classed interface {
	ExitClass() Class
}

// Of returns the highest class in err's tree: err and every error it wraps, through Unwrap() error and
// Unwrap() []error. Errors that are not Classed are given to other when it is not nil.
func Of(err error, other func(error) Class) Class {
	if err == nil {
		return Unclassified
	}
	var c Class
	if e, ok := err.(Classed); ok {
		c = e.ExitClass()
	} else if other != nil {
		c = other(err)
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		c = max(c, Of(u.Unwrap(), other))
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			c = max(c, Of(e, other))
		}
	}
	return c
}
