module example.local/lib

go 1.26
