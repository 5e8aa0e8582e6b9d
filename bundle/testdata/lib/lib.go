// Package lib is not a program: building it must be refused.
package lib

// Answer is here so the package has something to compile.
const Answer = 42
