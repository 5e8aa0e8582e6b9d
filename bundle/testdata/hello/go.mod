module example.local/hello

go 1.26
