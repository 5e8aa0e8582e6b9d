// Command hello is a tiny static program the bundle tests build and pack as an image.
package main

import "fmt"

func main() { fmt.Println("hello from the bundle") }
