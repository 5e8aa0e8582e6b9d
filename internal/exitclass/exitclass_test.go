package exitclass

import (
	"errors"
	"fmt"
	"testing"
)

type classed struct{ c Class }

func (e classed) Error() string    { return fmt.Sprint("class ", int(e.c)) }
func (e classed) ExitClass() Class { return e.c }

type wrapper struct {
	c     Class
	inner []error
}

func (e wrapper) Error() string    { return "wrapper" }
func (e wrapper) ExitClass() Class { return e.c }
func (e wrapper) Unwrap() []error  { return e.inner }

func TestOfTakesTheHighestClassInTheTree(t *testing.T) {
	foreign := errors.New("foreign")
	other := func(err error) Class {
		if err == foreign {
			return Locked
		}
		return Unclassified
	}
	for _, tc := range []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, Unclassified},
		{"plain", errors.New("x"), Unclassified},
		{"classed", classed{Config}, Config},
		{"wrapped", fmt.Errorf("a: %w", fmt.Errorf("b: %w", classed{Usage})), Usage},
		{"a cause outranks its wrapper", wrapper{PhaseFailed, []error{errors.New("x"), classed{Unreachable}}}, Unreachable},
		{"a wrapper outranks its cause", wrapper{Config, []error{classed{PhaseFailed}}}, Config},
		{"joined", errors.Join(classed{Locked}, classed{PhaseFailed}), Locked},
		{"not classed, given to other", wrapper{PhaseFailed, []error{foreign}}, Locked},
	} {
		if got := Of(tc.err, other); got != tc.want {
			t.Errorf("%s: Of = %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := Of(foreign, nil); got != Unclassified {
		t.Errorf("without other, an error that declares no class is Unclassified, got %d", got)
	}
}
