module tfms/bounded-runc

go 1.22
