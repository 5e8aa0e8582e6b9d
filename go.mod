module github.com/privcloud/privcloud

go 1.26.0

require (
	go.yaml.in/yaml/v3 v3.0.4
	golang.org/x/crypto v0.58.0
)

require (
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/kr/pretty v0.3.1 // indirect
	golang.org/x/sys v0.49.0 // indirect
	gopkg.in/check.v1 v1.0.0-20190902080502-41f04d3bba15 // indirect
)
