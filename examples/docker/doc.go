// Package docker holds no code. It is the Docker example: a multi-stage
// Dockerfile that builds a static streamgate into a distroless image, and
// the image's default proxy.yaml (see README.md). Its test runs the
// Dockerfile's own go build command, without a Docker engine, and checks
// the binary is statically linked.
package docker
